"""Reads of the feedback app: run-record aggregates for detection, and feedback lists.

Every query is bound to one tenant. The detection queries group and rank in SQL and return
one small aggregate per error signature or per worker, whatever the number of runs.
"""

from datetime import datetime

from django.db import connection
from django.db.models import Count, Func, IntegerField, Q, QuerySet
from django.db.models.functions import Left

from analytics.models import RunRecord, RunStatus, Tenant
from analytics.selectors.facets import facet_counts
from feedback.choices import FeedbackSeverity, PatternType
from feedback.models import PatternFeedback
from feedback.services.detectors import FailureGroup, WorkerCostWindow
from feedback.services.signatures import (
    ASCII_WHITESPACE,
    EMPTY_SIGNATURE,
    REPLACEMENTS,
    SIGNATURE_LENGTH,
    error_signature,
)

RUNS = RunRecord._meta.db_table
FAILED_STATUSES = [RunStatus.FAILED.value, RunStatus.CRASHED.value]
COST_SPIKE_WINDOW_RUNS = 50


def _masked_sql(column: str) -> str:
    """SQL for `normalise_error(column)`, exact for ASCII text (see signatures.py).

    The "C" collation keeps lower() and the regex classes to ASCII whatever the locale the
    database was created with (a Turkish locale would otherwise lower-case I to a dotless i).
    """
    text = f'lower(btrim({column} COLLATE "C", %(ws)s))'
    for index, _ in enumerate(REPLACEMENTS):
        text = f"regexp_replace({text}, %(re{index})s, %(sub{index})s, 'g')"
    return text


def _masked_params() -> dict:
    params: dict = {"ws": ASCII_WHITESPACE}
    for index, (_pattern, sql_pattern, replacement) in enumerate(REPLACEMENTS):
        params[f"re{index}"] = sql_pattern
        params[f"sub{index}"] = replacement
    return params


SIGNATURE_SQL = f"""
    CASE
        WHEN btrim(r.error COLLATE "C", %(ws)s) = '' THEN %(empty)s
        WHEN octet_length(r.error) = char_length(r.error)
            THEN left(
                encode(sha256(convert_to({_masked_sql("r.error")}, 'UTF8')), 'hex'), %(siglen)s
            )
        ELSE py.signature
    END
"""

FAILURE_GROUPS_SQL = f"""
WITH failed AS (
    SELECT r.run_id, r.worker_id, r.error, r.created_at, {SIGNATURE_SQL} AS signature
    FROM {RUNS} r
    LEFT JOIN unnest(%(py_errors)s::text[], %(py_signatures)s::text[]) AS py(error, signature)
        ON py.error = r.error
    WHERE r.tenant_id = %(tenant)s
      AND r.status = ANY(%(failed)s)
      AND r.error IS NOT NULL
      AND r.created_at >= %(since)s
)
SELECT signature,
       array_agg(run_id ORDER BY created_at DESC, run_id COLLATE "C") AS run_ids,
       array_agg(DISTINCT worker_id COLLATE "C" ORDER BY worker_id COLLATE "C") AS worker_ids,
       (array_agg(worker_id ORDER BY created_at DESC, run_id COLLATE "C"))[1] AS newest_worker,
       (array_agg(left(error, 500) ORDER BY created_at DESC, run_id COLLATE "C"))[1] AS sample
FROM failed
GROUP BY signature
HAVING count(*) >= %(threshold)s
ORDER BY signature
"""

NON_ASCII_ERRORS_SQL = f"""
SELECT DISTINCT r.error
FROM {RUNS} r
WHERE r.tenant_id = %(tenant)s
  AND r.status = ANY(%(failed)s)
  AND r.error IS NOT NULL
  AND r.created_at >= %(since)s
  AND octet_length(r.error) <> char_length(r.error)
"""

WORKER_COST_WINDOWS_SQL = f"""
WITH ranked AS (
    SELECT worker_id, run_id, cost_cents,
           row_number() OVER (
               PARTITION BY worker_id
               ORDER BY coalesce(completed_at, created_at) DESC, run_id COLLATE "C"
           ) AS position
    FROM {RUNS}
    WHERE tenant_id = %(tenant)s AND status = %(completed)s AND cost_cents > 0
)
SELECT worker_id,
       count(*) AS run_count,
       max(run_id) FILTER (WHERE position = 1) AS newest_run_id,
       max(cost_cents) FILTER (WHERE position = 1) AS recent_cost,
       coalesce(sum(cost_cents) FILTER (WHERE position > 1), 0) AS others_sum
FROM ranked
WHERE position <= %(window)s
GROUP BY worker_id
HAVING count(*) >= %(min_runs)s
ORDER BY worker_id
"""


