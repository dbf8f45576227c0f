"""Why an anomaly happened: derived cause and contributors.

Both are computed for a whole batch of anomalies at once, one SQL query each, so a detection
run costs the same number of queries however many anomalies it raises.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection

from analytics.services.detection import WindowStats, contributor_share, derive_cause

DIMENSIONS = ("model", "feature", "user")
# The dimension an entity (or a budget scope) already is: its contributors skip it.
OWN_DIMENSION = {"tenant": None, "user": "user", "feature": "feature", "model": "model"}
TOP_N = 3

# Restricts a cost record `r` to the subject `s` (tenant subjects see every record).
_SCOPE_SQL = """
    CASE s.entity_type
        WHEN 'user' THEN r.user_id = s.entity_id
        WHEN 'feature' THEN r.feature_tag = s.entity_id
        WHEN 'model' THEN r.model = s.entity_id
        ELSE TRUE
    END
"""

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
    FROM subject s
    JOIN analytics_costrecord r
      ON r.tenant_id = %(tenant_id)s
     AND r.created_at >= s.window_start
     AND r.created_at < s.window_end
     AND {_SCOPE_SQL}
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
    FROM subject s
    JOIN analytics_costrecord r
      ON r.tenant_id = %(tenant_id)s
     AND r.created_at >= s.previous_start
     AND r.created_at < s.current_end
     AND {_SCOPE_SQL}
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


@dataclass(frozen=True)
class CauseWindows:
    """A current window and the previous window of equal nominal length right before it."""

    previous_start: datetime
    current_start: datetime
    current_end: datetime


@dataclass(frozen=True)
class ExplainSubject:
    """What to explain: a scope (entity or budget scope) and the windows its explanation compares.

    `cause` is None for budget anomalies, whose derived cause is always UNKNOWN.
    """

    entity_type: str  # tenant, user, feature or model (a budget's budget_type)
    entity_id: str | None
    window_start: datetime
    window_end: datetime
    cause: CauseWindows | None = None


@dataclass
class Explanation:
    derived_cause: str = "UNKNOWN"
    contributors: list[dict] = field(default_factory=list)


def explain_many(*, tenant_id: int, subjects: Sequence[ExplainSubject]) -> list[Explanation]:
    """Derived cause and contributors for each subject, in the order given (two queries)."""
    explanations = [Explanation() for _ in subjects]
    if not subjects:
        return explanations
    _fill_contributors(tenant_id, subjects, explanations)
    _fill_causes(tenant_id, subjects, explanations)
    return explanations


def _fill_contributors(tenant_id, subjects, explanations) -> None:
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
        rows = cursor.fetchall()
    for idx, dimension, key, cents, total in rows:
        if dimension == OWN_DIMENSION[subjects[idx].entity_type]:
            continue
        explanations[idx].contributors.append(
            {
                "dimension": dimension,
                "key": key,
                "cents": cents,
                "share": contributor_share(cents, total),
            }
        )


def _fill_causes(tenant_id, subjects, explanations) -> None:
    wanted = [(idx, s) for idx, s in enumerate(subjects) if s.cause is not None]
    if not wanted:
        return
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
        rows = cursor.fetchall()
    for idx, req_c, req_p, ret_c, ret_p, avg_c, avg_p, tagged, top in rows:
        explanations[idx].derived_cause = derive_cause(
            current=WindowStats(req_c, ret_c, avg_c, tagged, top),
            previous=WindowStats(req_p, ret_p, avg_p),
            is_tenant=subjects[idx].entity_type == "tenant",
        )
