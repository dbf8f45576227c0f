"""Snapshots and baselines: where they are computed and written.

Both are derived data upserted on their natural keys, so recomputing a period or an as_of
date replaces the earlier result instead of adding rows. The heavy lifting is SQL: one
statement aggregates a period's cost records for every entity, one statement upserts a
window's baselines.
"""

import logging
import time
from datetime import UTC, date, datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from analytics import metrics
from analytics.models import (
    Baseline,
    CostSnapshot,
    SnapshotStatus,
    SnapshotType,
    Tenant,
)
from analytics.selectors.snapshots import baseline_list
from analytics.services.locks import LockId

logger = logging.getLogger(__name__)

BASELINE_WINDOWS = (7, 30)
# Hourly snapshots compare an hour with the same hour of the previous 7 and 30 days.
SAME_HOUR_DAYS = 30
# Baseline upserts of one tenant are serialised with a transaction-scoped advisory lock in
# the two-key space (class, tenant id), which cannot collide with the single-key job locks.
# Without it two computations of different as_of dates could each see the other's
# uncommitted rows as not current and both flag their own rows current.
BASELINE_LOCK_CLASS = int(LockId.BASELINE)


def snapshot_period(
    *, snapshot_type: str, period_start: datetime | None = None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """Return the [start, end) of the period a snapshot covers.

    Without `period_start`: the previous full UTC hour, or yesterday. An explicit start is
    converted to UTC and truncated to the hour or to midnight; a start later than now is
    rejected with a ValidationError on `period_start`.
    """
    if snapshot_type not in SnapshotType.values:
        raise ValidationError({"snapshot_type": "must be one of: hourly, daily"})
    now = now or timezone.now()
    hourly = snapshot_type == SnapshotType.HOURLY
    length = CostSnapshot.period_length(snapshot_type)
    if period_start is None:
        start = _truncate(now, hourly=hourly) - length
    else:
        if timezone.is_naive(period_start):
            raise ValidationError({"period_start": "timezone is required"})
        start = _truncate(period_start, hourly=hourly)
        if start > now:
            raise ValidationError({"period_start": "must not be in the future"})
    return start, start + length


def _truncate(value: datetime, *, hourly: bool) -> datetime:
    value = value.astimezone(UTC)
    if hourly:
        return value.replace(minute=0, second=0, microsecond=0)
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def snapshot_compute(
    *, tenant: Tenant, snapshot_type: str, period_start: datetime | None = None
) -> CostSnapshot:
    """Compute (or recompute) one snapshot and return it, `complete` or `failed`.

    The computation runs in its own transaction (a savepoint when the caller already holds
    one). If it raises, that work is rolled back and a second transaction records the
    failure on the snapshot row, which is why this function is not itself atomic.
    Raises ValidationError for a bad type or a future period (nothing is written).
    """
    now = timezone.now()
    start, end = snapshot_period(snapshot_type=snapshot_type, period_start=period_start, now=now)
    started = time.monotonic()
    try:
        snapshot_id = _snapshot_compute_atomic(
            tenant=tenant, snapshot_type=snapshot_type, start=start, end=end, started=started
        )
    except Exception as exc:
        logger.exception(
            "Snapshot %s %s of tenant %s failed", snapshot_type, start.isoformat(), tenant.slug
        )
        snapshot_id = _snapshot_mark_failed(
            tenant=tenant,
            snapshot_type=snapshot_type,
            start=start,
            end=end,
            now=now,
            error=f"{exc.__class__.__name__}: {exc}",
        )
        metrics.snapshots_computed_total.labels(
            snapshot_type=snapshot_type, status=SnapshotStatus.FAILED
        ).inc()
        return CostSnapshot.objects.get(pk=snapshot_id)

    snapshot = CostSnapshot.objects.get(pk=snapshot_id)
    metrics.snapshots_computed_total.labels(
        snapshot_type=snapshot_type, status=SnapshotStatus.COMPLETE
    ).inc()
    metrics.snapshot_computation_ms.labels(snapshot_type=snapshot_type).observe(
        snapshot.computation_ms or 0
    )
    return snapshot


# Upsert by the natural key. ON CONFLICT DO UPDATE locks the row until the transaction ends,
# so two computations of one period run one after the other, each bumping the version.
_SNAPSHOT_UPSERT = """
INSERT INTO analytics_costsnapshot AS s
    (tenant_id, snapshot_type, period_start, period_end, status, version, records_processed,
     computation_ms, error_message, is_stale, created_at, completed_at)
VALUES (%(tenant)s, %(type)s, %(start)s, %(end)s, %(status)s, 1, 0, NULL, %(error)s, false,
        %(now)s, NULL)
ON CONFLICT ON CONSTRAINT snapshot_natural_key DO UPDATE SET
    version = s.version + 1,
    status = EXCLUDED.status,
    period_end = EXCLUDED.period_end,
    error_message = EXCLUDED.error_message,
    is_stale = CASE WHEN EXCLUDED.status = 'computing' THEN false ELSE s.is_stale END,
    records_processed = CASE WHEN EXCLUDED.status = 'computing'
                             THEN s.records_processed ELSE 0 END,
    computation_ms = CASE WHEN EXCLUDED.status = 'computing' THEN s.computation_ms END,
    completed_at = CASE WHEN EXCLUDED.status = 'computing' THEN s.completed_at END
RETURNING s.id
"""

# Baselines of daily snapshots: the stored 7- and 30-day baselines as of the snapshot date.
_DAILY_BASELINES = """
SELECT entity_type, entity_id,
       MAX(avg_daily_cost_cents) FILTER (WHERE window_days = 7) AS b7,
       MAX(avg_daily_cost_cents) FILTER (WHERE window_days = 30) AS b30
FROM analytics_baseline
WHERE tenant_id = %(tenant)s AND window_days IN (7, 30) AND as_of = %(as_of)s
GROUP BY entity_type, entity_id
"""

# Baselines of hourly snapshots: the mean total of the same hour on the previous 7 / 30 days,
# over the complete snapshots that have an aggregate for the entity.
_HOURLY_BASELINES = """
SELECT a.entity_type, a.entity_id,
       AVG(a.total_cost_cents) FILTER (WHERE s.period_start >= %(b7_from)s)::float8 AS b7,
       AVG(a.total_cost_cents)::float8 AS b30
FROM analytics_costsnapshot s
JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id
WHERE s.tenant_id = %(tenant)s AND s.snapshot_type = 'hourly' AND s.status = 'complete'
  AND s.period_start = ANY(%(same_hours)s::timestamptz[])
GROUP BY a.entity_type, a.entity_id
"""

# The period's cost records are summed once per (user, feature, model) combination, and
# GROUPING SETS then rolls those partial sums up into the tenant row and one row per user,
# feature and model: one hash lookup per record instead of three, about twice as fast as
# GROUPING SETS straight over the records. The NULL-key groups of user and feature are
# dropped, and the tenant row only exists when the period has records. entity_id of tenant
# rows is NULL, so the baseline join compares COALESCE(entity_id, '') within one
# entity_type, which keeps the join hashable.
_AGGREGATES_INSERT = """
WITH combos AS (
    SELECT r.user_id, r.feature_tag, r.model,
           COALESCE(SUM(r.cost_cents), 0) AS total,
           COUNT(*) AS requests,
           COUNT(*) FILTER (WHERE r.cost_source = 'unpriced') AS unpriced,
           SUM(r.input_tokens) AS input_tokens,
           SUM(r.output_tokens) AS output_tokens
    FROM analytics_costrecord r
    WHERE r.tenant_id = %(tenant)s AND r.created_at >= %(start)s AND r.created_at < %(end)s
    GROUP BY r.user_id, r.feature_tag, r.model
),
agg AS (
    SELECT
        CASE WHEN GROUPING(c.user_id) = 0 THEN 'user'
             WHEN GROUPING(c.feature_tag) = 0 THEN 'feature'
             WHEN GROUPING(c.model) = 0 THEN 'model'
             ELSE 'tenant' END AS entity_type,
        CASE WHEN GROUPING(c.user_id) = 0 THEN c.user_id
             WHEN GROUPING(c.feature_tag) = 0 THEN c.feature_tag
             WHEN GROUPING(c.model) = 0 THEN c.model END AS entity_id,
        SUM(c.total) AS total,
        COALESCE(SUM(c.requests), 0) AS requests,
        COALESCE(SUM(c.unpriced), 0) AS unpriced,
        SUM(c.input_tokens) AS input_tokens,
        SUM(c.output_tokens) AS output_tokens
    FROM combos c
    GROUP BY GROUPING SETS ((), (c.user_id), (c.feature_tag), (c.model))
),
base AS MATERIALIZED ({baselines}),
ins AS (
    INSERT INTO analytics_snapshotaggregate
        (tenant_id, snapshot_id, entity_type, entity_id, total_cost_cents, request_count,
         unpriced_records, total_input_tokens, total_output_tokens, avg_cost_per_request_cents,
         avg_tokens_per_request, baseline_7d_avg_cents, baseline_30d_avg_cents,
         deviation_from_7d_pct, deviation_from_30d_pct)
    SELECT %(tenant)s, %(snapshot)s, agg.entity_type, agg.entity_id, agg.total, agg.requests,
           agg.unpriced, agg.input_tokens, agg.output_tokens,
           (agg.total / agg.requests)::float8,
           (agg.input_tokens + agg.output_tokens)::float8 / agg.requests,
           base.b7, base.b30,
           CASE WHEN base.b7 > 0 THEN (agg.total::float8 - base.b7) / base.b7 * 100 END,
           CASE WHEN base.b30 > 0 THEN (agg.total::float8 - base.b30) / base.b30 * 100 END
    FROM agg
    LEFT JOIN base ON base.entity_type = agg.entity_type
                  AND COALESCE(base.entity_id, '') = COALESCE(agg.entity_id, '')
    WHERE agg.requests > 0 AND (agg.entity_type = 'tenant' OR agg.entity_id IS NOT NULL)
    RETURNING entity_type, request_count
)
SELECT COALESCE(SUM(request_count) FILTER (WHERE entity_type = 'tenant'), 0), COUNT(*) FROM ins
"""


@transaction.atomic
def _snapshot_compute_atomic(
    *, tenant: Tenant, snapshot_type: str, start: datetime, end: datetime, started: float
) -> int:
    daily = snapshot_type == SnapshotType.DAILY
    if daily:
        for window_days in BASELINE_WINDOWS:
            _baselines_upsert(tenant=tenant, window_days=window_days, as_of=start.date())

    params = {
        "tenant": tenant.pk,
        "type": snapshot_type,
        "start": start,
        "end": end,
        "now": timezone.now(),
        "status": SnapshotStatus.COMPUTING,
        "error": "",
    }
    if daily:
        baselines_sql = _DAILY_BASELINES
        params["as_of"] = start.date()
    else:
        baselines_sql = _HOURLY_BASELINES
        params["b7_from"] = start - timedelta(days=7)
        params["same_hours"] = [start - timedelta(days=k) for k in range(1, SAME_HOUR_DAYS + 1)]

    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_UPSERT, params)
        snapshot_id = cursor.fetchone()[0]
        params["snapshot"] = snapshot_id
        cursor.execute(
            "DELETE FROM analytics_snapshotaggregate WHERE snapshot_id = %s", [snapshot_id]
        )
        cursor.execute(_AGGREGATES_INSERT.format(baselines=baselines_sql), params)
        records_processed, _ = cursor.fetchone()

    # is_stale is left alone: an ingest that committed after the aggregation read may
    # already have flagged this row again.
    CostSnapshot.objects.filter(pk=snapshot_id).update(
        status=SnapshotStatus.COMPLETE,
        records_processed=records_processed,
        computation_ms=int((time.monotonic() - started) * 1000),
        completed_at=timezone.now(),
    )
    return snapshot_id


