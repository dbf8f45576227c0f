"""Writes of client-reported data: cost record batches and run record batches.

Both paths are set-based: one statement per step whatever the batch size, so a 1000-record
batch costs about as much database time as a COPY of the same rows would.
"""

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction

from analytics import metrics
from analytics.errors import Conflict
from analytics.models import CostSource, RunRecord, RunStatus, SnapshotStatus, Tenant
from analytics.models.records import UNCLASSIFIED_TAG
from analytics.selectors.pricing import override_rules
from analytics.services.price_catalog import (
    CATALOG_VERSION,
    COST_SQL,
    PRICE_TABLE_TYPES,
    price_cells,
    price_join,
    price_table_json,
)

# Columns of a cleaned cost record and their SQL types.
COST_RECORD_COLUMNS = (
    ("idempotency_key", "varchar"),
    ("user_id", "varchar"),
    ("feature_tag", "varchar"),
    ("request_id", "varchar"),
    ("workflow_id", "varchar"),
    ("run_id", "varchar"),
    ("skill_id", "varchar"),
    ("model", "varchar"),
    ("provider", "varchar"),
    ("input_tokens", "bigint"),
    ("output_tokens", "bigint"),
    ("cache_read_tokens", "bigint"),
    ("cache_write_tokens", "bigint"),
    ("cost_cents", "numeric"),
    ("is_retry", "boolean"),
    ("created_at", "timestamptz"),
)
# Everything the client sends about a record except its key: the payload a key stands for.
PAYLOAD_COLUMNS = tuple(name for name, _ in COST_RECORD_COLUMNS if name != "idempotency_key")

# Why a record sent with a feature tag was stored as `unclassified`.
UNKNOWN_FEATURE_TAG = "unknown_feature_tag"  # the tenant has no such tag
INACTIVE_FEATURE_TAG = "inactive_feature_tag"  # the tag exists but is deactivated
UNCLASSIFIED_REASONS = (UNKNOWN_FEATURE_TAG, INACTIVE_FEATURE_TAG)

_BATCH_NAMES = ", ".join(name for name, _ in COST_RECORD_COLUMNS)
_BATCH_TYPES = ", ".join(f"{name} {sql_type}" for name, sql_type in COST_RECORD_COLUMNS)
_INSERT_EXPRESSIONS = {
    "feature_tag": (
        "CASE WHEN b.unclassified_reason IS NULL THEN b.feature_tag ELSE %(unclassified)s END"
    ),
    # A client cost always wins; otherwise the price of the record's cell.
    "cost_cents": "COALESCE(b.cost_cents, b.priced_cents)",
    "created_at": "b.created_at",
}
_INSERT_VALUES = ", ".join(
    _INSERT_EXPRESSIONS.get(name, f"b.{name}") for name, _ in COST_RECORD_COLUMNS
)
# The identity sequence of analytics_costrecord.id; key rows take their record's id from it.
RECORD_ID_SEQUENCE = "analytics_costrecord_id_seq"

