"""90-day cost statistics over millions of records, against a raw SQL aggregation.

    .venv/bin/python bench/cost_statistics.py [--records N] [--quick] [--repeat R] [--keep]

1. Creates a scratch tenant (`bench-stats-*`) and N cost records (default 5 000 000) spread
   evenly over the 91 UTC days ending with today, then computes the daily snapshots of the
   90 complete days, as the daily job would have.
2. Times the cost statistics (day resolution) R times each:
   - the service for an aligned 90-day window (every bucket read from a snapshot);
   - the service for a rolling 90-day window starting at 10:00 (the first and last buckets
     are partial, so about a day of records is read raw) - the usual "last 90 days" query;
   - the same rolling window through GET /api/v1/analytics/cost/ (auth, validation,
     rendering; in process, no network).
3. Times the reference in the same run: a raw SQL `GROUP BY date_trunc('day', created_at)`
   over the records of the rolling window, which is what answering from records alone costs.
   For information it also times the service with every snapshot marked stale (all raw)
   and checks that this answer equals the snapshot-backed one.
4. Prints p50/p95 in ms and the ratio service / raw SQL (target: endpoint p95 < 300 ms).

The scratch tenant and its rows are removed at the end (unless --keep). The database must
be migrated.
"""

import argparse
import statistics
from datetime import UTC, datetime, timedelta

from _snapshot_data import (
    analyze_snapshot_tables,
    check_migrated,
    cleanup,
    generate_records,
    log,
    percentile,
    run_sql,
    scratch_tenant,
    timed,
)
from django.test import Client

from analytics.models import CostSnapshot
from analytics.selectors.statistics import StatisticsWindow
from analytics.services.snapshots import snapshot_compute
from analytics.services.statistics import cost_statistics
from analytics.services.tenants import api_key_create

TARGET_MS = 300
DAYS = 90

REFERENCE = """
SELECT date_trunc('day', created_at, 'UTC'), SUM(cost_cents), COUNT(*), SUM(input_tokens),
       SUM(output_tokens)
FROM analytics_costrecord
WHERE tenant_id = %(tenant)s AND created_at >= %(start)s AND created_at < %(end)s
GROUP BY 1 ORDER BY 1
"""


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=5_000_000, help="records over 91 days")
    parser.add_argument("--quick", action="store_true", help="small run: 300 000 records")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--keep", action="store_true", help="keep the scratch tenant and rows")
    args = parser.parse_args()
    if args.quick:
        args.records = min(args.records, 300_000)
        args.repeat = min(args.repeat, 10)
    if args.records < 1 or args.repeat < 1:
        parser.error("--records and --repeat must be positive")
    return args


def summary(name: str, samples: list[float]) -> str:
    return (
        f"{name:<44} p50 {statistics.median(samples):7.1f} ms   "
        f"p95 {percentile(samples, 95):7.1f} ms"
    )


def main() -> None:
    args = parse_args()
    check_migrated()
    now = datetime.now(UTC)
    today = datetime(now.year, now.month, now.day, tzinfo=UTC)
    first_day = today - timedelta(days=DAYS)
    tenant = scratch_tenant("bench-stats")
    log(f"tenant {tenant.slug}: {args.records:,} records from {first_day:%Y-%m-%d}, 91 days")
    try:
        seconds = generate_records(
            tenant=tenant, count=args.records, start=first_day, span_seconds=(DAYS + 1) * 86400
        )
        log(f"data ready in {seconds:.1f} s; computing {DAYS} daily snapshots")
        snapshot_ms = []
        for day in range(DAYS):
            snapshot_ms += timed(
                lambda day=day: snapshot_compute(
                    tenant=tenant,
                    snapshot_type="daily",
                    period_start=first_day + timedelta(days=day),
                ),
                1,
            )
        log(f"daily snapshots: median {statistics.median(snapshot_ms):.0f} ms each")
        analyze_snapshot_tables()

        aligned = StatisticsWindow(first_day, first_day + timedelta(days=DAYS), "day")
        rolling = StatisticsWindow(
            first_day + timedelta(hours=10), first_day + timedelta(days=DAYS, hours=10), "day"
        )
        _, raw_key = api_key_create(tenant=tenant, name="bench")
        client = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}", SERVER_NAME="localhost")
        query = {
            "from": rolling.start.isoformat().replace("+00:00", "Z"),
            "to": rolling.end.isoformat().replace("+00:00", "Z"),
        }
        reference_params = {"tenant": tenant.pk, "start": rolling.start, "end": rolling.end}

        def endpoint():
            response = client.get("/api/v1/analytics/cost/", query)
            assert response.status_code == 200, response.content

        # warm-up
        hybrid_answer = cost_statistics(tenant=tenant, window=rolling, now=now)
        endpoint()
        run_sql(REFERENCE, reference_params)

        results = {
            "service, aligned 90 days": timed(
                lambda: cost_statistics(tenant=tenant, window=aligned, now=now), args.repeat
            ),
            "service, rolling 90 days": timed(
                lambda: cost_statistics(tenant=tenant, window=rolling, now=now), args.repeat
            ),
            "GET /analytics/cost/, rolling 90 days": timed(endpoint, args.repeat),
        }
        reference = timed(lambda: run_sql(REFERENCE, reference_params), max(3, args.repeat // 6))

        CostSnapshot.objects.filter(tenant=tenant).update(is_stale=True)
        raw_answer = cost_statistics(tenant=tenant, window=rolling, now=now)
        all_raw = timed(
            lambda: cost_statistics(tenant=tenant, window=rolling, now=now),
            max(3, args.repeat // 6),
        )
        CostSnapshot.objects.filter(tenant=tenant).update(is_stale=False)
        same = raw_answer == hybrid_answer

        log("")
        log(f"records: {args.records:,} over 91 days; window: 90 days, day resolution")
        for name, samples in results.items():
            log(summary(name, samples))
        log(summary("reference: raw SQL GROUP BY day", reference))
        log(summary("service with every snapshot stale (all raw)", all_raw))
        endpoint_p95 = percentile(results["GET /analytics/cost/, rolling 90 days"], 95)
        ratio = statistics.median(results["service, rolling 90 days"]) / statistics.median(
            reference
        )
        log(f"ratio service (rolling) / raw SQL, p50:       {ratio:.3f}")
        log(f"snapshot answer equals all-raw answer:        {same}")
        verdict = "OK" if endpoint_p95 < TARGET_MS else "ABOVE TARGET"
        log(f"endpoint p95 {endpoint_p95:.0f} ms (target < {TARGET_MS} ms) {verdict}")
    finally:
        if args.keep:
            log(f"kept scratch tenant {tenant.slug}")
        else:
            cleanup(tenant)


if __name__ == "__main__":
    main()
