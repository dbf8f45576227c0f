"""Writes of client-reported data: cost record batches and run record batches.

Both paths are set-based: one statement per step whatever the batch size, so a 1000-record
batch costs about as much database time as a COPY of the same rows would.
"""

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction

from analytics import metrics
from analytics.models import RunRecord, RunStatus, SnapshotStatus, Tenant
from analytics.models.records import UNCLASSIFIED_TAG

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
    ("cost_cents", "numeric"),
    ("is_retry", "boolean"),
    ("created_at", "timestamptz"),
)
_BATCH_NAMES = ", ".join(name for name, _ in COST_RECORD_COLUMNS)
_BATCH_TYPES = ", ".join(f"{name} {sql_type}" for name, sql_type in COST_RECORD_COLUMNS)
_INSERT_VALUES = ", ".join(
    (
        # Tags that are neither `unclassified` nor an active tag of the tenant are stored as
        # `unclassified`, so dashboards never grow a long tail of typos.
        "CASE WHEN b.feature_tag IS NULL OR b.feature_tag = %(unclassified)s "
        "OR ft.id IS NOT NULL THEN b.feature_tag ELSE %(unclassified)s END"
    )
    if name == "feature_tag"
    else f"b.{name}"
    for name, _ in COST_RECORD_COLUMNS
)

# One round trip: insert, then mark the complete snapshots covering the inserted rows stale.
# - The batch travels as one JSON document expanded by json_to_recordset(): binding a
#   thousand-row batch as per-column arrays costs several times more client CPU.
# - Rows are inserted in idempotency-key order so that concurrent batches sharing keys take
#   the unique-index locks in the same order and cannot deadlock each other.
# - ON CONFLICT targets the partial unique index (tenant_id, idempotency_key); a concurrent
#   batch with the same key waits for the first one and then skips the row.
# - Snapshot periods are aligned to the UTC hour/day (the snapshot service truncates
#   period_start), so covering snapshots are found through the natural-key index. They are
#   locked in id order for the same deadlock reason; already stale rows are left alone.
INGEST_SQL = f"""
WITH batch AS (
    SELECT * FROM json_to_recordset(%(batch)s::json) AS b({_BATCH_TYPES})
),
inserted AS (
    INSERT INTO analytics_costrecord (tenant_id, {_BATCH_NAMES}, ingested_at)
    SELECT %(tenant_id)s, {_INSERT_VALUES}, %(received_at)s
    FROM batch b
    LEFT JOIN analytics_featuretag ft
        ON ft.tenant_id = %(tenant_id)s AND ft.tag = b.feature_tag AND ft.is_active
    ORDER BY b.idempotency_key COLLATE "C"
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING created_at
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
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM stale)
"""


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    snapshots_marked_stale: int


@transaction.atomic
def cost_records_ingest(
    *, tenant: Tenant, records: list[dict], received_at: datetime
) -> IngestResult:
    """Insert a validated batch of cost records; return how many were new and duplicate.

    `records` hold every column of COST_RECORD_COLUMNS (the API validator fills defaults).
    A record whose idempotency key exists for the tenant, in the database or earlier in the
    batch, is a duplicate and is not written. Complete snapshots whose period contains an
    inserted record become stale in the same transaction.
    """
    seen_keys: set[str] = set()
    unique_rows = []
    for row in records:
        key = row["idempotency_key"]
        if key is not None:
            if key in seen_keys:
                continue
            seen_keys.add(key)
        unique_rows.append(row)

    params = {
        "batch": _batch_json(unique_rows),
        "tenant_id": tenant.pk,
        "received_at": received_at,
        "unclassified": UNCLASSIFIED_TAG,
        "complete": SnapshotStatus.COMPLETE,
    }
    with connection.cursor() as cursor:
        cursor.execute(INGEST_SQL, params)
        accepted, marked_stale = cursor.fetchone()

    result = IngestResult(
        accepted=accepted,
        duplicates=len(records) - accepted,
        snapshots_marked_stale=marked_stale,
    )
    transaction.on_commit(lambda: _count_ingested(result))
    return result


def _batch_json(rows: list[dict]) -> str:
    """Rows as a JSON array for json_to_recordset(); datetimes and Decimals travel as text
    (ISO-8601 with offset, exact decimal), which PostgreSQL casts back without loss."""
    return json.dumps(rows, default=str, ensure_ascii=False, separators=(",", ":"))


def _count_ingested(result: IngestResult) -> None:
    metrics.cost_records_ingested_total.labels(result="accepted").inc(result.accepted)
    metrics.cost_records_ingested_total.labels(result="duplicate").inc(result.duplicates)


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


class TerminalRunChanged(Exception):
    """The batch tries to change runs that are already terminal; nothing was written."""

    def __init__(self, indexes: list[int]):
        super().__init__(f"terminal runs cannot change (batch indexes {indexes})")
        self.indexes = indexes


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
