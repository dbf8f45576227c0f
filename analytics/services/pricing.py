"""Writes of prices: tenant price overrides, and repricing stored cost records.

Repricing recomputes, set-based in SQL, the cost of every record the service priced
(`catalog`, `override`, `unpriced`) with today's catalogue and the tenant's overrides; a client
cost is never touched. Each time chunk is one statement: the records of the chunk join the
price cells of their (model, provider) pairs (the same cells and the same cost expression as
ingest), the changed ones are updated, and the complete snapshots whose period holds a changed
record become stale, so statistics read those periods from the records and the hourly job
recomputes the recent ones.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction

from analytics.models import CostSource, ModelPriceOverride, SnapshotStatus, Tenant
from analytics.selectors.pricing import override_rules
from analytics.services.locks import LockId
from analytics.services.price_catalog import (
    CATALOG_VERSION,
    COST_SQL,
    PRICE_TABLE_TYPES,
    price_cells,
    price_join,
    price_table_json,
)

# Advisory lock class of a tenant's reprice (key: tenant id): two reprices of one tenant run
# one after the other, so the second sees the first's prices and changes nothing.
REPRICE_LOCK_CLASS = LockId.REPRICE
# A month per statement: progress a long reprice can show, few scans of a large tenant.
DEFAULT_CHUNK = timedelta(days=31)

OVERRIDE_FIELDS = (
    "model",
    "match",
    "provider",
    "input_cents_per_mtok",
    "output_cents_per_mtok",
    "cache_read_cents_per_mtok",
    "cache_write_cents_per_mtok",
    "effective_from",
)


# --- overrides ----------------------------------------------------------------------------------


@transaction.atomic
def model_price_create(*, tenant: Tenant, data: dict) -> ModelPriceOverride:
    """A new override; it prices records ingested from now on (reprice applies it to stored
    ones). Raises ValidationError when it duplicates one (same pattern, provider and
    effective_from)."""
    override = ModelPriceOverride(
        tenant=tenant, **{k: v for k, v in data.items() if k in OVERRIDE_FIELDS}
    )
    override.full_clean()
    override.save()
    return override


@transaction.atomic
def model_price_update(*, override: ModelPriceOverride, data: dict) -> ModelPriceOverride:
    for name, value in data.items():
        if name in OVERRIDE_FIELDS:
            setattr(override, name, value)
    override.full_clean()
    override.save()
    return override


@transaction.atomic
def model_price_delete(*, override: ModelPriceOverride) -> None:
    override.delete()


# --- reprice ------------------------------------------------------------------------------------


@dataclass
class RepriceResult:
    """What a reprice changed (or, dry, would change)."""

    records_examined: int = 0
    rows_changed: int = 0
    cents_delta: Decimal = Decimal(0)
    newly_unpriced: int = 0
    newly_priced: int = 0
    snapshots_marked_stale: int = 0
    dry_run: bool = False

    def add(self, other: "RepriceResult") -> None:
        self.records_examined += other.records_examined
        self.rows_changed += other.rows_changed
        self.cents_delta += other.cents_delta
        self.newly_unpriced += other.newly_unpriced
        self.newly_priced += other.newly_priced
        self.snapshots_marked_stale += other.snapshots_marked_stale


# The (model, provider) pairs to price and the span of their records.
KEYS_SQL = """
SELECT model, provider, min(created_at), max(created_at) FROM analytics_costrecord
WHERE tenant_id = %(tenant_id)s AND created_at >= %(since)s
  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
  AND cost_source <> %(client)s AND (%(model)s::varchar IS NULL OR model = %(model)s)
GROUP BY model, provider
"""

# The records of the chunk a reprice may change, and the SQL of their new cost and source.
_SCOPE = """
    analytics_costrecord r
    JOIN prices p ON {join}
    WHERE r.tenant_id = %(tenant_id)s AND r.created_at >= %(since)s AND r.created_at < %(until)s
      AND r.cost_source <> %(client)s AND (%(model)s::varchar IS NULL OR r.model = %(model)s)
