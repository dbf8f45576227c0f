"""Writes of OpenTelemetry trace exports: model calls become cost records, agent invocations
become runs, both through the ingest service the batch API uses.

What a span means is decided in `services/genai_spans.py`; this module adds what needs the
database: the calls earlier exports recorded (for the once-per-chain pricing rule), the lock
that keeps two exports of one trace from deciding at the same time, and the writes.
"""

import zlib
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection, transaction

from analytics.models import RunStatus, Tenant
from analytics.services import genai_spans
from analytics.services.genai_spans import (
    NO_PARENT,
    AgentInvocation,
    ModelCall,
    Rejection,
    StoredCall,
)
from analytics.services.ingest import (
    COST_RECORD_COLUMNS,
    IdempotencyKeyConflict,
    TerminalRunChanged,
    cost_records_ingest,
    run_records_upsert,
)
from analytics.services.locks import LockId

# Transaction-scoped advisory lock (class, hash of tenant and trace id): exports touching the
# same trace decide which calls to price one after the other, so a wrapper span and its
# inner call sent side by side in two requests cannot both be priced. A hash collision only
# makes two unrelated exports wait for each other.
TRACE_LOCK_CLASS = LockId.OTLP_TRACE
TRACE_LOCK_SQL = "SELECT pg_advisory_xact_lock(%s::int4, k) FROM unnest(%s::int4[]) AS k"

# Model calls recorded by earlier exports in the traces of this one, from their idempotency
# keys (trace id, span id, parent span id in hex; genai_spans.ModelCall.idempotency_key).
# request_id holds the trace id, so costrecord_request finds a trace's records; only the
# calls linked to a span of the export (as that span or as its child) can matter.
STORED_CALLS_SQL = """
SELECT left(idempotency_key, 32), substr(idempotency_key, 33, 16), substr(idempotency_key, 49, 16)
FROM analytics_costrecord
WHERE tenant_id = %(tenant_id)s
  AND request_id = ANY(%(trace_ids)s)
  AND char_length(idempotency_key) = 64
  AND left(idempotency_key, 32) = request_id
  AND (substr(idempotency_key, 33, 16) = ANY(%(span_ids)s)
       OR substr(idempotency_key, 49, 16) = ANY(%(span_ids)s))
"""

RECORDED_BEFORE = "was recorded before with other attributes; not recorded again"
RUN_FINISHED = "its run was recorded before with other attributes and a finished run cannot change"
REPEATED_SPAN = "repeats an earlier span of this request with other attributes"


@dataclass(frozen=True)
class OtlpIngestResult:
    spans: int
    records_created: int = 0
    records_duplicate: int = 0
    # Model calls another call of their chain stands for (not priced again).
    wrapper_spans: int = 0
    runs_created: int = 0
    runs_updated: int = 0
    runs_unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@transaction.atomic
def otlp_traces_ingest(*, tenant: Tenant, request, received_at: datetime) -> OtlpIngestResult:
    """Record one decoded `ExportTraceServiceRequest` for the tenant, all or nothing.

    Model-call spans become cost records (priced by the ingest service from model and
    tokens), each chain of nested calls once (genai_spans.calls_to_price); `invoke_agent`
    spans become runs; other spans are ignored. A span sent again adds nothing: a cost
    record's idempotency key and a run's id derive from the trace and span ids. Malformed
    GenAI spans, and spans sent again with other attributes, are rejected one by one and
    listed in the result; the rest is written in this one transaction.
    """
    export = genai_spans.export_read(request, received_at=received_at)
    rejected = list(export.rejected)
    records = runs = None
    wrappers = 0
    if export.calls:
        trace_ids = sorted({call.trace_id for call in export.calls})
        stored = _stored_calls(tenant=tenant, trace_ids=trace_ids, export=export)
        selection = genai_spans.calls_to_price(export, stored)
        rejected += selection.rejected
        wrappers = len(selection.wrappers)
        if selection.priced:
            records = _records_ingest(
                tenant=tenant, calls=selection.priced, received_at=received_at, rejected=rejected
            )
    if export.agents:
        runs = _runs_upsert(
            tenant=tenant, agents=export.agents, received_at=received_at, rejected=rejected
        )
    return OtlpIngestResult(
        spans=export.span_count,
        records_created=records.accepted if records else 0,
        records_duplicate=records.duplicates if records else 0,
        wrapper_spans=wrappers,
        runs_created=runs.created if runs else 0,
        runs_updated=runs.updated if runs else 0,
        runs_unchanged=runs.unchanged if runs else 0,
        rejected=rejected,
    )


