"""OTLP trace ingest (POST /v1/traces) against the batch JSON API carrying the same calls.

    .venv/bin/python bench/otlp.py [--traces N] [--quick] [--clients C] [--workers W]

1. Generates N agent traces shaped like an instrumented agent's: an `invoke_agent` span, four
   model calls (one wrapped by a framework `chat` span reporting the same usage), and a tool
   span that is not GenAI: 7 spans, 4 priced calls and 1 run per trace. Spans are grouped
   into protobuf ExportTraceServiceRequests of 512 spans (the SDK's default export batch).
2. Builds, for each of those requests, a batch JSON body (POST /api/v1/cost-records/) with
   the same calls as tokens-only records (priced by the service the same way), so both sides
   send the same calls in the same number of requests.
3. Starts gunicorn (config/gunicorn.conf.py, W workers) against the database of
   DATABASE_URL and posts both from C concurrent clients; OTLP and batch rounds alternate
   over R slices (--rounds), so load changes on a shared machine hit both sides alike.
4. Prints spans/s and records/s of OTLP, records/s of the batch API and the ratio of the
   two record rates (goal: at least 2,000 spans/s).

The bench creates its own tenants (`bench-otlp-*`) and removes them and their rows at the
end (unless --keep). The database must be migrated.
"""

import argparse
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=20_000, help="agent traces to send")
    parser.add_argument("--quick", action="store_true", help="small run: 3 000 traces")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--spans-per-request", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds over slices")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the bench tenants and rows")
    args = parser.parse_args()
    if args.quick:
        args.traces = min(args.traces, 3_000)
    if args.spans_per_request < 7:
        parser.error("--spans-per-request must hold one trace (7 spans)")
    return args


# --help answers before Django (and possibly an embedded database) starts.
ARGS = parse_args() if __name__ == "__main__" else None

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Production settings (DEBUG off) so the server does not record every query in memory.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
os.environ.setdefault("DJANGO_DEBUG", "0")

import django  # noqa: E402

django.setup()

import requests  # noqa: E402
from ingest import check_migrated, log, start_gunicorn, stop  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span  # noqa: E402

from analytics.models import ApiKey, CostRecord, CostRecordKey, RunRecord, Tenant  # noqa: E402
from analytics.services.tenants import api_key_create, tenant_create  # noqa: E402
from config.database import resolve_database_url  # noqa: E402

GOAL_SPANS_PER_SECOND = 2_000
OTLP_TARGET = "/v1/traces"
BATCH_TARGET = "/api/v1/cost-records/"
MODELS = [
    ("gpt-4o", "openai", 30),
    ("gpt-4o-mini", "openai", 35),
    ("claude-3-5-sonnet-latest", "anthropic", 15),
    ("claude-3-5-haiku-latest", "anthropic", 10),
    ("gemini-1.5-pro", "google", 10),
]
SPANS_PER_TRACE = 7
CALLS_PER_TRACE = 4


def kv(key: str, value) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def nanos(moment: datetime) -> int:
    return int(moment.timestamp() * 1e6) * 1000


