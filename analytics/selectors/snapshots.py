"""Reads of snapshots, their aggregates and baselines."""

from datetime import date, datetime, timedelta

from django.db.models import Case, IntegerField, Prefetch, QuerySet, Value, When

from analytics.models import (
    Baseline,
    CostSnapshot,
    EntityType,
    SnapshotAggregate,
    SnapshotStatus,
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