# One round trip: price, insert, mark the complete snapshots covering the inserted rows stale,
# and report the keys skipped, the records that became unclassified and those left unpriced.
# - The batch travels as one JSON document expanded by json_to_recordset(): binding a
#   thousand-row batch as per-column arrays costs several times more client CPU.
# - Records without a client cost are priced by a join with the price cells of the batch's
#   (model, provider) pairs (analytics.services.price_catalog), which travel the same way; the
#   cells of a pair are disjoint and cover all time, so a record joins at most one. Records
#   with a client cost join none (the price table is empty when every record has one).
# - Tags that are neither `unclassified` nor an active tag of the tenant are stored as
#   `unclassified`, so dashboards never grow a long tail of typos; the tag as sent is kept
#   in sent_feature_tag, and the answer says which tags and why (featuretag_tenant_tag_uniq:
#   at most one tag row joins).
# - Keys go to analytics_costrecordkey, whose primary key (tenant_id, idempotency_key) is
#   unique across every month partition of analytics_costrecord; a record with a key is
#   inserted only when its key was, with the id the key row took from the records' sequence.
#   Records without a key take theirs from the same sequence.
# - Keys are inserted in idempotency-key order so that concurrent batches sharing keys take
#   the unique-index locks in the same order and cannot deadlock each other.
# - ON CONFLICT targets the key table's primary key; a concurrent batch with the same key
#   waits for the first one and then skips the key and its record. The skipped keys go on
#   to KEY_CONFLICTS_SQL.
# - Snapshot periods are aligned to the UTC hour/day (the snapshot service truncates
#   period_start), so covering snapshots are found through the natural-key index. They are
#   locked in id order for the same deadlock reason; already stale rows are left alone.
INGEST_SQL = f"""
WITH sent AS (
    SELECT s.idempotency_key, s.user_id, s.feature_tag, s.request_id, s.workflow_id, s.run_id,
           s.skill_id, s.model, s.provider, s.input_tokens, s.output_tokens,
           COALESCE(s.cache_read_tokens, 0) AS cache_read_tokens,
           COALESCE(s.cache_write_tokens, 0) AS cache_write_tokens,
           s.cost_cents, s.is_retry, COALESCE(s.created_at, %(received_at)s) AS created_at
    FROM json_to_recordset(%(batch)s::json) AS s({_BATCH_TYPES})
),
priced AS (
    SELECT r.*, p.source AS cell_source, {COST_SQL} AS priced_cents
    FROM sent r
    LEFT JOIN json_to_recordset(%(prices)s::json) AS p({PRICE_TABLE_TYPES})
      ON r.cost_cents IS NULL AND {price_join("r.created_at")}
),
batch AS (
    SELECT b.*,
           CASE WHEN b.cost_cents IS NOT NULL THEN '{CostSource.CLIENT}'
                WHEN b.priced_cents IS NULL THEN '{CostSource.UNPRICED}'
                ELSE b.cell_source
           END AS cost_source,
           CASE WHEN b.feature_tag IS NULL OR b.feature_tag = %(unclassified)s THEN NULL
                WHEN ft.id IS NULL THEN '{UNKNOWN_FEATURE_TAG}'
                WHEN NOT ft.is_active THEN '{INACTIVE_FEATURE_TAG}'
           END AS unclassified_reason
    FROM priced b
    LEFT JOIN analytics_featuretag ft ON ft.tenant_id = %(tenant_id)s AND ft.tag = b.feature_tag
),
keyed AS (
    INSERT INTO analytics_costrecordkey (tenant_id, idempotency_key, record_id, created_at)
    SELECT %(tenant_id)s, b.idempotency_key, nextval('{RECORD_ID_SEQUENCE}'), b.created_at
    FROM batch b
    WHERE b.idempotency_key IS NOT NULL
    ORDER BY b.idempotency_key COLLATE "C"
    ON CONFLICT (tenant_id, idempotency_key) DO NOTHING
    RETURNING idempotency_key, record_id
),
inserted AS (
    INSERT INTO analytics_costrecord (id, tenant_id, {_BATCH_NAMES}, cost_source,
                                      price_catalog_version, sent_feature_tag, ingested_at)
    SELECT COALESCE(k.record_id, nextval('{RECORD_ID_SEQUENCE}')), %(tenant_id)s,
           {_INSERT_VALUES}, b.cost_source,
           CASE WHEN b.cost_cents IS NULL THEN %(catalog_version)s END,
           CASE WHEN b.unclassified_reason IS NOT NULL OR b.feature_tag = %(unclassified)s
                THEN b.feature_tag END,
           %(received_at)s
    FROM batch b
    LEFT JOIN keyed k ON k.idempotency_key = b.idempotency_key
    WHERE b.idempotency_key IS NULL OR k.record_id IS NOT NULL
    RETURNING idempotency_key, created_at, cost_source, model
),
periods AS (
    SELECT DISTINCT 'hourly' AS snapshot_type, date_trunc('hour', created_at, 'UTC') AS start
    FROM inserted
    UNION
    SELECT DISTINCT 'daily', date_trunc('day', created_at, 'UTC') FROM inserted
),
stale AS (
    UPDATE analytics_costsnapshot s SET is_stale = true
    WHERE s.id IN (
        SELECT c.id
        FROM analytics_costsnapshot c
        JOIN periods p ON c.snapshot_type = p.snapshot_type AND c.period_start = p.start
        WHERE c.tenant_id = %(tenant_id)s AND c.status = %(complete)s AND NOT c.is_stale
        ORDER BY c.id
        FOR UPDATE OF c
    )
    RETURNING s.id
),
unclassified AS (
    SELECT b.unclassified_reason AS reason, b.feature_tag AS tag, count(*) AS records
    FROM batch b
    WHERE b.unclassified_reason IS NOT NULL
      AND (b.idempotency_key IS NULL
           OR EXISTS (SELECT FROM inserted i WHERE i.idempotency_key = b.idempotency_key))
    GROUP BY 1, 2
)
SELECT (SELECT count(*) FROM inserted),
       (SELECT count(*) FROM stale),
       (SELECT array_agg(b.idempotency_key) FROM batch b
        WHERE b.idempotency_key IS NOT NULL
          AND NOT EXISTS (SELECT FROM inserted i WHERE i.idempotency_key = b.idempotency_key)),
       (SELECT array_agg(reason) FROM unclassified),
       (SELECT array_agg(tag) FROM unclassified),
       (SELECT array_agg(records) FROM unclassified),
       (SELECT count(*) FILTER (WHERE cost_source = '{CostSource.CATALOG}') FROM inserted),
       (SELECT count(*) FILTER (WHERE cost_source = '{CostSource.OVERRIDE}') FROM inserted),
       (SELECT count(*) FILTER (WHERE cost_source = '{CostSource.UNPRICED}') FROM inserted),
       (SELECT array_agg(DISTINCT model ORDER BY model) FROM inserted
        WHERE cost_source = '{CostSource.UNPRICED}')
"""

