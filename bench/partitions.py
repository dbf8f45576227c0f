"""Partitioned cost records at scale: statistics, ingest, dropping a month, retention under load.

    .venv/bin/python bench/partitions.py [--records N] [--quick] [--repeat R] [--keep]

Runs in a database of its own, `<DATABASE_URL's name>_bench_partitions`, created, migrated
and dropped at the end (unless --keep). DATABASE_URL must be set (a server, not the embedded
one: the bench needs room).

1. Loads N records (default 20 000 000) over the 13 UTC months ending now for 20 tenants
   with a Zipf-like skew (the largest has about 31 % of the rows), 6 in 7 with an
   idempotency key, written with their key rows; INSERT ... SELECT generate_series through
   the partitioned parent, in chunks with progress. Then copies the records into
   `bench_flat.analytics_costrecord`, an unpartitioned table shaped as before partitioning
   (primary key id, the partial unique index on (tenant_id, idempotency_key), the same
   other indexes, the same triggers): the reference of the same run.
2. 90-day cost statistics of the largest tenant through GET /api/v1/analytics/cost/ (in
   process, day resolution, rolling window; the daily snapshots of the 90 days computed
   first, as the daily job would have) on the partitioned table and, with the search path
   pointing at the flat copy, on the unpartitioned one; also the service with every
   snapshot stale (all raw records). Target: p95 < 300 ms.
3. Ingest: batches of 1000 records (recent created_at, 85 % keyed) through the ingest
   service, alternating rounds between the partitioned table (keys in their own table) and
   the flat copy with the single-table statement ingest used before partitioning (INSERT
   ... ON CONFLICT on the partial unique index), so load changes on a shared machine hit
   both alike. Ratio partitioned / flat, target >= 0.9. bench/ingest.py measures the HTTP
   path on top; without it the database share of each batch, and so any slowdown, is
   larger here.
4. Retention while ingest runs: one tenant set to 60 days of retention loses everything
   older in batches of COSTWISE_RETENTION_BATCH_SIZE (`retention_run(tenant=...)`) in a
   second thread, while the main thread keeps ingesting; ingest batch latency p50/p99
   before and during.
5. Dropping the oldest month as retention does: DETACH (`partition_detach`), its key rows
   deleted in batches, DROP (`detached_drop`). Target: DETACH + DROP < 1 s (the key rows'
   batches are timed apart: they hold no lock on the table).
"""

import argparse
import os
import re
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import psycopg


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=20_000_000, help="records over 13 months")
    parser.add_argument("--quick", action="store_true", help="small run: 500 000 records")
    parser.add_argument("--repeat", type=int, default=30, help="timed statistics requests")
    parser.add_argument("--rounds", type=int, default=6, help="alternating ingest rounds")
    parser.add_argument("--batches", type=int, default=20, help="ingest batches per round")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    args = parser.parse_args()
    if args.quick:
        args.records = min(args.records, 500_000)
        args.repeat = min(args.repeat, 10)
        args.rounds = min(args.rounds, 4)
        args.batches = min(args.batches, 10)
    if args.records < 100_000 or args.repeat < 1 or args.rounds < 1 or args.batches < 1:
        parser.error("--records must be at least 100000; --repeat, --rounds, --batches >= 1")
    return args