@transaction.atomic
def _snapshot_mark_failed(
    *,
    tenant: Tenant,
    snapshot_type: str,
    start: datetime,
    end: datetime,
    now: datetime,
    error: str,
) -> int:
    """Record a failed computation: status `failed`, the error, version + 1, no aggregates."""
    params = {
        "tenant": tenant.pk,
        "type": snapshot_type,
        "start": start,
        "end": end,
        "now": now,
        "status": SnapshotStatus.FAILED,
        "error": error,
    }
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_UPSERT, params)
        snapshot_id = cursor.fetchone()[0]
        # Aggregates of an earlier version would describe data this version did not see.
        cursor.execute(
            "DELETE FROM analytics_snapshotaggregate WHERE snapshot_id = %s", [snapshot_id]
        )
    return snapshot_id


@transaction.atomic
def baseline_compute(
    *, tenant: Tenant, window_days: int, as_of: date | None = None
) -> list[Baseline]:
    """Upsert the tenant's `window_days` baselines as of `as_of` (default: today, UTC).

    Returns the rows for that as_of, tenant first, then users, features and models.
    """
    if window_days not in BASELINE_WINDOWS:
        raise ValidationError({"window_days": "must be one of: 7, 30"})
    as_of = as_of or timezone.now().date()
    _baselines_upsert(tenant=tenant, window_days=window_days, as_of=as_of)
    return list(baseline_list(tenant=tenant, window_days=window_days, as_of=as_of))


