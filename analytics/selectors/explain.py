"""Reads behind an anomaly's explanation: top contributors and the two windows' counts.

Both read a whole batch of subjects at once, one SQL query each, so a detection run costs
the same number of queries however many anomalies it raises. `services/explain.py` turns
the rows into explanations.
"""

from collections.abc import Sequence

from django.db import connection

from analytics.services.explain import TOP_N, ExplainSubject

# Restricts a cost record `r` to the subject `s` (tenant subjects see every record).
_SCOPE_SQL = """
    CASE s.entity_type
        WHEN 'user' THEN r.user_id = s.entity_id
        WHEN 'feature' THEN r.feature_tag = s.entity_id
        WHEN 'model' THEN r.model = s.entity_id
        ELSE TRUE
    END
"""


def _subject_records(start: str, end: str) -> str:
    """The cost records `r` of each subject `s` created in [s.<start>, s.<end>)."""
    return f"""FROM subject s
    JOIN analytics_costrecord r
      ON r.tenant_id = %(tenant_id)s
     AND r.created_at >= s.{start}
     AND r.created_at < s.{end}
     AND {_SCOPE_SQL}"""


_CONTRIBUTORS_SQL = f"""
WITH subject AS (
    SELECT *
    FROM unnest(%(idx)s::int[], %(entity_type)s::text[], %(entity_id)s::text[],
                %(start)s::timestamptz[], %(end)s::timestamptz[])
        AS s(idx, entity_type, entity_id, window_start, window_end)
),
scoped AS (
    SELECT s.idx,
           r.model AS model_key,
           COALESCE(r.feature_tag, 'untagged') AS feature_key,
           COALESCE(r.user_id, 'anonymous') AS user_key,
           r.cost_cents
    {_subject_records("window_start", "window_end")}
),
grouped AS (
    SELECT idx,
           CASE WHEN GROUPING(model_key) = 0 THEN 'model'
                WHEN GROUPING(feature_key) = 0 THEN 'feature'
                WHEN GROUPING(user_key) = 0 THEN 'user'
           END AS dimension,
           COALESCE(model_key, feature_key, user_key) AS key,
           COALESCE(SUM(cost_cents), 0) AS cents
    FROM scoped
    GROUP BY idx, GROUPING SETS ((model_key), (feature_key), (user_key), ())
),
ranked AS (
    SELECT g.idx, g.dimension, g.key, g.cents, total.cents AS total,
           row_number() OVER (
               PARTITION BY g.idx, g.dimension ORDER BY g.cents DESC, g.key COLLATE "C"
           ) AS position
    FROM grouped g
    JOIN grouped total ON total.idx = g.idx AND total.dimension IS NULL
    WHERE g.dimension IS NOT NULL
)
SELECT idx, dimension, key, cents::float8, total::float8
FROM ranked
WHERE position <= {TOP_N}
ORDER BY idx, array_position(ARRAY['model', 'feature', 'user'], dimension), position
"""

# The previous window ends where the current one starts, so one range scan covers both.
_CAUSE_SQL = f"""
WITH subject AS (
    SELECT *
    FROM unnest(%(idx)s::int[], %(entity_type)s::text[], %(entity_id)s::text[],
                %(previous_start)s::timestamptz[], %(current_start)s::timestamptz[],
                %(current_end)s::timestamptz[])
        AS s(idx, entity_type, entity_id, previous_start, current_start, current_end)
),
scoped AS (
    SELECT s.idx, r.created_at >= s.current_start AS is_current,
           r.is_retry, r.input_tokens, r.feature_tag, r.cost_cents
    {_subject_records("previous_start", "current_end")}
),
counts AS (
    SELECT idx,
           COUNT(*) FILTER (WHERE is_current) AS requests_c,
           COUNT(*) FILTER (WHERE NOT is_current) AS requests_p,
           COUNT(*) FILTER (WHERE is_current AND is_retry) AS retries_c,
           COUNT(*) FILTER (WHERE NOT is_current AND is_retry) AS retries_p,
           AVG(input_tokens) FILTER (WHERE is_current)::float8 AS avg_input_c,
           AVG(input_tokens) FILTER (WHERE NOT is_current)::float8 AS avg_input_p
    FROM scoped
    GROUP BY idx
),
features AS (
    SELECT idx, SUM(spend)::float8 AS tagged, MAX(spend)::float8 AS top
    FROM (
        SELECT idx, feature_tag, COALESCE(SUM(cost_cents), 0) AS spend
        FROM scoped
        WHERE is_current AND feature_tag IS NOT NULL
        GROUP BY idx, feature_tag
    ) per_feature
    GROUP BY idx
)
SELECT c.idx, c.requests_c, c.requests_p, c.retries_c, c.retries_p, c.avg_input_c,
       c.avg_input_p, COALESCE(f.tagged, 0), COALESCE(f.top, 0)
FROM counts c
LEFT JOIN features f ON f.idx = c.idx
"""


def explain_contributor_rows(
    *, tenant_id: int, subjects: Sequence[ExplainSubject]
) -> list[tuple[int, str, str, float, float]]:
    """(subject index, dimension, key, cents, subject total) of each subject's top contributors
    in every dimension, in the order the explanation lists them."""
    params = {
        "tenant_id": tenant_id,
        "idx": list(range(len(subjects))),
        "entity_type": [s.entity_type for s in subjects],
        "entity_id": [s.entity_id for s in subjects],
        "start": [s.window_start for s in subjects],
        "end": [s.window_end for s in subjects],
    }
    with connection.cursor() as cursor:
        cursor.execute(_CONTRIBUTORS_SQL, params)
        return cursor.fetchall()


def explain_cause_rows(*, tenant_id: int, subjects: Sequence[ExplainSubject]) -> list[tuple]:
    """Per subject with cause windows: (subject index, requests, retries and mean input tokens
    of the current and previous window, tagged spend and top feature spend of the current).

    Subjects without cause windows are skipped; with none, no query runs.
    """
    wanted = [(idx, s) for idx, s in enumerate(subjects) if s.cause is not None]
    if not wanted:
        return []
    params = {
        "tenant_id": tenant_id,
        "idx": [idx for idx, _ in wanted],
        "entity_type": [s.entity_type for _, s in wanted],
        "entity_id": [s.entity_id for _, s in wanted],
        "previous_start": [s.cause.previous_start for _, s in wanted],
        "current_start": [s.cause.current_start for _, s in wanted],
        "current_end": [s.cause.current_end for _, s in wanted],
    }
    with connection.cursor() as cursor:
        cursor.execute(_CAUSE_SQL, params)
        return cursor.fetchall()