# The skipped records whose key is stored with another payload: field by field, so new
# records pay nothing for it. The stored record is found through its key row (its id and
# created_at, so one partition is read). A separate statement, so it reads a snapshot taken
# after INGEST_SQL: a key skipped because a concurrent batch inserted it was waited for and
# is committed (an aborted batch would not have made it skip), and cost records are never
# updated. Only retention deletes them, long past any re-send; a key whose record it has
# just deleted finds nothing to compare, and the record counts as a duplicate. A record
# sent without a cost matches a stored record the service priced (whatever its price now),
# and one sent with a cost matches only the same client cost. Two more fields are not
# stored as sent: the tag, compared as sent through sent_feature_tag (a record ingested
# before that column existed and stored as `unclassified` matches any tag), and created_at,
# which a record without one leaves to the receipt time, so an absent created_at matches any.
_STORED_AS_SENT = " AND ".join(
    f"c.{name} IS NOT DISTINCT FROM s.{name}"
    for name in PAYLOAD_COLUMNS
    if name
    not in ("feature_tag", "cost_cents", "created_at", "cache_read_tokens", "cache_write_tokens")
)
KEY_CONFLICTS_SQL = f"""
SELECT s.idempotency_key
FROM json_to_recordset(%(batch)s::json) AS s({_BATCH_TYPES})
JOIN analytics_costrecordkey k
  ON k.tenant_id = %(tenant_id)s AND k.idempotency_key = s.idempotency_key
JOIN analytics_costrecord c
  ON c.id = k.record_id AND c.created_at = k.created_at AND c.tenant_id = %(tenant_id)s
WHERE NOT (
    {_STORED_AS_SENT}
    AND c.cache_read_tokens = COALESCE(s.cache_read_tokens, 0)
    AND c.cache_write_tokens = COALESCE(s.cache_write_tokens, 0)
    AND CASE WHEN s.cost_cents IS NULL THEN c.cost_source <> '{CostSource.CLIENT}'
             ELSE c.cost_source = '{CostSource.CLIENT}' AND c.cost_cents = s.cost_cents END
    AND (s.created_at IS NULL OR c.created_at = s.created_at)
    AND (COALESCE(c.sent_feature_tag, c.feature_tag) IS NOT DISTINCT FROM s.feature_tag
         OR (c.feature_tag = %(unclassified)s AND c.sent_feature_tag IS NULL
             AND s.feature_tag IS NOT NULL))
)
"""


@dataclass(frozen=True)
class UnclassifiedSummary:
    """Inserted records whose feature tag was stored as `unclassified`, and why."""

    count: int = 0
    reasons: dict[str, int] = field(default_factory=lambda: dict.fromkeys(UNCLASSIFIED_REASONS, 0))
    unknown_feature_tags: list[str] = field(default_factory=list)
    inactive_feature_tags: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PricingSummary:
    """How the inserted records without a client cost were priced."""

    catalog: int = 0
    override: int = 0
    unpriced: int = 0
    unpriced_models: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    snapshots_marked_stale: int
    unclassified: UnclassifiedSummary = field(default_factory=UnclassifiedSummary)
    pricing: PricingSummary = field(default_factory=PricingSummary)