# Statistics per entity over the window's complete daily snapshots; idle days have no
# aggregate and so are not samples. last_snapshot is the contributing snapshot with the
# latest period, found by joining back on its natural key, which keeps the grouping a plain
# hash aggregate (an ordered ARRAY_AGG would force a sort of every aggregate row).
# MATERIALIZED: computed once even when stale statistics make the planner loop over it.
# is_current is decided before the statement (see _baselines_upsert).
_BASELINES_UPSERT = """
WITH stats AS MATERIALIZED (
    SELECT a.entity_type, a.entity_id,
           AVG(a.total_cost_cents)::float8 AS avg_cost,
           STDDEV_SAMP(a.total_cost_cents)::float8 AS stddev_cost,
           AVG(a.request_count)::float8 AS avg_requests,
           MAX(a.total_cost_cents)::float8 AS max_cost,
           MIN(a.total_cost_cents)::float8 AS min_cost,
           COUNT(*) AS samples,
           MAX(s.period_start) AS last_period
    FROM analytics_costsnapshot s
    JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id
    WHERE s.tenant_id = %(tenant)s AND s.snapshot_type = 'daily' AND s.status = 'complete'
      AND s.period_start >= %(window_start)s AND s.period_start < %(window_end)s
    GROUP BY a.entity_type, a.entity_id
)
INSERT INTO analytics_baseline AS b
    (tenant_id, entity_type, entity_id, window_days, as_of, avg_daily_cost_cents,
     stddev_daily_cost_cents, avg_daily_requests, max_daily_cost_cents, min_daily_cost_cents,
     samples_count, last_snapshot_id, computed_at, valid_until, is_current)
SELECT %(tenant)s, st.entity_type, st.entity_id, %(window)s, %(as_of)s, st.avg_cost,
       st.stddev_cost, st.avg_requests, st.max_cost, st.min_cost, st.samples, last.id,
       %(now)s, %(valid_until)s, %(is_current)s
FROM stats st
JOIN analytics_costsnapshot last
  ON last.tenant_id = %(tenant)s AND last.snapshot_type = 'daily'
 AND last.period_start = st.last_period
ON CONFLICT ON CONSTRAINT baseline_natural_key DO UPDATE SET
    avg_daily_cost_cents = EXCLUDED.avg_daily_cost_cents,
    stddev_daily_cost_cents = EXCLUDED.stddev_daily_cost_cents,
    avg_daily_requests = EXCLUDED.avg_daily_requests,
    max_daily_cost_cents = EXCLUDED.max_daily_cost_cents,
    min_daily_cost_cents = EXCLUDED.min_daily_cost_cents,
    samples_count = EXCLUDED.samples_count,
    last_snapshot_id = EXCLUDED.last_snapshot_id,
    computed_at = EXCLUDED.computed_at,
    valid_until = EXCLUDED.valid_until,
    is_current = EXCLUDED.is_current
RETURNING b.id
"""