def bench_database_url() -> tuple[str, str, str]:
    """(bench URL, maintenance URL, bench database name) from DATABASE_URL."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        sys.exit("Set DATABASE_URL to a PostgreSQL server; the bench creates its own database.")
    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'costwise'}_bench_partitions"
    return (
        urlunsplit(parts._replace(path=f"/{name}")),
        urlunsplit(parts._replace(path="/postgres")),
        name,
    )


# --help answers before Django starts.
ARGS = parse_args() if __name__ == "__main__" else None
BENCH_URL, MAINTENANCE_URL, BENCH_DB = bench_database_url() if ARGS else ("", "", "")
if ARGS:
    with psycopg.connect(MAINTENANCE_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DB}"')
    os.environ["DATABASE_URL"] = BENCH_URL

# Sets Django up against DATABASE_URL, now the bench database (bench/_snapshot_data.py).
from _snapshot_data import log, percentile, timed  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test import Client  # noqa: E402

from analytics.models import FeatureTag, Tenant  # noqa: E402
from analytics.selectors.statistics import StatisticsWindow  # noqa: E402
from analytics.services import ingest as ingest_service  # noqa: E402
from analytics.services.ingest import cost_records_ingest  # noqa: E402
from analytics.services.partitions import (  # noqa: E402
    detached_drop,
    month_add,
    month_of,
    partition_create,
    partition_detach,
    partitions_list,
)
from analytics.services.retention import detached_keys_delete, retention_run  # noqa: E402
from analytics.services.snapshots import snapshot_compute  # noqa: E402
from analytics.services.statistics import cost_statistics  # noqa: E402
from analytics.services.tenants import api_key_create, tenant_create  # noqa: E402

STATS_TARGET_MS = 300
INGEST_TARGET_RATIO = 0.9
DROP_TARGET_S = 1.0
TENANTS = 20
MONTHS = 13
SHORT_TENANT = 3  # the fourth largest gets 60 days of retention in step 4
MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-5-haiku", "gemini-1.5-pro"]
FEATURES = ["chat", "search", "summarize", "extract", "unclassified"]
CHUNK = 1_000_000

# Record i of a tenant lands at start + i * step: evenly spread, in time order. Every 7th has
# no key; users, features and models are spread by multiplicative hashing. The key rows are
# written in the same statement, as ingest writes them.
_LOAD = """
WITH r AS (
    INSERT INTO analytics_costrecord
        (tenant_id, idempotency_key, user_id, feature_tag, request_id, model, provider,
         input_tokens, output_tokens, cost_cents, is_retry, created_at, ingested_at)
    SELECT %(tenant)s,
           CASE WHEN i %% 7 <> 0 THEN 'load-' || i END,
           'user-' || ((i * 2654435761) %% 500),
           (%(features)s::text[])[1 + (i * 40503) %% 5],
           'req-' || i,
           (%(models)s::text[])[1 + (i * 69069) %% 5],
           'bench',
           (i * 31) %% 4000,
           (i * 17) %% 800,
           ((i * 7919) %% 250000) / 10000.0,
           i %% 23 = 0,
           t.at,
           t.at
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i,
         LATERAL (SELECT %(start)s::timestamptz + make_interval(secs => i * %(step)s)) AS t(at)
    RETURNING id, tenant_id, idempotency_key, created_at
)
INSERT INTO analytics_costrecordkey (tenant_id, idempotency_key, record_id, created_at)
SELECT tenant_id, idempotency_key, id, created_at FROM r WHERE idempotency_key IS NOT NULL
"""

# The single-table ingest statement used before partitioning, rebuilt from today's: the key
# table's CTE goes, records are inserted in key order with ON CONFLICT on the partial unique
# index of the flat copy.
_KEYED_AND_INSERTED = re.compile(r"keyed AS \(.*?\n\),\ninserted AS \(.*?\n\),\n", re.S)
FLAT_INGEST_SQL = _KEYED_AND_INSERTED.sub(
    lambda _: (
        f"""inserted AS (
    INSERT INTO analytics_costrecord (tenant_id, {ingest_service._BATCH_NAMES}, cost_source,
                                      price_catalog_version, sent_feature_tag, ingested_at)
    SELECT %(tenant_id)s, {ingest_service._INSERT_VALUES}, b.cost_source,
           CASE WHEN b.cost_cents IS NULL THEN %(catalog_version)s END,
           CASE WHEN b.unclassified_reason IS NOT NULL OR b.feature_tag = %(unclassified)s
                THEN b.feature_tag END,
           %(received_at)s
    FROM batch b
    ORDER BY b.idempotency_key COLLATE "C"
    ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING idempotency_key, created_at, cost_source, model
),
"""
    ),
    ingest_service.INGEST_SQL,
)
if FLAT_INGEST_SQL == ingest_service.INGEST_SQL:
    sys.exit("INGEST_SQL changed shape; update FLAT_INGEST_SQL in bench/partitions.py.")

FLAT_INDEXES = (
    "CREATE UNIQUE INDEX ON bench_flat.analytics_costrecord (tenant_id, idempotency_key)"
    " WHERE idempotency_key IS NOT NULL",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, created_at)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, feature_tag, created_at)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, user_id, created_at)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, model, created_at)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, run_id)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, workflow_id)",
    "CREATE INDEX ON bench_flat.analytics_costrecord (tenant_id, request_id)",
)


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def execute(sql: str, params=None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def flat(enabled: bool) -> None:
    """Point unqualified table names at the unpartitioned copy (or back)."""
    execute("SET search_path = bench_flat, public" if enabled else "SET search_path = public")


# --- 1. data ---------------------------------------------------------------------------------


def tenant_shares(total: int) -> list[int]:
    weights = [1 / (rank + 1) ** 1.1 for rank in range(TENANTS)]
    counts = [int(total * weight / sum(weights)) for weight in weights]
    counts[0] += total - sum(counts)
    return counts


def load(records: int, now: datetime) -> tuple[list[Tenant], datetime]:
    first_month = month_add(month_of(now), -(MONTHS - 1))
    start = datetime(first_month.year, first_month.month, 1, tzinfo=UTC)
    for n in range(MONTHS):
        partition_create(month=month_add(first_month, n))
    tenants = []
    for rank in range(TENANTS):
        tenant = tenant_create(slug=f"bench-parts-{rank:02d}")
        for tag in FEATURES[:4]:
            FeatureTag.objects.create(tenant=tenant, tag=tag, display_name=tag.title())
        tenants.append(tenant)
    span = (now - start).total_seconds() - 60
    done = 0
    began = time.perf_counter()
    for tenant, count in zip(tenants, tenant_shares(records), strict=True):
        for first in range(0, count, CHUNK):
            last = min(first + CHUNK, count) - 1
            execute(
                _LOAD,
                {
                    "tenant": tenant.pk,
                    "features": FEATURES,
                    "models": MODELS,
                    "start": start,
                    "step": span / count,
                    "first": first,
                    "last": last,
                },
            )
            done += last - first + 1
            elapsed = time.perf_counter() - began
            log(
                f"  loaded {done:,} / {records:,} records ({done / elapsed:,.0f}/s, "
                f"load {load_average()})"
            )
    execute("VACUUM ANALYZE analytics_costrecord")
    execute("VACUUM ANALYZE analytics_costrecordkey")
    return tenants, start


def flat_copy() -> float:
    began = time.perf_counter()
    execute("CREATE SCHEMA bench_flat")
    execute(
        "CREATE TABLE bench_flat.analytics_costrecord (LIKE public.analytics_costrecord"
        " INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING CONSTRAINTS)"
    )
    execute("INSERT INTO bench_flat.analytics_costrecord SELECT * FROM public.analytics_costrecord")
    execute(
        "SELECT setval(pg_get_serial_sequence('bench_flat.analytics_costrecord', 'id'),"
        " (SELECT max(id) FROM bench_flat.analytics_costrecord))"
    )
    execute("ALTER TABLE bench_flat.analytics_costrecord ADD PRIMARY KEY (id)")
    for statement in FLAT_INDEXES:
        execute(statement)
    execute(
        "ALTER TABLE bench_flat.analytics_costrecord ADD FOREIGN KEY (tenant_id)"
        " REFERENCES public.analytics_tenant (id) DEFERRABLE INITIALLY DEFERRED"
    )
    # The same triggers as the real table (rollups), so both sides pay for them.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE tgrelid = 'public.analytics_costrecord'::regclass AND NOT tgisinternal"
        )
        triggers = [definition for (definition,) in cursor.fetchall()]
    for definition in triggers:
        execute(
            definition.replace(
                " ON public.analytics_costrecord ", " ON bench_flat.analytics_costrecord "
            )
        )
    execute("VACUUM ANALYZE bench_flat.analytics_costrecord")
    return time.perf_counter() - began


def sizes() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid)))"
            " FROM pg_inherits WHERE inhparent = 'analytics_costrecord'::regclass"
        )
        partitioned = cursor.fetchone()[0]
        cursor.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('analytics_costrecordkey')),"
            " pg_size_pretty(pg_total_relation_size('bench_flat.analytics_costrecord'))"
        )
        keys, flat_size = cursor.fetchone()
    return f"partitioned {partitioned} + keys {keys}; flat copy {flat_size}"


# --- 2. statistics ---------------------------------------------------------------------------


def summary(name: str, samples: list[float]) -> str:
    return (
        f"  {name:<46} p50 {statistics.median(samples):8.1f} ms   "
        f"p95 {percentile(samples, 95):8.1f} ms"
    )


def statistics_bench(tenant: Tenant, now: datetime, repeat: int) -> dict[str, list[float]]:
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    first_day = today - timedelta(days=90)
    for day in range(90):
        snapshot_compute(
            tenant=tenant, snapshot_type="daily", period_start=first_day + timedelta(days=day)
        )
    execute("VACUUM ANALYZE analytics_costsnapshot")
    execute("VACUUM ANALYZE analytics_snapshotaggregate")
    rolling = StatisticsWindow(first_day + timedelta(hours=10), today + timedelta(hours=10), "day")
    _, raw_key = api_key_create(tenant=tenant, name="bench")
    client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}", SERVER_NAME="localhost")
    query = {
        "from": rolling.start.isoformat().replace("+00:00", "Z"),
        "to": rolling.end.isoformat().replace("+00:00", "Z"),
    }

    def endpoint():
        response = client.get("/api/v1/analytics/cost/", query)
        assert response.status_code == 200, response.content

    def all_raw():
        cost_statistics(tenant=tenant, window=rolling, now=now)

    results = {}
    for label, use_flat in (("partitioned", False), ("flat (reference)", True)):
        flat(use_flat)
        endpoint()  # warm-up
        results[f"GET /analytics/cost/ 90 days, {label}"] = timed(endpoint, repeat)
    flat(False)
    execute("UPDATE analytics_costsnapshot SET is_stale = true WHERE tenant_id = %s", [tenant.pk])
    for label, use_flat in (("partitioned", False), ("flat (reference)", True)):
        flat(use_flat)
        all_raw()
        results[f"service, all raw records, {label}"] = timed(all_raw, max(3, repeat // 3))
    flat(False)
    execute("UPDATE analytics_costsnapshot SET is_stale = false WHERE tenant_id = %s", [tenant.pk])
    return results


# --- 3. and 4. ingest ------------------------------------------------------------------------


class Batches:
    """Endless 1000-record batches with fresh keys and recent created_at."""

    def __init__(self, tenants: list[Tenant], now: datetime):
        self.tenants = tenants
        self.now = now
        self.serial = 0

    def next(self) -> tuple[Tenant, list[dict]]:
        self.serial += 1
        tenant = self.tenants[self.serial % len(self.tenants)]
        records = []
        for n in range(1000):
            i = self.serial * 1000 + n
            records.append(
                {
                    "idempotency_key": f"new-{self.serial}-{n}" if n % 7 else None,
                    "user_id": f"user-{(i * 2654435761) % 500}",
                    "feature_tag": FEATURES[(i * 40503) % 5],
                    "request_id": f"new-req-{i}",
                    "workflow_id": None,
                    "run_id": None,
                    "skill_id": None,
                    "model": MODELS[(i * 69069) % 5],
                    "provider": "bench",
                    "input_tokens": (i * 31) % 4000,
                    "output_tokens": (i * 17) % 800,
                    "cost_cents": Decimal((i * 7919) % 250000) / 10000,
                    "is_retry": False,
                    "created_at": self.now - timedelta(seconds=(i * 7) % (30 * 86400)),
                }
            )
        return tenant, records


def ingest_one(batches: Batches, *, use_flat: bool) -> float:
    """Ingest one batch; return its seconds."""
    tenant, records = batches.next()
    if use_flat:
        flat(True)
        ingest_service.INGEST_SQL, saved = FLAT_INGEST_SQL, ingest_service.INGEST_SQL
    began = time.perf_counter()
    try:
        result = cost_records_ingest(tenant=tenant, records=records, received_at=batches.now)
    finally:
        if use_flat:
            ingest_service.INGEST_SQL = saved
            flat(False)
    assert result.accepted == len(records), result
    return time.perf_counter() - began


def ingest_bench(batches: Batches, rounds: int, per_round: int) -> tuple[float, float]:
    """Records/s on the partitioned table and on the flat copy, alternating rounds."""
    seconds = {False: 0.0, True: 0.0}
    for use_flat in (False, True):
        ingest_one(batches, use_flat=use_flat)  # warm-up
    for number in range(rounds):
        round_rates = {}
        for use_flat in (False, True) if number % 2 == 0 else (True, False):
            spent = sum(ingest_one(batches, use_flat=use_flat) for _ in range(per_round))
            seconds[use_flat] += spent
            round_rates[use_flat] = per_round * 1000 / spent
        log(
            f"  round {number + 1}/{rounds}: partitioned {round_rates[False]:,.0f}/s, "
            f"flat {round_rates[True]:,.0f}/s, ratio {round_rates[False] / round_rates[True]:.3f}"
            f" (load {load_average()})"
        )
    total = rounds * per_round * 1000
    return total / seconds[False], total / seconds[True]


def retention_under_ingest(
    batches: Batches, short: Tenant, now: datetime, before_batches: int
) -> dict:
    before = [ingest_one(batches, use_flat=False) for _ in range(before_batches)]
    short.retention_days = 60
    short.save(update_fields=["retention_days"])
    outcome = {}

    def run_retention():
        try:
            began = time.perf_counter()
            report = retention_run(now=now, tenant=short)
            outcome["seconds"] = time.perf_counter() - began
            outcome["report"] = report
        finally:
            connections.close_all()

    thread = threading.Thread(target=run_retention)
    thread.start()
    during = []
    while thread.is_alive():
        during.append(ingest_one(batches, use_flat=False))
    thread.join()
    outcome.update(before=before, during=during)
    return outcome


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    args = ARGS
    try:
        call_command("migrate", interactive=False, verbosity=0)
        now = datetime.now(UTC).replace(microsecond=0)
        log(
            f"partitions bench: {args.records:,} records, {TENANTS} tenants, {MONTHS} months, "
            f"database {BENCH_DB} (load {load_average()})"
        )
        began = time.perf_counter()
        tenants, start = load(args.records, now)
        load_seconds = time.perf_counter() - began
        log(f"loaded in {load_seconds:.0f} s from {start:%Y-%m-%d}; copying the flat reference")
        copy_seconds = flat_copy()
        log(f"flat copy in {copy_seconds:.0f} s; sizes: {sizes()}")

        log(f"statistics of {tenants[0].slug} (load {load_average()})")
        stats = statistics_bench(tenants[0], now, args.repeat)
        for name, samples in stats.items():
            log(summary(name, samples))

        log(f"ingest, {args.rounds} rounds of {args.batches} batches each side")
        batches = Batches(tenants, now)
        partitioned_rate, flat_rate = ingest_bench(batches, args.rounds, args.batches)

        short = tenants[SHORT_TENANT]
        log(f"retention of {short.slug} to 60 days while ingesting (load {load_average()})")
        retention = retention_under_ingest(batches, short, now, before_batches=args.batches)

        oldest = partitions_list()[0]
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {oldest.name}")
            oldest_rows = cursor.fetchone()[0]
        began = time.perf_counter()
        partition_detach(partition=oldest)
        detach_seconds = time.perf_counter() - began
        began = time.perf_counter()
        oldest_keys = detached_keys_delete(oldest, batch_size=5000)
        keys_seconds = time.perf_counter() - began
        began = time.perf_counter()
        detached_drop(partition=oldest)
        drop_seconds = detach_seconds + time.perf_counter() - began

        log("")
        log(f"== results ({args.records:,} records; load average {load_average()})")
        endpoint = stats["GET /analytics/cost/ 90 days, partitioned"]
        endpoint_flat = stats["GET /analytics/cost/ 90 days, flat (reference)"]
        p95 = percentile(endpoint, 95)
        log(
            f"statistics: endpoint p95 {p95:.0f} ms, flat {percentile(endpoint_flat, 95):.0f} ms,"
            f" ratio {p95 / percentile(endpoint_flat, 95):.2f}; target < {STATS_TARGET_MS} ms "
            f"{'OK' if p95 < STATS_TARGET_MS else 'ABOVE TARGET'}"
        )
        ratio = partitioned_rate / flat_rate
        log(
            f"ingest: partitioned {partitioned_rate:,.0f} records/s, flat {flat_rate:,.0f}/s, "
            f"ratio {ratio:.3f}; target >= {INGEST_TARGET_RATIO} "
            f"{'OK' if ratio >= INGEST_TARGET_RATIO else 'BELOW TARGET'}"
        )
        report = retention["report"]
        before, during = retention["before"], retention["during"]
        log(
            f"retention: {report.totals['rows_deleted']:,} records and "
            f"{report.totals['keys_deleted']:,} keys of {short.slug} in "
            f"{retention['seconds']:.1f} s "
            f"({report.totals['rows_deleted'] / max(retention['seconds'], 1e-9):,.0f}/s)"
        )
        log(
            f"ingest batch latency before: p50 {statistics.median(before) * 1000:.0f} ms, p99 "
            f"{percentile(before, 99) * 1000:.0f} ms ({len(before)} batches); during: p50 "
            f"{statistics.median(during) * 1000:.0f} ms, p99 "
            f"{percentile(during, 99) * 1000:.0f} ms ({len(during)} batches)"
        )
        log(
            f"drop month {oldest.month:%Y-%m} ({oldest_rows:,} records): DETACH + DROP "
            f"{drop_seconds:.3f} s (DETACH {detach_seconds:.3f} s); target < {DROP_TARGET_S} s "
            f"{'OK' if drop_seconds < DROP_TARGET_S else 'ABOVE'}; its {oldest_keys:,} key rows "
            f"in batches between the two: {keys_seconds:.1f} s"
        )
    finally:
        connections.close_all()
        if args.keep:
            log(f"kept database {BENCH_DB}")
        else:
            with psycopg.connect(MAINTENANCE_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
            log(f"dropped database {BENCH_DB}")


if __name__ == "__main__":
    main()