""".format(join=price_join("r.created_at"))
_NEW_SOURCE = f"CASE WHEN ({COST_SQL}) IS NULL THEN %(unpriced)s ELSE p.source END"
_CHANGES = f"(({COST_SQL}) IS DISTINCT FROM r.cost_cents OR {_NEW_SOURCE} <> r.cost_source)"

_PRICES = f"""
prices AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(prices)s::json) AS p({PRICE_TABLE_TYPES})
),
recomputed AS (
    SELECT r.created_at, r.cost_cents AS old_cents, {COST_SQL} AS new_cents,
           {_CHANGES} AS changes
    FROM {_SCOPE}
),
totals AS (
    SELECT count(*) AS examined,
           count(*) FILTER (WHERE changes) AS changed,
           COALESCE(sum(COALESCE(new_cents, 0) - COALESCE(old_cents, 0))
                    FILTER (WHERE changes), 0) AS delta,
           count(*) FILTER (WHERE changes AND new_cents IS NULL) AS unpriced,
           count(*) FILTER (WHERE changes AND old_cents IS NULL AND new_cents IS NOT NULL)
               AS priced
    FROM recomputed
)"""

_PERIODS_OF = """
periods AS (
    SELECT DISTINCT 'hourly' AS snapshot_type, date_trunc('hour', created_at, 'UTC') AS start
    FROM {source}
    UNION
    SELECT DISTINCT 'daily', date_trunc('day', created_at, 'UTC') FROM {source}
),
covering AS (
    SELECT c.id
    FROM analytics_costsnapshot c
    JOIN periods p ON c.snapshot_type = p.snapshot_type AND c.period_start = p.start
    WHERE c.tenant_id = %(tenant_id)s AND c.status = %(complete)s AND NOT c.is_stale
    ORDER BY c.id
    {lock}
)"""

# The reprice of one chunk, one statement: the changed records are updated in place (the
# price join drives the UPDATE itself), the complete snapshots covering them are marked stale
# (locked in id order, as ingest does), and the report reads the old costs of the updated rows
# by id: every part of a statement reads the same snapshot, taken before its own update, so
# `old` sees the costs as they were. Only the changed rows are read twice; the chunk itself
# is scanned once more, for the count of records examined, without the price join.
REPRICE_SQL = f"""
WITH prices AS MATERIALIZED (
    SELECT * FROM json_to_recordset(%(prices)s::json) AS p({PRICE_TABLE_TYPES})
),
updated AS (
    UPDATE analytics_costrecord r
    SET cost_cents = {COST_SQL}, cost_source = {_NEW_SOURCE},
        price_catalog_version = %(catalog_version)s
    FROM prices p
    WHERE {price_join("r.created_at")}
      AND r.tenant_id = %(tenant_id)s AND r.created_at >= %(since)s AND r.created_at < %(until)s
      AND r.cost_source <> %(client)s AND (%(model)s::varchar IS NULL OR r.model = %(model)s)
      AND {_CHANGES}
    RETURNING r.id, r.created_at, r.cost_cents AS new_cents
),
old AS (
    SELECT u.new_cents, o.cost_cents AS old_cents
    FROM updated u
    JOIN analytics_costrecord o ON o.id = u.id AND o.created_at = u.created_at
),
{_PERIODS_OF.format(source="updated", lock="FOR UPDATE OF c")},
stale AS (
    UPDATE analytics_costsnapshot s SET is_stale = true
    WHERE s.id IN (SELECT id FROM covering)
    RETURNING s.id
)
SELECT (SELECT count(*) FROM analytics_costrecord r
        WHERE r.tenant_id = %(tenant_id)s AND r.created_at >= %(since)s
          AND r.created_at < %(until)s AND r.cost_source <> %(client)s
          AND (%(model)s::varchar IS NULL OR r.model = %(model)s)),
       count(*),
       COALESCE(sum(COALESCE(new_cents, 0) - COALESCE(old_cents, 0)), 0),
       count(*) FILTER (WHERE new_cents IS NULL),
       count(*) FILTER (WHERE old_cents IS NULL AND new_cents IS NOT NULL),
       (SELECT count(*) FROM stale)
