"""Repricing stored cost records, against a plain SQL UPDATE of the same rows.

    .venv/bin/python bench/reprice.py [--records N] [--quick] [--rounds R] [--chunk-days D]

1. Loads N records the service priced (catalogue and unpriced, several models, one tenant,
   30 days; 10 % more client-cost records that a reprice must skip) with generate_series,
   and a complete hourly and daily snapshot of every period, into the database of
   DATABASE_URL.
2. Each round runs, in alternating order, the reference and the reprice over the same rows:
   - reference: `UPDATE analytics_costrecord SET cost_cents = cost_cents + 0.000001` of the
     tenant's non-client records in the window, one statement: what merely rewriting those
     rows costs. It also leaves every catalogue price off by a millionth of a cent, so the
     reprice that follows changes every priced row again;
   - reprice: `cost_records_reprice` (what `manage.py reprice` and the API run): finds the
     (model, provider) pairs, builds their price cells, and per chunk joins, updates and
     marks the covering snapshots stale.
   The table is vacuumed before each timed statement, outside the timing.
3. Prints both times, rows changed, and the ratio reprice / reference (lower is better); the
   goal is a reprice of 1,000,000 records in under 60 s.
4. Pricing at ingest: the same 1000-record batches through `cost_records_ingest`, once with
   tokens only (priced in the insert) and once with the client's cost, alternating; prints
   records/s of both and their ratio (--ingest-batches, 0 skips it).

The bench creates its own tenant (`bench-reprice-*`) and removes it and its rows at the end
(unless --keep). The database must be migrated.
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_SECONDS = 60


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records to reprice")
    parser.add_argument("--quick", action="store_true", help="small run: 50 000 records")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk-days", type=int, default=31, help="days per reprice statement")
    parser.add_argument("--keep", action="store_true", help="keep the bench tenant and rows")
    parser.add_argument("--ingest-batches", type=int, default=40, help="batches per ingest side")
    args = parser.parse_args()
    if args.quick:
        args.records = min(args.records, 50_000)
    if args.rounds < 1 or args.chunk_days < 1:
        parser.error("--rounds and --chunk-days must be at least 1")
    return args


ARGS = parse_args() if __name__ == "__main__" else None

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
os.environ.setdefault("DJANGO_DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

from analytics.models import (  # noqa: E402
    CostRecord,
    CostRecordKey,
    CostSnapshot,
    SnapshotStatus,
    SnapshotType,
    Tenant,
)
from analytics.services.ingest import COST_RECORD_COLUMNS, cost_records_ingest  # noqa: E402
from analytics.services.pricing import cost_records_reprice  # noqa: E402
from analytics.services.tenants import tenant_create  # noqa: E402

# Models as records carry them; the last one is unknown to the catalogue (stays unpriced).
MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "claude-sonnet-4-5",
    "claude-3-5-haiku",
    "gemini-2.5-pro",
    "gemini-2.0-flash",
    "deepseek-chat",
    "mistral-large-latest",
    "acme-internal-llm",
]

# The priced records: a stale catalogue cost for known models (a tenth off), none for the
# unknown one. created_at spreads the rows over the 30 days, microseconds apart.
LOAD_SQL = """
INSERT INTO analytics_costrecord
    (tenant_id, model, provider, input_tokens, output_tokens, cache_read_tokens,
     cache_write_tokens, cost_cents, cost_source, price_catalog_version, is_retry,
     created_at, ingested_at, feature_tag, user_id)
SELECT %(tenant)s, m.model, NULL, t.input_tokens, t.output_tokens, t.cache_read, 0,
       CASE WHEN %(client)s THEN 1
            WHEN m.model = 'acme-internal-llm' THEN NULL
            ELSE round(0.9 * (t.input_tokens + t.output_tokens) / 1000.0, 6) END,
       CASE WHEN %(client)s THEN 'client'
            WHEN m.model = 'acme-internal-llm' THEN 'unpriced' ELSE 'catalog' END,
       CASE WHEN NOT %(client)s THEN 'genai-prices 0.0.1' END,
       false,
       %(start)s + (g * %(step)s) * interval '1 microsecond',
       %(start)s,
       'feature-' || (g %% 7), 'user-' || (g %% 300)