def failure_groups(*, tenant: Tenant, since: datetime, threshold: int) -> list[FailureGroup]:
    """Failed runs with an error created at or after `since`, grouped by error signature.

    Only groups with at least `threshold` runs are returned, ordered by signature.
    """
    params = {
        **_masked_params(),
        "tenant": tenant.pk,
        "failed": FAILED_STATUSES,
        "since": since,
        "threshold": threshold,
        "empty": EMPTY_SIGNATURE,
        "siglen": SIGNATURE_LENGTH,
    }
    with connection.cursor() as cursor:
        cursor.execute(NON_ASCII_ERRORS_SQL, params)
        # Few distinct texts in practice; their signatures come from the Python reference.
        py_errors = [row[0] for row in cursor.fetchall()]
        params["py_errors"] = py_errors
        params["py_signatures"] = [error_signature(error) for error in py_errors]
        cursor.execute(FAILURE_GROUPS_SQL, params)
        rows = cursor.fetchall()
    return [
        FailureGroup(
            signature=signature,
            run_ids=list(run_ids),
            worker_ids=list(worker_ids),
            newest_worker_id=newest_worker,
            sample_error=sample,
        )
        for signature, run_ids, worker_ids, newest_worker, sample in rows
    ]


def worker_cost_windows(
    *, tenant: Tenant, min_runs: int, window: int = COST_SPIKE_WINDOW_RUNS
) -> list[WorkerCostWindow]:
    """Per worker, its newest `window` completed runs with a positive cost, aggregated.

    Workers with fewer than `min_runs` such runs are left out.
    """
    params = {
        "tenant": tenant.pk,
        "completed": RunStatus.COMPLETED.value,
        "window": window,
        "min_runs": min_runs,
    }
    with connection.cursor() as cursor:
        cursor.execute(WORKER_COST_WINDOWS_SQL, params)
        rows = cursor.fetchall()
    return [
        WorkerCostWindow(
            worker_id=worker_id,
            run_count=run_count,
            newest_run_id=newest_run_id,
            recent_cost_cents=recent_cost,
            others_cost_sum_cents=others_sum,
        )
        for worker_id, run_count, newest_run_id, recent_cost, others_sum in rows
    ]


def feedback_list(
    *,
    tenant: Tenant,
    pattern_type: str | None = None,
    severity: str | None = None,
    acknowledged: bool | None = None,
) -> QuerySet[PatternFeedback]:
    """The tenant's feedback with the list filters applied, newest detection first."""
    queryset = PatternFeedback.objects.for_tenant(tenant)
    if pattern_type is not None:
        queryset = queryset.filter(pattern_type=pattern_type)
    if severity is not None:
        queryset = queryset.filter(severity=severity)
    if acknowledged is not None:
        queryset = queryset.filter(acknowledged=acknowledged)
    return queryset.order_by("-detected_at", "id")


def feedback_list_items(queryset: QuerySet[PatternFeedback]) -> QuerySet[PatternFeedback]:
    """List rows without their (possibly long) provenance and metadata documents."""
    return queryset.only(
        "id",
        "pattern_type",
        "severity",
        "signature",
        "occurrence_count",
        "detected_at",
        "acknowledged",
    ).annotate(
        short_description=Left("description", 200),
        provenance_length=_jsonb_array_length("provenance"),
    )


def feedback_counts(queryset: QuerySet[PatternFeedback]) -> dict:
    """`total`, `acknowledged`, `by_type` and `by_severity` of a whole queryset, in one query."""
    counts = facet_counts(
        queryset,
        facets={
            "by_type": ("pattern_type", PatternType.values),
            "by_severity": ("severity", FeedbackSeverity.values),
        },
        extra={"acknowledged": Count("pk", filter=Q(acknowledged=True))},
    )
    return {**counts, "unacknowledged": counts["total"] - counts["acknowledged"]}


def _jsonb_array_length(field_name: str) -> Func:
    return Func(field_name, function="jsonb_array_length", output_field=IntegerField())