def generate(args, tenants, now: datetime) -> list[tuple[str, bytes, bytes, int, int]]:
    """(API key, OTLP protobuf body, batch JSON body, spans, calls) per request."""
    rng = random.Random(args.seed)
    traces_per_request = args.spans_per_request // SPANS_PER_TRACE
    per_tenant = [args.traces // len(tenants)] * len(tenants)
    per_tenant[0] += args.traces - sum(per_tenant)
    requests_out = []
    serial = 0
    for (_, raw_key), count in zip(tenants, per_tenant, strict=True):
        while count > 0:
            n = min(count, traces_per_request)
            count -= n
            message = ExportTraceServiceRequest()
            resource_spans = message.resource_spans.add()
            resource_spans.resource.attributes.extend(
                [kv("service.name", "bench-agent"), kv("costwise.feature_tag", "chat")]
            )
            spans = resource_spans.scope_spans.add().spans
            records = []
            for _ in range(n):
                serial += 1
                trace_id = rng.randbytes(16)
                started = now - timedelta(seconds=rng.randrange(3600, 29 * 86400))
                agent_id = rng.randbytes(8)
                user = f"user-{rng.randrange(200):03d}"
                spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=agent_id,
                        name="invoke_agent planner",
                        start_time_unix_nano=nanos(started),
                        end_time_unix_nano=nanos(started + timedelta(seconds=30)),
                        attributes=[
                            kv("gen_ai.operation.name", "invoke_agent"),
                            kv("gen_ai.agent.name", "planner"),
                        ],
                    )
                )
                spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=rng.randbytes(8),
                        parent_span_id=agent_id,
                        name="tool search",
                        start_time_unix_nano=nanos(started),
                        end_time_unix_nano=nanos(started + timedelta(seconds=1)),
                        attributes=[kv("gen_ai.operation.name", "execute_tool")],
                    )
                )
                for call in range(CALLS_PER_TRACE):
                    model, provider, _ = rng.choices(MODELS, weights=[m[2] for m in MODELS])[0]
                    input_tokens = int(rng.lognormvariate(6.5, 1.0))
                    output_tokens = int(rng.lognormvariate(5.0, 0.9))
                    ended = started + timedelta(seconds=2 + call * 5)
                    attributes = [
                        kv("gen_ai.operation.name", "chat"),
                        kv("gen_ai.provider.name", provider),
                        kv("gen_ai.request.model", model),
                        kv("gen_ai.usage.input_tokens", input_tokens),
                        kv("gen_ai.usage.output_tokens", output_tokens),
                        kv("user.id", user),
                    ]
                    parent = agent_id
                    if call == 0:
                        # A framework span around the provider call, with the same usage.
                        parent = rng.randbytes(8)
                        spans.append(
                            Span(
                                trace_id=trace_id,
                                span_id=parent,
                                parent_span_id=agent_id,
                                name=f"chat {model}",
                                start_time_unix_nano=nanos(ended - timedelta(seconds=2)),
                                end_time_unix_nano=nanos(ended),
                                attributes=attributes,
                            )
                        )
                    spans.append(
                        Span(
                            trace_id=trace_id,
                            span_id=rng.randbytes(8),
                            parent_span_id=parent,
                            name=f"chat {model}",
                            start_time_unix_nano=nanos(ended - timedelta(seconds=1)),
                            end_time_unix_nano=nanos(ended),
                            attributes=attributes,
                        )
                    )
                    records.append(
                        {
                            "idempotency_key": f"bench-otlp-{serial}-{call}",
                            "user_id": user,
                            "feature_tag": "chat",
                            "request_id": trace_id.hex(),
                            "run_id": trace_id.hex(),
                            "model": model,
                            "provider": provider,
                            "input_tokens": input_tokens,
                            "output_tokens": output_tokens,
                            "created_at": ended.isoformat().replace("+00:00", "Z"),
                        }
                    )
            batch = json.dumps({"records": records}, separators=(",", ":")).encode()
            requests_out.append(
                (raw_key, message.SerializeToString(), batch, len(spans), len(records))
            )
    return requests_out


def create_tenants(count: int) -> list[tuple[Tenant, str]]:
    run = secrets.token_hex(3)
    tenants = []
    for index in range(count):
        tenant = tenant_create(slug=f"bench-otlp-{run}-{index}")
        _, raw_key = api_key_create(tenant=tenant, name="bench")
        tenants.append((tenant, raw_key))
    return tenants


def post_round(base: str, items, clients: int, kind: str) -> tuple[float, int]:
    """Post one side of the items from `clients` threads; return (seconds, records)."""
    local = threading.local()
    lock = threading.Lock()
    recorded = 0

    def send(item) -> None:
        nonlocal recorded
        raw_key, otlp_body, batch_body, _, calls = item
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        headers = {"Authorization": f"Api-Key {raw_key}"}
        if kind == "otlp":
            headers["Content-Type"] = "application/x-protobuf"
            response = session.post(
                base + OTLP_TARGET, data=otlp_body, headers=headers, timeout=120
            )
            ok = response.status_code == 200 and response.content == b""
        else:
            headers["Content-Type"] = "application/json"
            response = session.post(
                base + BATCH_TARGET, data=batch_body, headers=headers, timeout=120
            )
            ok = response.status_code == 201 and response.json()["accepted"] == calls
        if not ok:
            raise RuntimeError(f"{kind} answered {response.status_code}: {response.content[:300]}")
        with lock:
            recorded += calls

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, items))
    return time.perf_counter() - started, recorded