def _stored_calls(*, tenant: Tenant, trace_ids: list[str], export) -> list[StoredCall]:
    """Lock the export's traces, then read their calls recorded by earlier exports. Two
    statements: a statement's snapshot is taken when it starts, so the read has to come
    after the lock to see what the previous holder committed."""
    keys = sorted({_trace_lock_key(tenant.pk, trace_id) for trace_id in trace_ids})
    with connection.cursor() as cursor:
        cursor.execute(TRACE_LOCK_SQL, [int(TRACE_LOCK_CLASS), keys])
        cursor.execute(
            STORED_CALLS_SQL,
            {
                "tenant_id": tenant.pk,
                "trace_ids": trace_ids,
                "span_ids": export.linked_span_ids(),
            },
        )
        return [
            StoredCall(trace_id, span_id, None if parent == NO_PARENT else parent)
            for trace_id, span_id, parent in cursor.fetchall()
        ]


def _trace_lock_key(tenant_id: int, trace_id: str) -> int:
    key = zlib.crc32(f"{tenant_id}:{trace_id}".encode())
    return key - 2**32 if key >= 2**31 else key


# complexity: retries the batch without the conflicting calls, mapping each conflict back to its
# span's location and reason
def _records_ingest(
    *, tenant: Tenant, calls: list[ModelCall], received_at: datetime, rejected: list
):
    """The calls as cost records; calls whose key was stored (or sent earlier in the
    request) with another payload are rejected and the rest written."""
    columns = [name for name, _ in COST_RECORD_COLUMNS]
    pending = list(calls)
    while True:
        records = [_record(call, columns) for call in pending]
        try:
            return cost_records_ingest(tenant=tenant, records=records, received_at=received_at)
        except IdempotencyKeyConflict as exc:
            # The service rolled its own savepoint back; drop the conflicting calls and
            # write the others. Each round removes at least one call.
            bad = {conflict.index for conflict in exc.conflicts}
            for index in sorted(bad):
                call = pending[index]
                first = next(c.first_index for c in exc.conflicts if c.index == index)
                reason = RECORDED_BEFORE if first is None else REPEATED_SPAN
                rejected.append(Rejection(call.location, reason))
            pending = [call for index, call in enumerate(pending) if index not in bad]
            if not pending:
                return None


def _record(call: ModelCall, columns: list[str]) -> dict:
    values = {
        "idempotency_key": call.idempotency_key,
        "user_id": call.user_id,
        "feature_tag": call.feature_tag,
        # The trace links the calls of one request, one agent run and its sub-agents
        # (calibration joins estimates on either column).
        "request_id": call.trace_id,
        "run_id": call.trace_id,
        "model": call.model,
        "provider": call.provider,
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cache_read_tokens": call.cache_read_tokens,
        "cache_write_tokens": call.cache_write_tokens,
        # No cost from the client: the ingest service prices model and tokens.
        "cost_cents": None,
        "is_retry": False,
        "created_at": call.ended_at,
    }
    return {name: values.get(name) for name in columns}


# complexity: drops a run's repeated spans, then retries without the finished runs, keeping each
# run's span location for its rejection
def _runs_upsert(
    *, tenant: Tenant, agents: list[AgentInvocation], received_at: datetime, rejected: list
):
    """The agent invocations as finished runs; a run stored with other attributes (a
    finished run cannot change) is rejected and the rest written."""
    items, locations = [], []
    first_of_run: dict[str, dict] = {}
    for agent in agents:
        item = _run(agent)
        first = first_of_run.setdefault(item["run_id"], item)
        if first is not item:
            if first != item:
                rejected.append(Rejection(agent.location, REPEATED_SPAN))
            continue
        items.append(item)
        locations.append(agent.location)
    while items:
        try:
            return run_records_upsert(tenant=tenant, runs=items, received_at=received_at)
        except TerminalRunChanged as exc:
            bad = set(exc.indexes)
            rejected.extend(Rejection(locations[index], RUN_FINISHED) for index in sorted(bad))
            items = [item for index, item in enumerate(items) if index not in bad]
            locations = [loc for index, loc in enumerate(locations) if index not in bad]
    return None


def _run(agent: AgentInvocation) -> dict:
    return {
        "run_id": agent.run_id,
        "worker_id": agent.worker_id,
        "status": RunStatus.FAILED if agent.failed else RunStatus.COMPLETED,
        "success": not agent.failed,
        "error": agent.error,
        "total_tokens": agent.total_tokens,
        "total_latency_ms": agent.latency_ms,
        # The trace stands for the run the agent invocations belong to; its cost records
        # carry it as run_id.
        "parent_run_id": agent.trace_id,
        "created_at": agent.started_at,
        "started_at": agent.started_at,
        "completed_at": agent.ended_at,
    }