_BASELINES_LATEST_AS_OF = """
SELECT MAX(as_of) FROM analytics_baseline WHERE tenant_id = %(tenant)s AND window_days = %(window)s
"""
# Runs before the upsert flags the new rows current, so the partial unique index "one
# current row per entity and window" never sees two current rows, not even mid-transaction.
_BASELINES_CLEAR_CURRENT = """
UPDATE analytics_baseline SET is_current = false
WHERE tenant_id = %(tenant)s AND window_days = %(window)s AND is_current AND as_of <> %(as_of)s
"""
# When the newest as_of ended up without rows, the latest remaining as_of is current again.
_BASELINES_RESTORE_CURRENT = """
UPDATE analytics_baseline SET is_current = true
WHERE tenant_id = %(tenant)s AND window_days = %(window)s AND NOT is_current
  AND as_of = (SELECT MAX(as_of) FROM analytics_baseline
               WHERE tenant_id = %(tenant)s AND window_days = %(window)s)
"""


def _baselines_upsert(*, tenant: Tenant, window_days: int, as_of: date) -> None:
    """Upsert one window's baselines as of `as_of`; call inside a transaction.

    is_current = (as_of is the latest as_of of the tenant's rows for the window): a newer
    or equal as_of takes the flag over from the older rows; a backfill of an older date
    writes rows that are not current and leaves the flag where it is.
    """
    params = {
        "tenant": tenant.pk,
        "window": window_days,
        "as_of": as_of,
        "now": timezone.now(),
        "valid_until": utc_midnight(as_of + timedelta(days=1)),
        "window_start": utc_midnight(as_of - timedelta(days=window_days)),
        "window_end": utc_midnight(as_of),
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s::int4, %s::int4)",
            [BASELINE_LOCK_CLASS, tenant.pk % 2**31],
        )
        cursor.execute(_BASELINES_LATEST_AS_OF, params)
        latest = cursor.fetchone()[0]
        params["is_current"] = latest is None or as_of >= latest
        if params["is_current"]:
            cursor.execute(_BASELINES_CLEAR_CURRENT, params)
        cursor.execute(_BASELINES_UPSERT, params)
        kept = [row[0] for row in cursor.fetchall()]
        # An entity with no samples left in the window (its snapshots were recomputed
        # without it) loses its row for this as_of instead of keeping stale numbers.
        cursor.execute(
            "DELETE FROM analytics_baseline WHERE tenant_id = %s AND window_days = %s "
            "AND as_of = %s AND NOT (id = ANY(%s::bigint[]))",
            [tenant.pk, window_days, as_of, kept],
        )
        if not kept:
            cursor.execute(_BASELINES_RESTORE_CURRENT, params)
