"""Reads of client-reported data and tenant configuration (cost records, runs, tags, budgets)."""

from datetime import datetime

from django.db.models import QuerySet

from analytics.models import Budget, CostRecord, FeatureTag, RunRecord, Tenant


def created_between(queryset: QuerySet, start: datetime | None, end: datetime | None) -> QuerySet:
    """Restrict to `created_at` in the half-open `[start, end)`; either bound may be open."""
    if start is not None:
        queryset = queryset.filter(created_at__gte=start)
    if end is not None:
        queryset = queryset.filter(created_at__lt=end)
    return queryset


def cost_record_list(
    *,
    tenant: Tenant,
    start: datetime | None = None,
    end: datetime | None = None,
    model: str | None = None,
    feature_tag: str | None = None,
    user_id: str | None = None,
) -> QuerySet[CostRecord]:
    """The tenant's cost records with `created_at` in `[start, end)`, optionally narrowed.

    Each filter matches one of the (tenant, <column>, created_at) indexes.
    """
    records = created_between(CostRecord.objects.filter(tenant=tenant), start, end)
    if model is not None:
        records = records.filter(model=model)
    if feature_tag is not None:
        records = records.filter(feature_tag=feature_tag)
    if user_id is not None:
        records = records.filter(user_id=user_id)
    return records


def run_record_list(
    *,
    tenant: Tenant,
    start: datetime | None = None,
    end: datetime | None = None,
    worker_id: str | None = None,
    status: str | None = None,
) -> QuerySet[RunRecord]:
    """The tenant's runs with `created_at` in `[start, end)`, optionally by worker or status."""
    runs = created_between(RunRecord.objects.filter(tenant=tenant), start, end)
    if worker_id is not None:
        runs = runs.filter(worker_id=worker_id)
    if status is not None:
        runs = runs.filter(status=status)
    return runs


def feature_tag_list(*, tenant: Tenant) -> QuerySet[FeatureTag]:
    return FeatureTag.objects.filter(tenant=tenant)


def budget_list(*, tenant: Tenant) -> QuerySet[Budget]:
    return Budget.objects.filter(tenant=tenant)
