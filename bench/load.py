"""Sustained load: bench/locustfile.py's mix, headless, against a local server.

Starts the web server as `make run` does (granian by default; --server gunicorn), with the
helpers of bench/simulate.py, against DATABASE_URL; seeds --tenants tenants ("bench-load-N",
default 8) with their feature tags, a tenant budget each (hard limit far above what the run
spends, so reservations are allowed and budget checks do their full work) and a fresh API key
each (the clients are spread evenly over the tenants); then runs locust headless
for a fixed time with a fixed number of simulated clients and prints, per endpoint and per
minute, the requests per second, p50 and p99 latency and the failures, and a verdict: no
failures, and the last minute's p99 (all requests) within 1.5x of the first minute's.

The tenants are kept between runs, so their records grow from run to run, as a deployment's
do; `--fresh` drops their cost records (and hourly rollups) first. Locust and the server share
this machine's cores, so the figures are those of one machine doing both; the load
generator's CPU is printed.

    .venv/bin/python bench/load.py              # 10 minutes, 24 clients
    .venv/bin/python bench/load.py --quick      # 1 minute
    .venv/bin/python bench/load.py --minutes 3 --users 48 --tenants 1
"""

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != HERE]
sys.path.insert(0, str(BASE_DIR))

_spec = importlib.util.spec_from_file_location("bench_simulate", HERE / "simulate.py")
simulate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(simulate)

BENCH_TENANT = "bench-load"
LOCUST = str(BASE_DIR / ".venv" / "bin" / "locust")
FEATURES = ["chat", "search", "summarize", "extract"]
P99_CREEP_LIMIT = 1.5


def prepare_database(tenants: int, fresh: bool) -> tuple[list[str], list[int], list[int]]:
    """Migrate; create the tenants, their features, a budget each and a fresh key each."""
    from django.core.management import call_command

    from analytics.models import Budget, CostRecord, CostRollup, FeatureTag, Tenant
    from analytics.services.tenants import api_key_create, tenant_create

    call_command("migrate", interactive=False, verbosity=0)
    raw_keys, key_ids, tenant_ids = [], [], []
    for number in range(1, tenants + 1):
        slug = f"{BENCH_TENANT}-{number}"
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(
            slug=slug, name=f"load benchmark {number}"
        )
        if fresh:
            # Rollups keep the sums of deleted records, so they go too.
            CostRecord.objects.filter(tenant=tenant).delete()
            CostRollup.objects.filter(tenant=tenant).delete()
        for name in FEATURES:
            FeatureTag.objects.get_or_create(
                tenant=tenant, tag=name, defaults={"display_name": name}
            )
        if not Budget.objects.filter(tenant=tenant, budget_type="tenant").exists():
            Budget.objects.create(
                tenant=tenant,
                budget_type="tenant",
                entity_id=None,
                daily_limit_cents=10_000_000_00,
                monthly_limit_cents=100_000_000_00,
                hard_limit_enabled=True,
                is_active=True,
            )
        api_key, raw_key = api_key_create(tenant=tenant, name="bench/load.py")
        raw_keys.append(raw_key)
        key_ids.append(api_key.pk)
        tenant_ids.append(tenant.pk)
    return raw_keys, key_ids, tenant_ids


def record_count(tenant_ids: list[int]) -> int:
    from analytics.models import CostRecord

    return CostRecord.objects.filter(tenant_id__in=tenant_ids).count()


def percentile(values: list[float], fraction: float) -> float:
    return simulate.percentile(sorted(values), fraction)


