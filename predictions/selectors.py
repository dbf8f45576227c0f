"""Reads of the predictions app: per-worker run aggregates for the cycle, and prediction lists.

The cycle's inputs are computed per tenant with SQL window functions, so every worker and
every run in the window is considered; nothing depends on a row cap in Python.
"""

from datetime import datetime

from django.db import connection
from django.db.models import Avg, Count, Q, QuerySet

from analytics.models import RunRecord, RunStatus, Tenant
from analytics.selectors.facets import facet_counts
from feedback.choices import PatternType
from feedback.models import PatternFeedback
from predictions.choices import PredictionType, SubjectType
from predictions.models import Prediction
from predictions.services.engines import (
    COST_MIN_RUNS,
    COST_RECENT_RUNS,
    COST_WINDOW_RUNS,
    ERROR_SAMPLE_CHARS,
    ERROR_SAMPLE_RUNS,
    WorkerCostTrend,
    WorkerFailureStats,
)

RUNS = RunRecord._meta.db_table
FEEDBACK = PatternFeedback._meta.db_table
FAILED_STATUSES = [RunStatus.FAILED.value, RunStatus.CRASHED.value]
HIGH_CONFIDENCE = 0.7

WORKER_FAILURE_STATS_SQL = f"""
WITH windowed AS (
    SELECT worker_id, run_id, status, error, created_at
    FROM {RUNS}
    WHERE tenant_id = %(tenant)s AND created_at >= %(since)s
),
stats AS (
    SELECT worker_id,
           count(*) FILTER (WHERE status = ANY(%(failed)s)) AS failures,
           count(*) AS total
    FROM windowed
    GROUP BY worker_id
    HAVING count(*) FILTER (WHERE status = ANY(%(failed)s)) >= 1
),
newest_failures AS (
    SELECT worker_id, left(error, %(sample_chars)s) AS error,
           row_number() OVER (
               PARTITION BY worker_id ORDER BY created_at DESC, run_id COLLATE "C"
           ) AS position
    FROM windowed
    WHERE status = ANY(%(failed)s)
),
samples AS (
    SELECT worker_id, array_agg(error ORDER BY position) AS errors
    FROM newest_failures
    WHERE position <= %(sample_runs)s
    GROUP BY worker_id
),
patterns AS (
    SELECT s.worker_id, count(*) AS patterns
    FROM stats s
    JOIN {FEEDBACK} f
      ON f.tenant_id = %(tenant)s
     AND f.pattern_type = %(failure_pattern)s
     AND f.detected_at >= %(since)s
     AND f.metadata -> 'worker_ids' @> jsonb_build_array(s.worker_id)
    GROUP BY s.worker_id
)
SELECT s.worker_id, s.failures, s.total,
       coalesce(samples.errors, ARRAY[]::text[]), coalesce(patterns.patterns, 0)
FROM stats s
LEFT JOIN samples USING (worker_id)
LEFT JOIN patterns USING (worker_id)
ORDER BY s.worker_id COLLATE "C"
"""

WORKER_COST_TRENDS_SQL = f"""
WITH ranked AS (
    SELECT worker_id, cost_cents,
           row_number() OVER (
               PARTITION BY worker_id
               ORDER BY coalesce(completed_at, created_at) DESC, run_id COLLATE "C"
           ) AS position
    FROM {RUNS}
    WHERE tenant_id = %(tenant)s
      AND status = %(completed)s
      AND cost_cents > 0
      AND created_at >= %(since)s
)
SELECT worker_id,
       count(*) FILTER (WHERE position <= %(recent)s) AS recent_count,
       coalesce(sum(cost_cents) FILTER (WHERE position <= %(recent)s), 0) AS recent_sum,
       count(*) FILTER (WHERE position > %(recent)s) AS older_count,
       coalesce(sum(cost_cents) FILTER (WHERE position > %(recent)s), 0) AS older_sum
FROM ranked
WHERE position <= %(window)s
GROUP BY worker_id
HAVING count(*) >= %(min_runs)s
ORDER BY worker_id COLLATE "C"
"""


def worker_failure_stats(*, tenant: Tenant, since: datetime) -> list[WorkerFailureStats]:
    """Per worker with at least one failed run created at or after `since`: counts, the
    errors of its newest failed runs and the recent failure-pattern feedback naming it."""
    params = {
        "tenant": tenant.pk,
        "since": since,
        "failed": FAILED_STATUSES,
        "sample_chars": ERROR_SAMPLE_CHARS,
        "sample_runs": ERROR_SAMPLE_RUNS,
        "failure_pattern": PatternType.FAILURE_PATTERN.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(WORKER_FAILURE_STATS_SQL, params)
        rows = cursor.fetchall()
    return [
        WorkerFailureStats(
            worker_id=worker_id,
            failures=failures,
            total=total,
            recent_errors=list(errors),
            feedback_patterns=patterns,
        )
        for worker_id, failures, total, errors, patterns in rows
    ]


def worker_cost_trends(*, tenant: Tenant, since: datetime) -> list[WorkerCostTrend]:
    """Per worker, its newest 200 completed, paid runs created at or after `since`, split
    into the 3 newest and the rest; workers with fewer than 3 such runs are left out."""
    params = {
        "tenant": tenant.pk,
        "since": since,
        "completed": RunStatus.COMPLETED.value,
        "recent": COST_RECENT_RUNS,
        "window": COST_WINDOW_RUNS,
        "min_runs": COST_MIN_RUNS,
    }
    with connection.cursor() as cursor:
        cursor.execute(WORKER_COST_TRENDS_SQL, params)
        rows = cursor.fetchall()
    return [
        WorkerCostTrend(
            worker_id=worker_id,
            recent_count=recent_count,
            recent_sum_cents=recent_sum,
            older_count=older_count,
            older_sum_cents=older_sum,
        )
        for worker_id, recent_count, recent_sum, older_count, older_sum in rows
    ]


def prediction_list(
    *,
    tenant: Tenant,
    now: datetime,
    include_expired: bool = False,
    prediction_type: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
) -> QuerySet[Prediction]:
    """The tenant's predictions, newest first; still-valid ones only unless asked otherwise."""
    queryset = Prediction.objects.for_tenant(tenant)
    if not include_expired:
        queryset = queryset.valid(now)
    if prediction_type is not None:
        queryset = queryset.filter(prediction_type=prediction_type)
    if subject_type is not None:
        queryset = queryset.filter(subject_type=subject_type)
    if subject_id is not None:
        queryset = queryset.filter(subject_id=subject_id)
    return queryset.order_by("-created_at", "id")


def prediction_counts(queryset: QuerySet[Prediction]) -> dict:
    """Counts and confidence figures over a whole (filtered) queryset, in one query."""
    counts = facet_counts(
        queryset,
        facets={
            "by_type": ("prediction_type", PredictionType.values),
            "by_subject_type": ("subject_type", SubjectType.values),
        },
        extra={
            "avg_confidence": Avg("confidence_score"),
            "high_confidence_count": Count("pk", filter=Q(confidence_score__gt=HIGH_CONFIDENCE)),
            "non_advisory_count": Count("pk", filter=Q(is_advisory=False)),
        },
    )
    return {**counts, "avg_confidence": round(counts["avg_confidence"] or 0.0, 3)}
