"""Daily snapshot computation against a raw SQL GROUP BY of the same rows.

    .venv/bin/python bench/snapshots.py [--records N] [--quick] [--repeat R] [--keep]

1. Creates a scratch tenant (`bench-snap-*`) and N cost records (default 1 000 000) spread
   over one UTC day: ~1000 users, 5 features plus untagged, 5 models.
2. Times `snapshot_compute(snapshot_type="daily")` for that day R times. Every run is a
   real recomputation: baselines first, the snapshot row upserted (version + 1), the old
   aggregates deleted and the new ones inserted by one INSERT ... SELECT ... GROUPING SETS.
3. Times raw SQL references in the same run, alternating with (2), each a read-only SELECT
   producing the same per-entity sums from the same rows:
   - `GROUP BY GROUPING SETS ((), (user_id), (feature_tag), (model))` over the records;
   - four separate GROUP BY queries, one per entity type;
   - GROUPING SETS over a GROUP BY (user_id, feature_tag, model) pre-aggregation (the
     plan the snapshot statement uses), serial and with parallel workers allowed.
4. Prints medians and the ratio snapshot / fastest serial reference (target <= 1.5).
   PostgreSQL never runs a data-modifying statement (INSERT ... SELECT) with parallel
   workers, so the snapshot's like-for-like reference is the serial plan; the parallel
   SELECT is printed for information.

The scratch tenant and its rows are removed at the end (unless --keep). The database must
be migrated.
"""

import argparse
import statistics
from datetime import UTC, datetime, timedelta

from _snapshot_data import (
    check_migrated,
    cleanup,
    generate_records,
    log,
    run_sql,
    scratch_tenant,
    timed,
)
from django.db import connection, transaction

from analytics.models import SnapshotAggregate
from analytics.services.snapshots import snapshot_compute

TARGET_RATIO = 1.5

REFERENCE = """
SELECT GROUPING(user_id), GROUPING(feature_tag), GROUPING(model),
       COALESCE(user_id, feature_tag, model), SUM(cost_cents), COUNT(*), SUM(input_tokens),
       SUM(output_tokens)
FROM analytics_costrecord
WHERE tenant_id = %(tenant)s AND created_at >= %(start)s AND created_at < %(end)s
GROUP BY GROUPING SETS ((), (user_id), (feature_tag), (model))
"""
PRE_AGGREGATED = """
WITH combos AS (
    SELECT user_id, feature_tag, model, SUM(cost_cents) AS total, COUNT(*) AS requests,
           SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens
    FROM analytics_costrecord
    WHERE tenant_id = %(tenant)s AND created_at >= %(start)s AND created_at < %(end)s
    GROUP BY user_id, feature_tag, model
)
SELECT GROUPING(user_id), GROUPING(feature_tag), GROUPING(model),
       COALESCE(user_id, feature_tag, model), SUM(total), SUM(requests), SUM(input_tokens),
       SUM(output_tokens)
FROM combos
GROUP BY GROUPING SETS ((), (user_id), (feature_tag), (model))
"""
SEPARATE = [
    "SELECT SUM(cost_cents), COUNT(*), SUM(input_tokens), SUM(output_tokens) "
    "FROM analytics_costrecord WHERE tenant_id = %(tenant)s "
    "AND created_at >= %(start)s AND created_at < %(end)s",
    *(
        f"SELECT {column}, SUM(cost_cents), COUNT(*), SUM(input_tokens), SUM(output_tokens) "
        "FROM analytics_costrecord WHERE tenant_id = %(tenant)s "
        f"AND created_at >= %(start)s AND created_at < %(end)s GROUP BY {column}"
        for column in ("user_id", "feature_tag", "model")
    ),
]


def run_sql_serial(sql: str, params: dict) -> None:
    """The query as a single process runs it: the plan a data-modifying statement gets."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute(sql, params)
        cursor.fetchall()


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="records in the day")
    parser.add_argument("--quick", action="store_true", help="small run: 100 000 records")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each side")
    parser.add_argument("--keep", action="store_true", help="keep the scratch tenant and rows")
    args = parser.parse_args()
    if args.quick:
        args.records = min(args.records, 100_000)
        args.repeat = min(args.repeat, 3)
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be positive")
    return args


def main() -> None:
    args = parse_args()
    check_migrated()
    now = datetime.now(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=2)
    tenant = scratch_tenant("bench-snap")
    log(f"tenant {tenant.slug}: {args.records:,} records on {day:%Y-%m-%d}")
    try:
        seconds = generate_records(tenant=tenant, count=args.records, start=day, span_seconds=86400)
        log(f"data ready in {seconds:.1f} s")
        params = {"tenant": tenant.pk, "start": day, "end": day + timedelta(days=1)}

        def compute():
            snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=day)
            assert snapshot.status == "complete", snapshot.error_message
            assert snapshot.records_processed == args.records

        # warm-up: caches, plans, first insert of the snapshot row
        compute()
        run_sql(REFERENCE, params)
        # name -> (query, serial?)
        references = {
            "GROUPING SETS over records, serial": (
                lambda: run_sql_serial(REFERENCE, params),
                True,
            ),
            "four separate GROUP BYs, serial": (
                lambda: [run_sql_serial(sql, params) for sql in SEPARATE],
                True,
            ),
            "pre-aggregation + GROUPING SETS, serial": (
                lambda: run_sql_serial(PRE_AGGREGATED, params),
                True,
            ),
            "pre-aggregation + GROUPING SETS, parallel": (
                lambda: run_sql(PRE_AGGREGATED, params),
                False,
            ),
        }
        snapshot_ms = []
        reference_ms = {name: [] for name in references}
        for run in range(args.repeat):
            snapshot_ms += timed(compute, 1)
            for name, (query, _) in references.items():
                reference_ms[name] += timed(query, 1)
            log(
                f"  run {run + 1}: snapshot {snapshot_ms[-1]:.0f} ms, "
                + ", ".join(
                    f"{name} {samples[-1]:.0f} ms" for name, samples in reference_ms.items()
                )
            )
        aggregates = SnapshotAggregate.objects.filter(snapshot__tenant=tenant).count()

        snapshot_p50 = statistics.median(snapshot_ms)
        medians = {name: statistics.median(samples) for name, samples in reference_ms.items()}
        serial = [name for name, (_, is_serial) in references.items() if is_serial]
        fastest = min(serial, key=medians.get)
        log("")
        log(f"records in the period:               {args.records:,}")
        log(f"aggregate rows written:              {aggregates:,}")
        log(f"snapshot_compute (daily), median:    {snapshot_p50:.0f} ms")
        for name, median in medians.items():
            ratio = snapshot_p50 / median
            log(f"raw SQL, {name + ',':<43} median {median:5.0f} ms (ratio {ratio:.2f})")
        ratio = snapshot_p50 / medians[fastest]
        verdict = "OK" if ratio <= TARGET_RATIO else "ABOVE TARGET"
        log(
            f"ratio snapshot / fastest serial raw SQL ({fastest}): {ratio:.2f} "
            f"(target <= {TARGET_RATIO}) {verdict}"
        )
    finally:
        if args.keep:
            log(f"kept scratch tenant {tenant.slug}")
        else:
            cleanup(tenant)


if __name__ == "__main__":
    main()