def report(log_path: Path, started: float, minutes: int) -> tuple[bool, list[str]]:
    """Print the per-minute table; return (verdict passed, reasons)."""
    by_minute: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    failures: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    with open(log_path) as handle:
        for line in handle:
            entry = json.loads(line)
            minute = int((entry["t"] - started) // 60)
            if minute < 0 or minute >= minutes:
                continue  # started before the clock or after the last full minute
            by_minute[minute][entry["n"]].append(entry["ms"])
            by_minute[minute]["ALL"].append(entry["ms"])
            if not entry["ok"]:
                failures[minute][entry["n"]] += 1
                failures[minute]["ALL"] += 1
    names = sorted({n for m in by_minute.values() for n in m if n != "ALL"}) + ["ALL"]
    width = max(len(n) for n in names)
    print(f"\n{'endpoint':<{width}}  min     req/s   p50 ms   p99 ms  fail")
    for name in names:
        for minute in range(minutes):
            values = by_minute[minute].get(name, [])
            if not values:
                continue
            print(
                f"{name if minute == 0 else '':<{width}}  {minute + 1:>3}  {len(values) / 60:>8.2f}"
                f"  {percentile(values, 0.5):>7.1f}  {percentile(values, 0.99):>7.1f}"
                f"  {failures[minute].get(name, 0):>4}"
            )
    reasons = []
    total_failures = sum(f.get("ALL", 0) for f in failures.values())
    if total_failures:
        reasons.append(f"{total_failures} failed requests")
    first = by_minute[0].get("ALL", [])
    last = by_minute[minutes - 1].get("ALL", [])
    if not first or not last:
        reasons.append("no requests in the first or last minute")
    else:
        p99_first, p99_last = percentile(first, 0.99), percentile(last, 0.99)
        ratio = p99_last / p99_first
        print(
            f"\np99 all requests: first minute {p99_first:.1f} ms, last minute {p99_last:.1f} ms, "
            f"ratio {ratio:.2f} (limit {P99_CREEP_LIMIT})"
        )
        if ratio > P99_CREEP_LIMIT:
            reasons.append(f"p99 crept up {ratio:.2f}x")
    return not reasons, reasons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=10, help="measured minutes")
    parser.add_argument("--quick", action="store_true", help="1 minute")
    parser.add_argument("--users", type=int, default=24, help="simulated clients")
    parser.add_argument("--spawn-rate", type=float, default=24, help="clients started per second")
    parser.add_argument("--warmup", type=float, default=10, help="unmeasured seconds first")
    parser.add_argument("--tenants", type=int, default=8, help="tenants the clients spread over")
    parser.add_argument(
        "--fresh", action="store_true", help="drop the tenants' records and rollups first"
    )
    parser.add_argument("--workers", type=int, default=None, help="server workers")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker")
    parser.add_argument(
        "--server",
        default=os.environ.get("WEB_SERVER") or "granian",
        choices=["granian", "gunicorn"],
        help="web server (default: $WEB_SERVER or granian, as make run)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL URL (default: $DATABASE_URL)",
    )
    parser.add_argument("--show-server-log", action="store_true", help="server output")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 1
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")
    args.access_log = False

    simulate._django_setup(args.database_url)
    raw_keys, key_ids, tenant_ids = prepare_database(args.tenants, args.fresh)
    records_before = record_count(tenant_ids)
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    plans_path = workdir / "plans.json"
    plans_path.write_text(json.dumps(simulate.plan_mix()))
    log_path = workdir / "requests.jsonl"
    port = simulate.free_port()
    metrics_dir = tempfile.mkdtemp(prefix="bench-prom-")
    env = simulate.server_env(args, port, metrics_dir)
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    server = simulate.start_server(args, env)
    run_seconds = int(args.warmup + args.minutes * 60)
    try:
        print(
            f"{simulate.describe_workers(env, args.server)}; {args.users} locust clients"
            f" over {args.tenants} tenants; "
            f"{args.warmup:g} s warm-up, then {args.minutes} measured minute(s)"
        )
        server_cpu_before = simulate.server_cpu_seconds(server)
        launched = time.time()
        locust = subprocess.run(
            [
                LOCUST,
                "-f",
                str(HERE / "locustfile.py"),
                "--headless",
                "--host",
                f"http://127.0.0.1:{port}",
                "--users",
                str(args.users),
                "--spawn-rate",
                str(args.spawn_rate),
                "--run-time",
                f"{run_seconds}s",
                "--stop-timeout",
                "10",
                "--only-summary",
                "--loglevel",
                "WARNING",
            ],
            cwd=BASE_DIR,
            env={
                **os.environ,
                "COSTWISE_API_KEY": ",".join(raw_keys),
                "COSTWISE_LOAD_PLANS": str(plans_path),
                "COSTWISE_LOAD_LOG": str(log_path),
            },
            capture_output=True,
            text=True,
        )
        server_cpu = simulate.server_cpu_seconds(server) - server_cpu_before
    finally:
        simulate.stop_server(server)
        for key_id in key_ids:
            simulate.revoke_key(key_id)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    locust_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if locust.returncode not in (0, 1):  # 1: some requests failed; the table says which
        print(locust.stdout[-3000:], locust.stderr[-3000:])
        raise SystemExit(f"locust exited with {locust.returncode}")
    failures_text = (
        locust.stdout.split("Error report")[-1] if "Error report" in locust.stdout else ""
    )
    passed, reasons = report(log_path, launched + args.warmup, args.minutes)
    with open(log_path) as handle:
        total = sum(1 for _ in handle)
    print(
        f"requests: {total:,} in {run_seconds} s (warm-up included); server CPU "
        f"{server_cpu:.0f} s, locust CPU {locust_cpu.ru_utime + locust_cpu.ru_stime:.0f} s"
    )
    records_after = record_count(tenant_ids)
    print(f"cost records of the tenants: {records_before:,} before, {records_after:,} after")
    if failures_text.strip():
        print("locust error report:" + failures_text[:3000])
    shutil.rmtree(workdir, ignore_errors=True)
    print("VERDICT: " + ("PASS" if passed else "FAIL (" + "; ".join(reasons) + ")"))
    if not passed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