FROM generate_series(1::bigint, %(count)s) AS g
CROSS JOIN LATERAL (
    SELECT (100 + (g * 7919) %% 20000)::bigint AS input_tokens,
           (20 + (g * 104729) %% 2000)::bigint AS output_tokens,
           CASE WHEN g %% 3 = 0 THEN ((100 + (g * 7919) %% 20000) / 3)::bigint ELSE 0 END
               AS cache_read
) t
CROSS JOIN LATERAL (
    SELECT (%(models)s::text[])[1 + (g * 2654435761) %% %(model_count)s] AS model
) m
"""

REFERENCE_SQL = """
UPDATE analytics_costrecord SET cost_cents = cost_cents + 0.000001
WHERE tenant_id = %(tenant)s AND created_at >= %(since)s AND created_at < %(until)s
  AND cost_source <> 'client' AND cost_cents IS NOT NULL
"""


def log(message: str) -> None:
    print(message, flush=True)


def check_migrated() -> None:
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        sys.exit("The database has unapplied migrations; run `manage.py migrate` first.")


def load(tenant: Tenant, records: int, start: datetime, days: int) -> None:
    step = int(days * 86400 * 1_000_000 / (records * 1.1))
    params = {
        "tenant": tenant.pk,
        "start": start,
        "step": step,
        "models": MODELS,
        "model_count": len(MODELS),
    }
    with connection.cursor() as cursor:
        cursor.execute(LOAD_SQL, {**params, "count": records, "client": False})
        # Client records, interleaved in time with the others.
        cursor.execute(
            LOAD_SQL,
            {
                **params,
                "count": records // 10,
                "client": True,
                "start": start + timedelta(seconds=1),
            },
        )
    snapshots = []
    for day in range(days):
        day_start = start + timedelta(days=day)
        snapshots.append((SnapshotType.DAILY, day_start, day_start + timedelta(days=1)))
        for hour in range(24):
            hour_start = day_start + timedelta(hours=hour)
            snapshots.append((SnapshotType.HOURLY, hour_start, hour_start + timedelta(hours=1)))
    CostSnapshot.objects.bulk_create(
        CostSnapshot(
            tenant=tenant,
            snapshot_type=kind,
            period_start=begin,
            period_end=end,
            status=SnapshotStatus.COMPLETE,
        )
        for kind, begin, end in snapshots
    )


def vacuum() -> None:
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE analytics_costrecord")
        cursor.execute("VACUUM ANALYZE analytics_costsnapshot")


def unstale(tenant: Tenant) -> None:
    CostSnapshot.objects.filter(tenant=tenant).update(is_stale=False)


def timed_reference(tenant: Tenant, since: datetime, until: datetime) -> tuple[float, int]:
    vacuum()
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(REFERENCE_SQL, {"tenant": tenant.pk, "since": since, "until": until})
        rows = cursor.rowcount
    return time.perf_counter() - began, rows


def timed_reprice(tenant: Tenant, since: datetime, chunk_days: int, dry_run: bool = False):
    unstale(tenant)
    vacuum()
    began = time.perf_counter()
    result = cost_records_reprice(
        tenant=tenant, since=since, chunk=timedelta(days=chunk_days), dry_run=dry_run
    )
    return time.perf_counter() - began, result


def ingest_batches(count: int, *, priced: bool, now: datetime, offset: int) -> list[list[dict]]:
    batches = []
    for number in range(count):
        rows = []
        for index in range(1000):
            serial = offset + number * 1000 + index
            model = MODELS[serial % (len(MODELS) - 1)]
            row = dict.fromkeys(name for name, _ in COST_RECORD_COLUMNS)
            row.update(
                idempotency_key=f"ingest-{serial}",
                model=model,
                input_tokens=100 + serial % 5000,
                output_tokens=20 + serial % 700,
                cache_read_tokens=(100 + serial % 5000) // 4,
                cache_write_tokens=0,
                cost_cents=None if priced else Decimal("1.5"),
                is_retry=False,
                created_at=now - timedelta(seconds=serial % 86400),
            )
            rows.append(row)
        batches.append(rows)
    return batches


def timed_ingest(tenant: Tenant, batches: list[list[dict]], now: datetime) -> float:
    began = time.perf_counter()
    for rows in batches:
        cost_records_ingest(tenant=tenant, records=rows, received_at=now)
    return time.perf_counter() - began


def ingest_comparison(tenant: Tenant, count: int) -> None:
    now = datetime.now(tz=UTC)
    half = max(count // 2, 1)
    priced_seconds = client_seconds = 0.0
    for side in range(2):
        # Alternate which side goes first; keys never repeat, so every record is written.
        priced = ingest_batches(half, priced=True, now=now, offset=(2 * side) * half * 1000)
        client = ingest_batches(half, priced=False, now=now, offset=(2 * side + 1) * half * 1000)
        order = (
            [(True, priced), (False, client)] if side == 0 else [(False, client), (True, priced)]
        )
        for is_priced, batches in order:
            seconds = timed_ingest(tenant, batches, now)
            if is_priced:
                priced_seconds += seconds
            else:
                client_seconds += seconds
    records = 2 * half * 1000
    log(
        f"Ingest of {records:,} records per side in 1000-record batches: tokens only "
        f"{records / priced_seconds:,.0f} records/s, with client cost "
        f"{records / client_seconds:,.0f} records/s; ratio priced/client "
        f"{client_seconds / priced_seconds:.2f}"
    )


def main(args) -> None:
    check_migrated()
    connection.ensure_connection()
    connection.set_autocommit(True)
    days = 30
    start = datetime(2026, 1, 1, tzinfo=UTC)
    until = start + timedelta(days=days + 1)
    tenant = tenant_create(slug=f"bench-reprice-{secrets.token_hex(3)}")
    try:
        log(f"Loading {args.records:,} priced + {args.records // 10:,} client records...")
        began = time.perf_counter()
        load(tenant, args.records, start, days)
        log(f"  loaded in {time.perf_counter() - began:.1f} s")
        # The loaded prices are all off: a first reprice brings the catalogue rows in line.
        seconds, first = timed_reprice(tenant, start, args.chunk_days)
        log(
            f"First reprice: {first.rows_changed:,} of {first.records_examined:,} changed in "
            f"{seconds:.1f} s ({first.snapshots_marked_stale} snapshots stale)"
        )
        dry_seconds, dry = timed_reprice(tenant, start, args.chunk_days, dry_run=True)
        log(f"Dry run of an up-to-date range: {dry.rows_changed} would change, {dry_seconds:.1f} s")

        ratios, references, reprices = [], [], []
        for round_number in range(args.rounds):
            # Each reference run leaves every catalogue row a millionth off, so the reprice
            # after it changes them all back; the order alternates between rounds.
            reference_seconds, reference_rows = timed_reference(tenant, start, until)
            reprice_seconds, result = timed_reprice(tenant, start, args.chunk_days)
            if result.rows_changed != reference_rows:
                sys.exit(f"reprice changed {result.rows_changed} rows, reference {reference_rows}")
            references.append(reference_seconds)
            reprices.append(reprice_seconds)
            ratios.append(reprice_seconds / reference_seconds)
            log(
                f"Round {round_number + 1}: reference UPDATE {reference_rows:,} rows "
                f"{reference_seconds:.1f} s; reprice {result.rows_changed:,} rows "
                f"{reprice_seconds:.1f} s ({result.rows_changed / reprice_seconds:,.0f} rows/s, "
                f"delta {result.cents_delta:+} cents); ratio {ratios[-1]:.2f}"
            )
        worst = max(reprices)
        log(
            f"Median: reference {statistics.median(references):.1f} s, reprice "
            f"{statistics.median(reprices):.1f} s, ratio reprice/reference "
            f"{statistics.median(ratios):.2f}; slowest reprice {worst:.1f} s "
            f"({'meets' if worst < GOAL_SECONDS else 'misses'} the {GOAL_SECONDS} s goal)"
        )
        if args.ingest_batches:
            ingest_comparison(tenant, args.ingest_batches)
    finally:
        if not args.keep:
            # Cost records have no delete path in the application; the bench removes its own.
            CostRecord.objects.filter(tenant=tenant).delete()
            CostRecordKey.objects.filter(tenant=tenant).delete()
            CostSnapshot.objects.filter(tenant=tenant).delete()
            tenant.delete()


if __name__ == "__main__":
    main(ARGS)
