"""Reads of a busy current hour: cost statistics and budget spend with and without rollups.

    .venv/bin/python bench/rollup.py [--quick] [--repeat R] [--keep]

Creates a scratch tenant (`bench-rollup-*`) with a tenant budget and fills the hour before
now with cost records in steps (default 1 000, 10 000, 50 000, 150 000 records; --quick
stops at 10 000), the locust mix's shape: 50 users, 6 features, 6 models, half of them
priced. No snapshot exists, as before the hourly job runs. At each step it times, R times
each, alternating:

- cost statistics, 30 days by day ending now (the service: series and breakdowns), read as
  the service reads it (whole hours from the hourly rollups, the rest of the current hour
  subtracted from its rollup) and with every uncovered hour read from cost records, which is
  how statistics read it before rollups;
- the budget spend of the reserve check and the budget status (`budgets_usage` at now),
  against the exact sum of the records over the same ranges.

Both ways must give the same figures (checked at every step). Prints p50 per read and step:
the rollup reads should stay flat while the record reads grow with the records.

The scratch tenant and its rows are removed at the end (unless --keep).
"""

import argparse
import os
import secrets
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="steps up to 10 000 records")
    parser.add_argument("--repeat", type=int, default=15, help="timed reads per way and step")
    parser.add_argument("--keep", action="store_true", help="keep the scratch tenant")
    return parser.parse_args()


ARGS = parse_args() if __name__ == "__main__" else None
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from analytics.models import Budget, CostRecord, CostRollup, Tenant  # noqa: E402
from analytics.selectors.budgets import budget_spend, budgets_usage  # noqa: E402
from analytics.selectors.statistics import (  # noqa: E402
    Coverage,
    StatisticsWindow,
    cost_breakdown,
    cost_series,
    statistics_coverage,
)
from analytics.services.tenants import tenant_create  # noqa: E402

STEPS = (1_000, 10_000, 50_000, 150_000)
# Records spread over the hour before `now`, shaped like the locust mix.
_FILL = """
INSERT INTO analytics_costrecord (tenant_id, user_id, feature_tag, model, provider,
    input_tokens, output_tokens, cost_cents, cost_source, is_retry, created_at, ingested_at)
SELECT %(tenant)s, 'user-' || lpad((n %% 50)::text, 3, '0'),
       (ARRAY['chat', 'search', 'summarize', 'extract', 'unclassified', NULL])[1 + n %% 6],
       (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-3-5-sonnet', 'claude-3-5-haiku',
              'gemini-1.5-pro', 'llama-3.1-70b'])[1 + (n / 6) %% 6],
       'openai', 500 + n %% 900, 100 + n %% 300,
       CASE WHEN n %% 2 = 0 THEN (n %% 997) / 100.0 END,
       CASE WHEN n %% 2 = 0 THEN 'client' ELSE 'unpriced' END,
       false, %(now)s - random() * interval '59 minutes', %(now)s
FROM generate_series(1, %(count)s) AS n
"""


def log(message: str) -> None:
    print(message, flush=True)


def timed(read) -> tuple[float, object]:
    started = time.perf_counter()
    result = read()
    return (time.perf_counter() - started) * 1000, result


def statistics_reads(tenant: Tenant, window: StatisticsWindow, now: datetime, by_rollup: bool):
    if by_rollup:
        coverage = statistics_coverage(tenant=tenant, window=window, now=now)
    else:
        coverage = Coverage(raw_lo=[window.start], raw_hi=[window.end])
    return (
        cost_series(tenant=tenant, window=window, coverage=coverage),
        sorted(cost_breakdown(tenant=tenant, window=window, coverage=coverage), key=str),
    )


def step_reads(tenant: Tenant, budget: Budget, now: datetime) -> dict:
    """The four timed reads at instant `now`, by name."""
    window = StatisticsWindow(start=now - timedelta(days=30), end=now, resolution="day")
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return {
        "stats_rollup": lambda: statistics_reads(tenant, window, now, True),
        "stats_raw": lambda: statistics_reads(tenant, window, now, False),
        "spend_rollup": lambda: budgets_usage(budget_ids=[budget.pk], at=now),
        "spend_raw": lambda: budget_spend(budget=budget, start=month_start, end=now),
    }


def main() -> None:
    args = ARGS
    tenant = tenant_create(slug=f"bench-rollup-{secrets.token_hex(3)}")
    budget = Budget.objects.create(
        tenant=tenant, budget_type="tenant", daily_limit_cents=10**12, monthly_limit_cents=10**13
    )
    steps = [step for step in STEPS if not args.quick or step <= 10_000]
    log(f"rollup reads: tenant {tenant.slug}, steps {steps}, {args.repeat} reads per way")
    log(f"load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    log(
        f"\n{'records':>8}  {'stats rollup':>12}  {'stats records':>13}  {'spend rollup':>12}  "
        f"{'spend records':>13}  {'rollup rows':>11}"
    )
    filled = 0
    try:
        for step in steps:
            now = datetime.now(UTC)
            with connection.cursor() as cursor:
                cursor.execute(_FILL, {"tenant": tenant.pk, "now": now, "count": step - filled})
                cursor.execute("ANALYZE analytics_costrollup")
            filled = step
            now = datetime.now(UTC)
            reads = step_reads(tenant, budget, now)
            times = {name: [] for name in reads}
            answers = {}
            for _ in range(args.repeat):
                for name, read in reads.items():  # alternating, so load changes hit all four
                    ms, answers[name] = timed(read)
                    times[name].append(ms)
            by_rollup, by_records = answers["stats_rollup"], answers["stats_raw"]
            usage, spend = answers["spend_rollup"], answers["spend_raw"]
            if by_rollup != by_records or usage[budget.pk].month_spend != spend:
                raise SystemExit(f"MISMATCH at {step} records: rollup and record reads differ")
            rows = CostRollup.objects.filter(tenant=tenant).count()
            p50 = {name: statistics.median(values) for name, values in times.items()}
            log(
                f"{step:>8,}  {p50['stats_rollup']:>9.1f} ms  {p50['stats_raw']:>10.1f} ms  "
                f"{p50['spend_rollup']:>9.1f} ms  {p50['spend_raw']:>10.1f} ms  {rows:>11,}"
            )
        log(f"load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    finally:
        if args.keep:
            log(f"kept {tenant.slug}")
        else:
            CostRecord.objects.filter(tenant=tenant).delete()
            Budget.objects.filter(tenant=tenant).delete()
            tenant.delete()  # its rollups go with it
            log(f"cleanup: removed {tenant.slug} and its rows")


if __name__ == "__main__":
    main()