@dataclass(frozen=True)
class KeyConflict:
    """records[index] reuses `key` with another payload than records[first_index] of the
    same batch, or (first_index None) than the record already stored under it."""

    index: int
    key: str
    first_index: int | None = None

    @property
    def reason(self) -> str:
        if self.first_index is None:
            where = "a stored record"
        else:
            where = f"records[{self.first_index}] of this batch"
        return (
            f"idempotency key {self.key!r} is already used by {where} with a different "
            "payload; resend the same payload to retry, or use a new key for a new record"
        )


class IdempotencyKeyConflict(Conflict):
    """Keys of the batch were used before with another payload; nothing was written."""

    default_message = "Idempotency keys were reused with a different payload; nothing was written."

    def __init__(self, conflicts: list[KeyConflict]):
        super().__init__(
            field_errors=[
                {"field": f"records[{item.index}].idempotency_key", "reason": item.reason}
                for item in conflicts
            ]
        )
        self.conflicts = conflicts


# complexity: the in-batch key check, the one ingest statement and the key-conflict check run in one
# transaction and fail together
@transaction.atomic
def cost_records_ingest(
    *, tenant: Tenant, records: list[dict], received_at: datetime
) -> IngestResult:
    """Insert a validated batch of cost records; return how many were new and duplicate.

    `records` hold the columns of COST_RECORD_COLUMNS (the cache token counts may be absent:
    0); a None `created_at` means the receipt time. A record with a None or absent
    `cost_cents` is priced here from its model, provider and token counts, in one statement
    for the batch: by the tenant's price override in effect at its `created_at`, else by the
    price catalogue, else it is stored `unpriced` without a cost. The cache counts must not
    exceed `input_tokens`, which counts cached tokens too. A record whose idempotency key
    exists for the tenant, in the database or earlier in the batch, with the same payload
    (PAYLOAD_COLUMNS, compared as in KEY_CONFLICTS_SQL) is a duplicate and is not written.
    Raises IdempotencyKeyConflict, and writes nothing, when a key comes with another
    payload. Complete snapshots whose period contains an inserted record become stale in
    the same transaction.
    """
    first_of_key: dict[str, int] = {}
    unique_rows = []
    in_batch_conflicts = []
    for index, row in enumerate(records):
        key = row["idempotency_key"]
        if key is not None:
            first = first_of_key.setdefault(key, index)
            if first != index:
                if not _same_payload(row, records[first], received_at=received_at):
                    in_batch_conflicts.append(KeyConflict(index=index, key=key, first_index=first))
                continue
        unique_rows.append(row)
    if in_batch_conflicts:
        raise IdempotencyKeyConflict(in_batch_conflicts)

    params = {
        "batch": _batch_json(unique_rows),
        "prices": _prices_json(tenant=tenant, rows=unique_rows),
        "tenant_id": tenant.pk,
        "received_at": received_at,
        "unclassified": UNCLASSIFIED_TAG,
        "complete": SnapshotStatus.COMPLETE,
        "catalog_version": CATALOG_VERSION,
    }
    with connection.cursor() as cursor:
        cursor.execute(INGEST_SQL, params)
        (accepted, marked_stale, skipped_keys, *rest) = cursor.fetchone()
        unclassified, priced = rest[:3], rest[3:]
        if skipped_keys:
            skipped = set(skipped_keys)
            cursor.execute(
                KEY_CONFLICTS_SQL,
                {
                    "batch": _batch_json(
                        [row for row in unique_rows if row["idempotency_key"] in skipped]
                    ),
                    "tenant_id": tenant.pk,
                    "unclassified": UNCLASSIFIED_TAG,
                },
            )
            conflicting = {key for (key,) in cursor.fetchall()}
            if conflicting:
                # Raising rolls back the insert and the stale marks above.
                raise IdempotencyKeyConflict(
                    [
                        KeyConflict(index=index, key=row["idempotency_key"])
                        for index, row in enumerate(records)
                        if row["idempotency_key"] in conflicting
                    ]
                )

    result = IngestResult(
        accepted=accepted,
        duplicates=len(records) - accepted,
        snapshots_marked_stale=marked_stale,
        unclassified=_unclassified_summary(*unclassified),
        pricing=PricingSummary(
            catalog=priced[0],
            override=priced[1],
            unpriced=priced[2],
            unpriced_models=priced[3] or [],
        ),
    )
    transaction.on_commit(lambda: _count_ingested(result))
    return result


