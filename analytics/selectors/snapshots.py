"""Reads of snapshots, their aggregates and baselines."""

from datetime import date, datetime, timedelta

from django.db.models import Case, IntegerField, Prefetch, QuerySet, Value, When

from analytics.db import read_connection
from analytics.models import (
    Baseline,
    CostSnapshot,
    EntityType,
    SnapshotAggregate,
    SnapshotStatus,
    SnapshotType,
    Tenant,
)

# Aggregates and baselines are listed tenant first, then users, features and models.
ENTITY_ORDER = Case(
    When(entity_type=EntityType.TENANT, then=Value(0)),
    When(entity_type=EntityType.USER, then=Value(1)),
    When(entity_type=EntityType.FEATURE, then=Value(2)),
    default=Value(3),
    output_field=IntegerField(),
)


def snapshot_list(
    *,
    tenant: Tenant,
    snapshot_type: str | None = None,
    status: str | None = None,
    period_from: datetime | None = None,
    period_to: datetime | None = None,
) -> QuerySet[CostSnapshot]:
    """The tenant's snapshots, optionally filtered; period_start in [period_from, period_to)."""
    queryset = CostSnapshot.objects.filter(tenant=tenant)
    if snapshot_type:
        queryset = queryset.filter(snapshot_type=snapshot_type)
    if status:
        queryset = queryset.filter(status=status)
    if period_from is not None:
        queryset = queryset.filter(period_start__gte=period_from)
    if period_to is not None:
        queryset = queryset.filter(period_start__lt=period_to)
    return queryset


def snapshot_aggregates(*, snapshot: CostSnapshot) -> QuerySet[SnapshotAggregate]:
    return (
        SnapshotAggregate.objects.filter(snapshot=snapshot)
        .annotate(entity_order=ENTITY_ORDER)
        .order_by("entity_order", "entity_id")
    )


def snapshot_detail_queryset(*, tenant: Tenant) -> QuerySet[CostSnapshot]:
    """Snapshots with their aggregates prefetched in display order."""
    ordered = SnapshotAggregate.objects.annotate(entity_order=ENTITY_ORDER).order_by(
        "entity_order", "entity_id"
    )
    return CostSnapshot.objects.filter(tenant=tenant).prefetch_related(
        Prefetch("aggregates", queryset=ordered, to_attr="ordered_aggregates")
    )


def snapshot_get_detail(*, tenant: Tenant, snapshot_id: int) -> CostSnapshot:
    return snapshot_detail_queryset(tenant=tenant).get(pk=snapshot_id)


def snapshots_stale_recent(
    *, tenant: Tenant, now: datetime, hours: int = 48
) -> QuerySet[CostSnapshot]:
    """Complete, stale snapshots whose period ended within the last `hours`, oldest first."""
    ended_after = now - timedelta(hours=hours)
    return CostSnapshot.objects.filter(
        tenant=tenant,
        status=SnapshotStatus.COMPLETE,
        is_stale=True,
        period_end__gte=ended_after,
        period_end__lte=now,
        # lets the partial (tenant, period_start) index bound the scan; no period is longer
        # than a day
        period_start__gte=ended_after - timedelta(days=1),
    ).order_by("period_start", "snapshot_type", "id")


def baseline_list(*, tenant: Tenant, window_days: int, as_of: date) -> QuerySet[Baseline]:
    return (
        Baseline.objects.filter(tenant=tenant, window_days=window_days, as_of=as_of)
        .annotate(entity_order=ENTITY_ORDER)
        .order_by("entity_order", "entity_id")
    )


def baselines_between(
    *,
    tenant: Tenant,
    window_days: int,
    first_day: date,
    last_day: date,
    entity_type: str = EntityType.TENANT,
    entity_id: str | None = None,
) -> list[Baseline]:
    """One entity's baselines of one window with `as_of` in [first_day, last_day] and the
    latest one before first_day, oldest first (a day without its own row uses that one)."""
    rows = Baseline.objects.filter(
        tenant=tenant, entity_type=entity_type, entity_id=entity_id, window_days=window_days
    ).only("as_of", "avg_daily_cost_cents", "stddev_daily_cost_cents")
    earlier = rows.filter(as_of__lt=first_day).order_by("-as_of").first()
    inside = list(rows.filter(as_of__gte=first_day, as_of__lte=last_day).order_by("as_of"))
    return ([earlier] if earlier else []) + inside


def hourly_tenant_baselines(
    *, tenant: Tenant, start: datetime, end: datetime
) -> list[tuple[datetime, float | None, float | None]]:
    """(hour, same-hour 7-day mean, same-hour 30-day mean) in cents of the tenant's complete
    hourly snapshots in [start, end), oldest first; the means are None without history."""
    return list(
        SnapshotAggregate.objects.filter(
            snapshot__tenant=tenant,
            snapshot__snapshot_type=SnapshotType.HOURLY,
            snapshot__status=SnapshotStatus.COMPLETE,
            snapshot__period_start__gte=start,
            snapshot__period_start__lt=end,
            entity_type=EntityType.TENANT,
        )
        .order_by("snapshot__period_start")
        .values_list("snapshot__period_start", "baseline_7d_avg_cents", "baseline_30d_avg_cents")
    )


# Per user, feature and model: spend over the window's complete daily snapshots against the
# 7-day baseline each snapshot recorded for it (the mean of the seven days before that day).
# A day without a baseline (the entity is new) expects nothing.
_ENTITY_MOVERS_SQL = """
SELECT entity_type, entity_id, actual, expected, days FROM (
    SELECT a.entity_type, a.entity_id,
           SUM(a.total_cost_cents)::float8 AS actual,
           COALESCE(SUM(a.baseline_7d_avg_cents), 0)::float8 AS expected,
           COUNT(*) AS days,
           ROW_NUMBER() OVER (
               PARTITION BY a.entity_type
               ORDER BY SUM(a.total_cost_cents)::float8
                        - COALESCE(SUM(a.baseline_7d_avg_cents), 0) DESC, a.entity_id
           ) AS place
    FROM analytics_costsnapshot s
    JOIN analytics_snapshotaggregate a ON a.snapshot_id = s.id
    WHERE s.tenant_id = %(tenant)s AND s.snapshot_type = 'daily' AND s.status = 'complete'
      AND s.period_start >= %(start)s AND s.period_start < %(end)s
      AND a.entity_type IN ('user', 'feature', 'model')
    GROUP BY a.entity_type, a.entity_id
) ranked
WHERE place <= %(limit)s AND actual > expected
ORDER BY entity_type, actual - expected DESC, entity_id
"""


def entity_movers(
    *, tenant: Tenant, start: datetime, end: datetime, limit: int = 5
) -> list[tuple[str, str, float, float, int]]:
    """The users, features and models whose spend rose most above their 7-day baselines over
    the daily snapshots with period_start in [start, end): up to `limit` of each type, as
    (entity_type, entity_id, actual_cents, expected_cents, days), largest increase first."""
    with read_connection().cursor() as cursor:
        cursor.execute(
            _ENTITY_MOVERS_SQL, {"tenant": tenant.pk, "start": start, "end": end, "limit": limit}
        )
        return cursor.fetchall()
