"""Server time of the operator overview on the `seed_demo` data, against the cost API.

    .venv/bin/python bench/overview.py [--repeat R] [--quick]

1. Makes sure the `demo` tenant exists (runs `seed_demo` when it does not; the tenant is kept,
   as `make run` keeps it) and a staff user to view the console as.
2. Times, R times each, in process (Django's test client: middleware, session, template
   rendering; no network):
   - GET /admin/ for the last 30 days by model (the landing page),
   - the last 7 days (drawn by the hour) and the last 90 days by feature;
   - the reference, in the same run: GET /api/v1/analytics/cost/ for the same 30-day window,
     the one request the overview's chart and breakdown repeat.
3. Prints p50/p95 in ms, the ratio of each page to the reference and the verdict against the
   300 ms target (p95).

The database must be migrated.
"""

import argparse
import statistics
from datetime import UTC, datetime, timedelta
from io import StringIO

from _snapshot_data import check_migrated, log, percentile, timed
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from analytics.models import CostRecord, Tenant
from analytics.services.demo import DEMO_SLUG
from analytics.services.tenants import api_key_create

TARGET_MS = 300
BENCH_USER = "bench-overview"


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--quick", action="store_true", help="small run: 10 runs each")
    args = parser.parse_args()
    if args.quick:
        args.repeat = min(args.repeat, 10)
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    return args


def summary(name: str, samples: list[float], reference: list[float]) -> str:
    ratio = statistics.median(samples) / statistics.median(reference)
    return (
        f"{name:<40} p50 {statistics.median(samples):7.1f} ms   "
        f"p95 {percentile(samples, 95):7.1f} ms   x{ratio:.2f} of the reference"
    )


def main() -> None:
    args = parse_args()
    check_migrated()
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    if tenant is None:
        log("no demo tenant: running seed_demo (kept afterwards)")
        call_command("seed_demo", stdout=StringIO())
        tenant = Tenant.objects.get(slug=DEMO_SLUG)
    user, _ = get_user_model().objects.get_or_create(
        username=BENCH_USER, defaults={"is_staff": True, "is_superuser": True}
    )
    console = Client(SERVER_NAME="localhost")
    console.force_login(user)
    _, raw_key = api_key_create(tenant=tenant, name="bench-overview")
    api = Client(HTTP_AUTHORIZATION=f"Api-Key {raw_key}", SERVER_NAME="localhost")

    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    window = {
        "from": (today - timedelta(days=29)).isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
    }

    def get(client, path, query):
        def call():
            response = client.get(path, query)
            assert response.status_code == 200, response.status_code

        return call

    pages = {
        "overview, 30 days by model": {"tenant": tenant.slug, "range": "30"},
        "overview, 7 days by the hour": {"tenant": tenant.slug, "range": "7"},
        "overview, 90 days by feature": {"tenant": tenant.slug, "range": "90", "by": "feature"},
    }
    for query in pages.values():  # warm-up
        get(console, "/admin/", query)()
    reference_call = get(api, "/api/v1/analytics/cost/", window)
    reference_call()

    results = {
        name: timed(get(console, "/admin/", query), args.repeat) for name, query in pages.items()
    }
    reference = timed(reference_call, args.repeat)

    count = CostRecord.objects.filter(tenant=tenant).count()
    log("")
    log(f"tenant {tenant.slug}: {count:,} cost records; {args.repeat} runs each")
    for name, samples in results.items():
        log(summary(name, samples, reference))
    log(
        f"{'reference: GET /analytics/cost/, 30 days':<40} "
        f"p50 {statistics.median(reference):7.1f} ms   p95 {percentile(reference, 95):7.1f} ms"
    )
    worst = max(percentile(samples, 95) for samples in results.values())
    verdict = "OK" if worst < TARGET_MS else "ABOVE TARGET"
    log(f"slowest overview p95 {worst:.0f} ms (target < {TARGET_MS} ms) {verdict}")


if __name__ == "__main__":
    main()