def _same_payload(row: dict, first: dict, *, received_at: datetime) -> bool:
    """KEY_CONFLICTS_SQL's rule for two records of one batch. Decimal and aware datetime
    equality is by value, as in SQL: 1.5 == 1.50, one instant in two offsets is equal."""
    for name in PAYLOAD_COLUMNS:
        if name == "created_at":
            if row[name] is not None and row[name] != (first[name] or received_at):
                return False
        elif name in _ZERO_WHEN_ABSENT:
            if row.get(name, 0) != first.get(name, 0):
                return False
        elif row.get(name) != first.get(name):
            return False
    return True


_ZERO_WHEN_ABSENT = ("cache_read_tokens", "cache_write_tokens")


def _prices_json(*, tenant: Tenant, rows: list[dict]) -> str:
    """The price cells of the (model, provider) pairs of the records without a client cost,
    as a JSON array for json_to_recordset(); the tenant's overrides are read only when there
    is something to price."""
    keys = {(row["model"], row.get("provider")) for row in rows if row.get("cost_cents") is None}
    if not keys:
        return "[]"
    cells = price_cells(
        sorted(keys, key=lambda key: (key[0], key[1] or "")), override_rules(tenant=tenant)
    )
    return price_table_json(cells)


def _unclassified_summary(
    reasons: list[str] | None, tags: list[str] | None, counts: list[int] | None
) -> UnclassifiedSummary:
    if not reasons:
        return UnclassifiedSummary()
    by_reason = Counter(dict.fromkeys(UNCLASSIFIED_REASONS, 0))
    tags_by_reason: dict[str, list[str]] = {reason: [] for reason in UNCLASSIFIED_REASONS}
    for reason, tag, count in zip(reasons, tags, counts, strict=True):
        by_reason[reason] += count
        tags_by_reason[reason].append(tag)
    return UnclassifiedSummary(
        count=sum(by_reason.values()),
        reasons=dict(by_reason),
        unknown_feature_tags=sorted(tags_by_reason[UNKNOWN_FEATURE_TAG]),
        inactive_feature_tags=sorted(tags_by_reason[INACTIVE_FEATURE_TAG]),
    )


def _batch_json(rows: list[dict]) -> str:
    """Rows as a JSON array for json_to_recordset(); datetimes and Decimals travel as text
    (ISO-8601 with offset, exact decimal), which PostgreSQL casts back without loss."""
    return json.dumps(rows, default=str, ensure_ascii=False, separators=(",", ":"))


def _count_ingested(result: IngestResult) -> None:
    metrics.cost_records_ingested_total.labels(result="accepted").inc(result.accepted)
    metrics.cost_records_ingested_total.labels(result="duplicate").inc(result.duplicates)
    pricing = result.pricing
    metrics.cost_records_priced_total.labels(cost_source="catalog").inc(pricing.catalog)
    metrics.cost_records_priced_total.labels(cost_source="override").inc(pricing.override)
    metrics.cost_records_priced_total.labels(cost_source="unpriced").inc(pricing.unpriced)


# --- run records ------------------------------------------------------------------------------

# Client-settable run columns; `run_id` is the natural key and not among them.
RUN_COLUMNS = (
    ("worker_id", "varchar"),
    ("status", "varchar"),
    ("success", "boolean"),
    ("error", "text"),
    ("total_tokens", "bigint"),
    ("total_latency_ms", "bigint"),
    ("cost_cents", "numeric"),
    ("is_retry", "boolean"),
    ("attempt", "integer"),
    ("parent_run_id", "varchar"),
    ("created_at", "timestamptz"),
    ("started_at", "timestamptz"),
    ("completed_at", "timestamptz"),
)
_RUN_NAMES = ", ".join(name for name, _ in RUN_COLUMNS)
_RUN_TYPES = ", ".join(f"{name} {sql_type}" for name, sql_type in RUN_COLUMNS)

# New runs are inserted in run_id order (lock ordering against concurrent batches). A run
# inserted by a concurrent batch since the FOR UPDATE read is skipped here and handled as an
# existing run afterwards.
RUN_INSERT_SQL = f"""
INSERT INTO analytics_runrecord (tenant_id, run_id, {_RUN_NAMES}, ingested_at, updated_at)
SELECT %(tenant_id)s, v.run_id, {", ".join(f"v.{name}" for name, _ in RUN_COLUMNS)},
    %(received_at)s, %(received_at)s
FROM json_to_recordset(%(batch)s::json) AS v(run_id varchar, {_RUN_TYPES})
ORDER BY v.run_id COLLATE "C"
ON CONFLICT (tenant_id, run_id) DO NOTHING
RETURNING run_id
"""

