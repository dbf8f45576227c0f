"""Cost record ingest through the real HTTP API, against a raw COPY of the same rows.

    .venv/bin/python bench/ingest.py [--records N] [--quick] [--clients C] [--workers W]

1. Generates N realistic cost records (several tenants, models, features and users over the
   last 30 days; most carry an idempotency key) and serialises them into 1000-record bodies.
2. Starts gunicorn (config/gunicorn.conf.py, W workers) against the database of
   DATABASE_URL and posts every body to POST /api/v1/cost-records/ from C concurrent clients.
3. COPYs the same rows into a scratch table shaped like analytics_costrecord (same columns,
   indexes, constraints and tenant foreign key), one stream and one transaction per round.
   API and COPY alternate over R slices of the data (--rounds), so load changes on a shared
   machine hit both sides alike.
4. Prints both rates and the ratio API / COPY (target >= 0.25).

The bench creates its own tenants (`bench-ingest-*`) and removes them, their rows and the
scratch table at the end (unless --keep). The database must be migrated.
"""

import argparse
import json
import os
import random
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000, help="records to ingest")
    parser.add_argument("--quick", action="store_true", help="small run: 20 000 records")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--batch-size", type=int, default=1000, help="records per request")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating API/COPY rounds over slices"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the bench tenants and rows")
    args = parser.parse_args()
    if args.quick:
        args.records = min(args.records, 20_000)
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size must be within 1..1000")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


# --help answers before Django (and possibly an embedded database) starts.
ARGS = parse_args() if __name__ == "__main__" else None

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Production settings (DEBUG off) so the server does not record every query in memory.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
os.environ.setdefault("DJANGO_DEBUG", "0")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
import requests  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

from analytics.models import ApiKey, CostRecord, CostRecordKey, FeatureTag, Tenant  # noqa: E402
from analytics.services.tenants import api_key_create, tenant_create  # noqa: E402
from config.database import resolve_database_url  # noqa: E402

TARGET_RATIO = 0.25
TARGET = "/api/v1/cost-records/"
# (model, provider, input price, output price) in cents per 1000 tokens; weights skew usage.
MODELS = [
    ("gpt-4o", "openai", Decimal("0.25"), Decimal("1.0"), 30),
    ("gpt-4o-mini", "openai", Decimal("0.015"), Decimal("0.06"), 35),
    ("claude-3-5-sonnet", "anthropic", Decimal("0.3"), Decimal("1.5"), 15),
    ("claude-3-5-haiku", "anthropic", Decimal("0.08"), Decimal("0.4"), 10),
    ("gemini-1.5-pro", "google", Decimal("0.125"), Decimal("0.5"), 6),
    ("llama-3.1-70b", "together", Decimal("0.088"), Decimal("0.088"), 4),
]
ACTIVE_FEATURES = ["chat", "search", "summarize", "extract"]
# A few tags a client sends without registering them; ingest stores them as `unclassified`.
ALL_FEATURES = [*ACTIVE_FEATURES, "experimental", None]
FEATURE_WEIGHTS = [40, 20, 15, 10, 3, 12]
COLUMNS = (
    "tenant_id",
    "idempotency_key",
    "user_id",
    "feature_tag",
    "request_id",
    "workflow_id",
    "run_id",
    "skill_id",
    "model",
    "provider",
    "input_tokens",
    "output_tokens",
    "cost_cents",
    "is_retry",
    "created_at",
    "ingested_at",
)
SIX_PLACES = Decimal("0.000001")


def log(message: str) -> None:
    print(message, flush=True)


def check_migrated() -> None:
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        sys.exit("The database has unapplied migrations; run `manage.py migrate` first.")


def create_tenants(count: int) -> list[tuple[Tenant, str]]:
    run = secrets.token_hex(3)
    tenants = []
    for index in range(count):
        tenant = tenant_create(slug=f"bench-ingest-{run}-{index}")
        for tag in ACTIVE_FEATURES:
            FeatureTag.objects.create(tenant=tenant, tag=tag, display_name=tag.title())
        _, raw_key = api_key_create(tenant=tenant, name="bench")
        tenants.append((tenant, raw_key))
    return tenants


