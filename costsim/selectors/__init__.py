"""Reads of costsim data: provenance lists and statistics, the breaker row, its incidents and
the canary reports. The divergence and calibration reports, reads too, are `divergence.py` and
`calibration.py` beside this module.

Every provenance read takes the tenant explicitly; the only cross-tenant reads are the
ones a job needs (the backfill duplicate check, the export command with no tenant).
"""

from collections.abc import Collection, Iterable
from datetime import datetime
from functools import cache
from typing import NamedTuple

from django.db import connection
from django.db.models import Avg, Count, Max, Min, QuerySet, StdDev

from analytics.models import Tenant
from analytics.selectors.records import created_between
from costsim.models import BREAKER_NAME, BreakerIncident, CanaryReport, CircuitBreaker, Provenance

EMPTY_DRIFT_STATS = {
    "total": 0,
    "avg_delta": 0.0,
    "min_delta": 0.0,
    "max_delta": 0.0,
    "stddev_delta": 0.0,
}


def provenance_list(
    *,
    tenant: Tenant,
    variant_slug: str | None = None,
    source: str | None = None,
    input_hash: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet[Provenance]:
    """Return the tenant's provenance rows, newest first, with the given exact filters.

    The payload columns are deferred: list views never show them and a V2 result of a
    200-step plan is tens of kilobytes.
    """
    queryset = Provenance.objects.filter(tenant=tenant).defer("input_json", "output_json")
    if variant_slug is not None:
        queryset = queryset.filter(variant_slug=variant_slug)
    if source is not None:
        queryset = queryset.filter(source=source)
    if input_hash is not None:
        queryset = queryset.filter(input_hash=input_hash)
    return created_between(queryset, start, end).order_by("-created_at", "-id")


def breaker_incident_list(*, include_resolved: bool = False) -> QuerySet[BreakerIncident]:
    """Return the breaker incidents, newest first; the open ones only unless asked."""
    queryset = BreakerIncident.objects.order_by("-created_at", "-id")
    if not include_resolved:
        queryset = queryset.filter(resolved=False)
    return queryset


def canary_report_list(
    *, status: str | None = None, passed: bool | None = None
) -> QuerySet[CanaryReport]:
    """Return the persisted canary reports matching the filters, newest first.

    The sample lists are left unloaded: list views never show them.
    """
    queryset = CanaryReport.objects.defer("comparisons", "diffs").order_by("-timestamp", "-id")
    if status is not None:
        queryset = queryset.filter(status=status)
    if passed is not None:
        queryset = queryset.filter(passed=passed)
    return queryset


def provenance_count(**filters) -> int:
    """Return how many rows `provenance_list(**filters)` holds."""
    return provenance_list(**filters).count()


def provenance_drift_stats(
    *, tenant: Tenant, start: datetime | None = None, end: datetime | None = None
) -> dict[str, int | float]:
    """Return {total, avg_delta, min_delta, max_delta, stddev_delta} of cost_delta.

    Only rows with both costs count (backfilled V1 rows have no V2 cost). One aggregate
    query; stddev is the sample standard deviation, 0.0 below two rows. Floats 4 dp.
    """
    queryset = Provenance.objects.filter(
        tenant=tenant, v1_cost__isnull=False, v2_cost__isnull=False
    )
    row = created_between(queryset, start, end).aggregate(
        total=Count("id"),
        avg_delta=Avg("cost_delta"),
        min_delta=Min("cost_delta"),
        max_delta=Max("cost_delta"),
        stddev_delta=StdDev("cost_delta", sample=True),
    )
    if not row["total"]:
        return dict(EMPTY_DRIFT_STATS)
    return {
        "total": row["total"],
        "avg_delta": round(float(row["avg_delta"]), 4),
        "min_delta": round(float(row["min_delta"]), 4),
        "max_delta": round(float(row["max_delta"]), 4),
        # stddev_samp() is NULL for a single row.
        "stddev_delta": round(float(row["stddev_delta"] or 0.0), 4),
    }


def provenance_existing_keys(*, keys: Collection[tuple[int, str]]) -> set[tuple[int, str]]:
    """Return the (tenant_id, input_hash) pairs of `keys` that already have a row.

    One query for the whole collection (served by the (tenant, input_hash) index); the
    IN lists over-select the cross product, which the final intersection removes.
    """
    if not keys:
        return set()
    tenant_ids = {tenant_id for tenant_id, _ in keys}
    hashes = {input_hash for _, input_hash in keys}
    found = (
        Provenance.objects.filter(tenant_id__in=tenant_ids, input_hash__in=hashes)
        .values_list("tenant_id", "input_hash")
        .distinct()
    )
    return set(found) & set(keys)


def provenance_existing_rows(
    *, keys: Collection[tuple[int, str, datetime]]
) -> set[tuple[int, str, datetime]]:
    """Return the (tenant_id, input_hash, created_at) triples of `keys` that have a row.

    How the backfill recognises an exported row restored before; one query, narrowed by
    the (tenant, input_hash) index and intersected like provenance_existing_keys.
    """
    if not keys:
        return set()
    found = Provenance.objects.filter(
        tenant_id__in={tenant_id for tenant_id, _, _ in keys},
        input_hash__in={input_hash for _, input_hash, _ in keys},
        created_at__in={created_at for _, _, created_at in keys},
    ).values_list("tenant_id", "input_hash", "created_at")
    return set(found) & set(keys)


def provenance_export_rows(
    *,
    tenant: Tenant | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> QuerySet:
    """Return full provenance rows (every column, plus the tenant slug) ordered by id.

    Values, not model instances: the export streams them with iterator() and writes
    them straight out.
    """
    queryset = Provenance.objects.all()
    if tenant is not None:
        queryset = queryset.filter(tenant=tenant)
    columns = [field.attname for field in Provenance._meta.concrete_fields]
    return created_between(queryset, start, end).order_by("id").values(*columns, "tenant__slug")


def tenants_by_slug(*, slugs: Iterable[str]) -> dict[str, Tenant]:
    """Return {slug: tenant} for the slugs that exist (active or not)."""
    return {tenant.slug: tenant for tenant in Tenant.objects.filter(slug__in=set(slugs))}


class BreakerSnapshot(NamedTuple):
    """What the breaker service needs to decide whether a report can change anything."""

    disabled: bool
    disabled_until: datetime | None
    consecutive_failures: int
    consecutive_schema_errors: int


_SNAPSHOT_FIELDS = BreakerSnapshot._fields


@cache
def _snapshot_sql(placeholder: str = "%s") -> str:
    opts = CircuitBreaker._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in _SNAPSHOT_FIELDS)
    return (
        f"SELECT {columns} FROM {quote(opts.db_table)} "
        f"WHERE {quote(opts.get_field('name').column)} = {placeholder}"
    )


def circuit_breaker_snapshot_sql(placeholder: str = "%s") -> str:
    """The SELECT of circuit_breaker_snapshot (one parameter, BREAKER_NAME, written as
    `placeholder`), for a caller that reads the row in a statement of its own; its columns
    are BreakerSnapshot's."""
    return _snapshot_sql(placeholder)


def circuit_breaker_snapshot() -> BreakerSnapshot | None:
    """Return the breaker's open flag, TTL and streak counters as committed now (unlocked).

    Read on every shadowed simulation, so it is plain SQL: the ORM's query compilation and
    model instantiation cost several times the query itself. None when the row is missing.
    """
    with connection.cursor() as cursor:
        cursor.execute(_snapshot_sql(), [BREAKER_NAME])
        row = cursor.fetchone()
    return BreakerSnapshot(*row) if row is not None else None


def circuit_breaker_snapshot_of(breaker: CircuitBreaker) -> BreakerSnapshot:
    """Return the snapshot of a breaker row already in memory."""
    return BreakerSnapshot(*(getattr(breaker, name) for name in _SNAPSHOT_FIELDS))