def cleanup(tenants) -> None:
    ids = [tenant.pk for tenant, _ in tenants]
    # Records have no delete path in the application; the bench removes its own rows.
    deleted, _ = CostRecord.objects.filter(tenant_id__in=ids).delete()
    CostRecordKey.objects.filter(tenant_id__in=ids).delete()
    runs, _ = RunRecord.objects.filter(tenant_id__in=ids).delete()
    ApiKey.objects.filter(tenant_id__in=ids).delete()
    Tenant.objects.filter(pk__in=ids).delete()
    log(f"cleanup: removed {len(ids)} bench tenants, {deleted} cost records and {runs} runs")


def main() -> None:
    args = ARGS
    check_migrated()
    database_url = resolve_database_url()
    now = datetime.now(UTC)
    log(
        f"otlp bench: {args.traces} traces ({args.traces * SPANS_PER_TRACE} spans), "
        f"{args.tenants} tenants, {args.spans_per_request} spans per request, "
        f"{args.clients} clients, {args.workers} gunicorn workers"
    )
    tenants = create_tenants(args.tenants)
    server = None
    try:
        items = generate(args, tenants, now)
        log(
            f"generated {len(items)} requests: OTLP "
            f"{sum(len(i[1]) for i in items) / 1e6:.1f} MB, batch JSON "
            f"{sum(len(i[2]) for i in items) / 1e6:.1f} MB"
        )
        handle, log_path = tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")
        os.close(handle)
        server, base = start_gunicorn(args.workers, database_url, Path(log_path))
        log(f"gunicorn up at {base} (log: {log_path})")
        # Load each worker's code and connection outside the timed window.
        for raw_key, *_ in items[: args.clients * 2]:
            requests.post(
                base + OTLP_TARGET,
                data=b"",
                headers={
                    "Authorization": f"Api-Key {raw_key}",
                    "Content-Type": "application/x-protobuf",
                },
                timeout=60,
            )

        totals = {"otlp": [0.0, 0], "batch": [0.0, 0]}
        spans_sent = 0
        for number in range(args.rounds):
            chunk = items[number :: args.rounds]
            if not chunk:
                continue
            order = ("otlp", "batch") if number % 2 == 0 else ("batch", "otlp")
            rates = {}
            for kind in order:
                seconds, recorded = post_round(base, chunk, args.clients, kind)
                totals[kind][0] += seconds
                totals[kind][1] += recorded
                rates[kind] = recorded / seconds
            chunk_spans = sum(i[3] for i in chunk)
            spans_sent += chunk_spans
            log(
                f"  round {number + 1}/{args.rounds}: {chunk_spans} spans, OTLP "
                f"{rates['otlp']:,.0f} records/s, batch {rates['batch']:,.0f} records/s, "
                f"ratio {rates['otlp'] / rates['batch']:.3f}"
            )
        otlp_seconds, otlp_records = totals["otlp"]
        batch_seconds, batch_records = totals["batch"]
        spans_rate = spans_sent / otlp_seconds
        log(
            f"OTLP:  {spans_sent} spans ({otlp_records} priced calls) in {otlp_seconds:.2f} s "
            f"= {spans_rate:,.0f} spans/s, {otlp_records / otlp_seconds:,.0f} records/s"
        )
        log(
            f"batch: {batch_records} records in {batch_seconds:.2f} s = "
            f"{batch_records / batch_seconds:,.0f} records/s"
        )
        ratio = (otlp_records / otlp_seconds) / (batch_records / batch_seconds)
        verdict = "meets" if spans_rate >= GOAL_SPANS_PER_SECOND else "BELOW"
        log(
            f"RATIO otlp/batch records/s = {ratio:.3f}; {spans_rate:,.0f} spans/s "
            f"({verdict} goal {GOAL_SPANS_PER_SECOND:,})"
        )
        stored = CostRecord.objects.filter(tenant_id__in=[t.pk for t, _ in tenants]).count()
        expected = 2 * args.traces * CALLS_PER_TRACE
        if stored != expected:
            raise RuntimeError(f"{stored} cost records stored, expected {expected}")
    finally:
        if server is not None:
            stop(server)
        if not args.keep:
            cleanup(tenants)


if __name__ == "__main__":
    main()