def generate(args, tenants, now: datetime) -> list[tuple[str, bytes, list[tuple]]]:
    """Batches of `batch_size` records: (API key, JSON body, the same rows as COPY tuples)."""
    rng = random.Random(args.seed)
    start = now - timedelta(days=30)
    span = int((now - start).total_seconds()) - 120
    per_tenant = [args.records // len(tenants)] * len(tenants)
    per_tenant[0] += args.records - sum(per_tenant)
    batches: list[tuple[str, bytes, list[tuple]]] = []
    serial = 0
    for (tenant, raw_key), count in zip(tenants, per_tenant, strict=True):
        users = [f"user-{n:04d}" for n in range(200)]
        batch: list[dict] = []
        rows: list[tuple] = []
        for _ in range(count):
            serial += 1
            model, provider, price_in, price_out, _ = rng.choices(
                MODELS, weights=[m[4] for m in MODELS]
            )[0]
            input_tokens = int(rng.lognormvariate(6.5, 1.0))
            output_tokens = int(rng.lognormvariate(5.0, 0.9))
            cost = (input_tokens * price_in + output_tokens * price_out) / 1000
            cost = cost.quantize(SIX_PLACES)
            created_at = start + timedelta(seconds=rng.randrange(span), microseconds=serial % 997)
            record = {
                "idempotency_key": f"bench-{serial}" if rng.random() < 0.85 else None,
                "user_id": rng.choice(users) if rng.random() < 0.9 else None,
                "feature_tag": rng.choices(ALL_FEATURES, weights=FEATURE_WEIGHTS)[0],
                "request_id": f"req-{serial}",
                "workflow_id": f"wf-{serial // 5}" if rng.random() < 0.3 else None,
                "model": model,
                "provider": provider,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost_cents": cost,
                "is_retry": rng.random() < 0.03,
                "created_at": created_at,
            }
            batch.append(record)
            stored_tag = record["feature_tag"]
            if stored_tag is not None and stored_tag not in ACTIVE_FEATURES:
                stored_tag = "unclassified"
            rows.append(
                (
                    tenant.pk,
                    record["idempotency_key"],
                    record["user_id"],
                    stored_tag,
                    record["request_id"],
                    record["workflow_id"],
                    None,
                    None,
                    model,
                    provider,
                    input_tokens,
                    output_tokens,
                    cost,
                    record["is_retry"],
                    created_at,
                    now,
                )
            )
            if len(batch) == args.batch_size:
                batches.append((raw_key, to_body(batch), rows))
                batch, rows = [], []
        if batch:
            batches.append((raw_key, to_body(batch), rows))
    return batches


def to_body(batch: list[dict]) -> bytes:
    records = []
    for record in batch:
        item = {key: value for key, value in record.items() if value is not None}
        # Six fractional digits at most, so the shortest float repr is the exact decimal.
        item["cost_cents"] = float(record["cost_cents"])
        item["created_at"] = record["created_at"].isoformat().replace("+00:00", "Z")
        records.append(item)
    return json.dumps({"records": records}, separators=(",", ":")).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(workers: int, database_url: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_TIMEOUT": "120",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # The child keeps its own copy of the log file descriptor.
    with log_path.open("w") as log_file:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c", "config/gunicorn.conf.py"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}; see {log_path}")
        try:
            if requests.get(f"{base}/api/health/", timeout=5).status_code == 200:
                return server, base
        except requests.RequestException:
            pass  # still booting
        time.sleep(0.2)
    stop(server)
    raise RuntimeError(f"gunicorn did not answer within 60 s; see {log_path}")


def stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def warm_up(base: str, batches, clients: int) -> None:
    """Open each worker's database connection and load its code outside the timed window."""
    for raw_key, _, _ in batches[: clients * 2]:
        requests.get(
            base + "/api/v1/feature-tags/", headers={"Authorization": f"Api-Key {raw_key}"}
        )


def post_round(base: str, batches, clients: int, latencies: list[float]) -> tuple[float, int]:
    """Post the batches from `clients` threads; return (seconds, accepted records)."""
    local = threading.local()
    lock = threading.Lock()
    accepted = 0

    def send(batch) -> None:
        nonlocal accepted
        raw_key, body, _ = batch
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        started = time.perf_counter()
        response = session.post(
            base + TARGET,
            data=body,
            headers={"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"},
            timeout=120,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 201:
            raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")
        with lock:
            latencies.append(elapsed)
            accepted += response.json()["accepted"]

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(send, batches))
    return time.perf_counter() - started, accepted


class ScratchTable:
    """A table shaped like analytics_costrecord (columns, indexes, constraints, tenant FK)."""

    def __init__(self, database_url: str):
        self.name = f"bench_ingest_copy_{secrets.token_hex(4)}"
        self.conn = psycopg.connect(database_url, autocommit=True)
        self.conn.execute(f"CREATE TABLE {self.name} (LIKE analytics_costrecord INCLUDING ALL)")
        # LIKE does not copy foreign keys; the real table checks its tenant, so does this one.
        self.conn.execute(
            f"ALTER TABLE {self.name} ADD FOREIGN KEY (tenant_id) "
            "REFERENCES analytics_tenant (id) DEFERRABLE INITIALLY DEFERRED"
        )
        self.copy_sql = f"COPY {self.name} ({', '.join(COLUMNS)}) FROM STDIN"

    def copy(self, batches) -> tuple[float, int]:
        """COPY the batches' rows in one stream and one transaction; return (seconds, rows)."""
        count = 0
        started = time.perf_counter()
        with (
            self.conn.transaction(),
            self.conn.cursor() as cursor,
            cursor.copy(self.copy_sql) as copy,
        ):
            for _, _, rows in batches:
                for row in rows:
                    copy.write_row(row)
                count += len(rows)
        return time.perf_counter() - started, count

    def drop(self) -> None:
        self.conn.execute(f"DROP TABLE IF EXISTS {self.name}")
        self.conn.close()


def cleanup(tenants) -> None:
    ids = [tenant.pk for tenant, _ in tenants]
    # Cost records have no delete path in the application; the bench removes its own rows.
    deleted, _ = CostRecord.objects.filter(tenant_id__in=ids).delete()
    CostRecordKey.objects.filter(tenant_id__in=ids).delete()
    FeatureTag.objects.filter(tenant_id__in=ids).delete()
    ApiKey.objects.filter(tenant_id__in=ids).delete()
    Tenant.objects.filter(pk__in=ids).delete()
    log(f"cleanup: removed {len(ids)} bench tenants and {deleted} rows")


def main() -> None:
    args = ARGS
    check_migrated()
    database_url = resolve_database_url()
    now = datetime.now(UTC).replace(microsecond=0)

    log(
        f"ingest bench: {args.records} records, {args.tenants} tenants, batches of "
        f"{args.batch_size}, {args.clients} clients, {args.workers} gunicorn workers"
    )
    tenants = create_tenants(args.tenants)
    server = scratch = None
    try:
        started = time.perf_counter()
        batches = generate(args, tenants, now)
        log(
            f"generated {args.records} records in {len(batches)} bodies "
            f"({sum(len(body) for _, body, _ in batches) / 1e6:.1f} MB) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        handle, log_path = tempfile.mkstemp(prefix="bench-gunicorn-", suffix=".log")
        os.close(handle)
        server, base = start_gunicorn(args.workers, database_url, Path(log_path))
        log(f"gunicorn up at {base} (log: {log_path})")
        warm_up(base, batches, args.clients)
        scratch = ScratchTable(database_url)

        # Rounds alternate API and COPY over the same slice of data, so a load change on a
        # shared machine affects both sides instead of skewing the ratio.
        api_seconds = copy_seconds = 0.0
        api_records = copy_records = 0
        latencies: list[float] = []
        for number in range(args.rounds):
            chunk = batches[number :: args.rounds]
            if not chunk:
                continue
            api_s, accepted = post_round(base, chunk, args.clients, latencies)
            copy_s, copied = scratch.copy(chunk)
            api_seconds, api_records = api_seconds + api_s, api_records + accepted
            copy_seconds, copy_records = copy_seconds + copy_s, copy_records + copied
            log(
                f"  round {number + 1}/{args.rounds}: {copied} records, "
                f"API {accepted / api_s:,.0f}/s, COPY {copied / copy_s:,.0f}/s, "
                f"ratio {(accepted / api_s) / (copied / copy_s):.3f}"
            )
        if api_records != args.records or copy_records != args.records:
            raise RuntimeError(
                f"API accepted {api_records}, COPY wrote {copy_records} of {args.records}"
            )

        api_rate = api_records / api_seconds
        copy_rate = copy_records / copy_seconds
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
        log(
            f"API ingest: {api_records} records in {api_seconds:.2f} s = "
            f"{api_rate:,.0f} records/s (batch latency p50 "
            f"{p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms)"
        )
        log(
            f"raw COPY:   {copy_records} records in {copy_seconds:.2f} s = "
            f"{copy_rate:,.0f} records/s"
        )
        ratio = api_rate / copy_rate
        verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
        log(f"RATIO api/copy = {ratio:.3f} ({verdict} target {TARGET_RATIO})")
    finally:
        if server is not None:
            stop(server)
        if scratch is not None:
            scratch.drop()
        if args.keep:
            log("kept bench tenants: " + ", ".join(tenant.slug for tenant, _ in tenants))
        else:
            cleanup(tenants)


if __name__ == "__main__":
    main()