RUN_UPDATE_SQL = f"""
UPDATE analytics_runrecord r
SET {", ".join(f"{name} = v.{name}" for name, _ in RUN_COLUMNS)}, updated_at = %(received_at)s
FROM json_to_recordset(%(batch)s::json) AS v(id bigint, {_RUN_TYPES})
WHERE r.id = v.id
"""

RUN_DEFAULTS = {
    "success": None,
    "error": None,
    "total_tokens": None,
    "total_latency_ms": None,
    "cost_cents": None,
    "is_retry": False,
    "attempt": 1,
    "parent_run_id": None,
    "started_at": None,
    "completed_at": None,
}


@dataclass(frozen=True)
class RunUpsertResult:
    created: int
    updated: int
    unchanged: int


TERMINAL_IMMUTABLE = "run is terminal and immutable"


class TerminalRunChanged(Conflict):
    """The batch tries to change runs that are already terminal; nothing was written."""

    default_message = (
        "Terminal runs (completed, failed, crashed) cannot change; nothing was written."
    )

    def __init__(self, indexes: list[int]):
        super().__init__(
            field_errors=[
                {"field": f"runs[{index}]", "reason": TERMINAL_IMMUTABLE} for index in indexes
            ]
        )
        self.indexes = indexes


# complexity: insert, re-read of raced runs, compare and update share the batch's locked rows;
# TerminalRunChanged rolls them all back
@transaction.atomic
def run_records_upsert(
    *, tenant: Tenant, runs: list[dict], received_at: datetime
) -> RunUpsertResult:
    """Upsert a validated batch of runs keyed by (tenant, run_id).

    Each item holds `run_id` plus only the fields the client sent; for an existing run only
    those fields are compared and applied. Raises TerminalRunChanged (and writes nothing)
    when any item would change a completed, failed or crashed run. Run ids are unique within
    the batch (the validator guarantees it).
    """
    by_run_id = {item["run_id"]: index for index, item in enumerate(runs)}
    stored = _runs_locked(tenant=tenant, run_ids=list(by_run_id))

    new_items = [item for item in runs if item["run_id"] not in stored]
    created = 0
    if new_items:
        inserted = _runs_insert(tenant=tenant, items=new_items, received_at=received_at)
        created = len(inserted)
        raced = [item["run_id"] for item in new_items if item["run_id"] not in inserted]
        if raced:
            stored.update(_runs_locked(tenant=tenant, run_ids=raced))

    changed: list[dict] = []
    terminal_indexes: list[int] = []
    unchanged = 0
    for run_id, current in stored.items():
        item = runs[by_run_id[run_id]]
        differs = any(current[name] != value for name, value in item.items() if name != "run_id")
        if not differs:
            unchanged += 1
        elif current["status"] in RunStatus.terminal():
            terminal_indexes.append(by_run_id[run_id])
        else:
            changed.append({**current, **item})

    if terminal_indexes:
        # The transaction rolls back, including any runs inserted above.
        raise TerminalRunChanged(sorted(terminal_indexes))

    if changed:
        with connection.cursor() as cursor:
            cursor.execute(
                RUN_UPDATE_SQL, {"batch": _batch_json(changed), "received_at": received_at}
            )

    result = RunUpsertResult(created=created, updated=len(changed), unchanged=unchanged)
    transaction.on_commit(lambda: _count_upserted(result))
    return result


def _runs_locked(*, tenant: Tenant, run_ids: list[str]) -> dict[str, dict]:
    """Stored runs among `run_ids`, locked for the transaction in primary-key order."""
    rows = (
        RunRecord.objects.select_for_update()
        .filter(tenant=tenant, run_id__in=run_ids)
        .order_by("id")
        .values("id", "run_id", *(name for name, _ in RUN_COLUMNS))
    )
    return {row["run_id"]: row for row in rows}


def _runs_insert(*, tenant: Tenant, items: list[dict], received_at: datetime) -> set[str]:
    rows = [{**RUN_DEFAULTS, "created_at": received_at, **item} for item in items]
    params = {"batch": _batch_json(rows), "tenant_id": tenant.pk, "received_at": received_at}
    with connection.cursor() as cursor:
        cursor.execute(RUN_INSERT_SQL, params)
        return {run_id for (run_id,) in cursor.fetchall()}


def _count_upserted(result: RunUpsertResult) -> None:
    metrics.run_records_upserted_total.labels(result="created").inc(result.created)
    metrics.run_records_upserted_total.labels(result="updated").inc(result.updated)
    metrics.run_records_upserted_total.labels(result="unchanged").inc(result.unchanged)