FROM old
"""

# The same without writing: what REPRICE_SQL would change.
REPRICE_DRY_SQL = f"""
WITH {_PRICES},
changed AS (SELECT created_at FROM recomputed WHERE changes),
{_PERIODS_OF.format(source="changed", lock="")}
SELECT t.examined, t.changed, t.delta, t.unpriced, t.priced, (SELECT count(*) FROM covering)
FROM totals t
"""


def reprice_chunks(*, since: datetime, until: datetime, chunk: timedelta) -> list[tuple]:
    """[since, until) cut into consecutive windows of at most `chunk`."""
    windows = []
    start = since
    while start < until:
        end = min(start + chunk, until)
        windows.append((start, end))
        start = end
    return windows


def cost_records_reprice(
    *,
    tenant: Tenant,
    since: datetime,
    until: datetime | None = None,
    model: str | None = None,
    dry_run: bool = False,
    chunk: timedelta = DEFAULT_CHUNK,
    progress: Callable[[datetime, datetime, RepriceResult], None] | None = None,
) -> RepriceResult:
    """Recompute the costs the service computed for the tenant's records created in
    [since, until) (no end when `until` is None; of `model` only, when given) with the
    installed catalogue and the tenant's overrides; return the rows changed and the cents
    delta (unpriced counts as 0).

    Client costs are never touched. Each chunk commits on its own under the tenant's reprice
    lock, so an interrupted reprice keeps its finished chunks and a rerun completes it; a
    rerun over repriced records changes nothing. `progress` is called after each chunk. A dry
    run writes nothing and reports what would change.
    """
    total = RepriceResult(dry_run=dry_run)
    params = {
        "tenant_id": tenant.pk,
        "since": since,
        "until": until,
        "model": model,
        "client": CostSource.CLIENT,
    }
    with connection.cursor() as cursor:
        cursor.execute(KEYS_SQL, params)
        found = cursor.fetchall()
    if not found:
        return total
    keys = sorted(((row[0], row[1]) for row in found), key=lambda key: (key[0], key[1] or ""))
    prices = price_table_json(price_cells(keys, override_rules(tenant=tenant)))
    # Chunks span only the records' own range: a reprice "since 2020" of a young tenant
    # does not walk empty weeks.
    first = max(since, min(row[2] for row in found))
    last = max(row[3] for row in found) + timedelta(microseconds=1)
    end_of_range = last if until is None else min(until, last)
    for start, end in reprice_chunks(since=first, until=end_of_range, chunk=chunk):
        result = _reprice_chunk(
            params={**params, "since": start, "until": end, "prices": prices}, dry_run=dry_run
        )
        total.add(result)
        if progress is not None:
            progress(start, end, result)
    return total


@transaction.atomic
def _reprice_chunk(*, params: dict, dry_run: bool) -> RepriceResult:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [REPRICE_LOCK_CLASS, params["tenant_id"]]
        )
        cursor.execute(
            REPRICE_DRY_SQL if dry_run else REPRICE_SQL,
            {
                **params,
                "unpriced": CostSource.UNPRICED,
                "complete": SnapshotStatus.COMPLETE,
                "catalog_version": CATALOG_VERSION,
            },
        )
        examined, changed, delta, unpriced, priced, snapshots = cursor.fetchone()
    return RepriceResult(
        records_examined=examined,
        rows_changed=changed,
        cents_delta=Decimal(delta),
        newly_unpriced=unpriced,
        newly_priced=priced,
        snapshots_marked_stale=snapshots,
        dry_run=dry_run,
    )
