"""Budget reservations against a live server: overshoot under contention, then throughput.

Starts the web server exactly as bench/simulate.py does (config/webserver.py, the server
`make run` starts: granian unless --server or $WEB_SERVER says gunicorn; the helpers are that
script's) and runs two parts.

1. Overshoot. Each of --overshoot-rounds rounds creates a fresh hard daily feature budget
   (limit 100 cents, some of it already spent by cost records), then fires
   --burst reservations of 1..30 cents at it at the same instant from --clients
   connections in --client-processes processes. A watcher reads spend + held reservations
   of the budget over its own connection throughout. Overshoot is the most the allowed
   reservations plus the spend ever went past the limit, by the sum of what was allowed
   and by every reading of the watcher. For hard budgets it must be 0.

2. Throughput. --clients keep-alive connections (bench/simulate.py's raw-socket client)
   loop over reserve + release against a tenant with a hard tenant, feature and user budget
   (all three are locked and read on every reserve) and --records cost records this month,
   so the spend query does real work. Reported: requests/s (reserves and releases), p50/p99
   of each, errors, and the server's and PostgreSQL's CPU per request. Reference, measured
   in the same run and alternated with the HTTP load: the same reserve + release pairs
   through the services in this process (one core, one connection). The ratio (HTTP
   reserves/s to in-process pairs/s) says how much of the service's own speed survives
   HTTP, authentication, validation and 16-way contention on the same budget rows.

    .venv/bin/python bench/reserve.py            # 40 overshoot rounds; 4 x 6 s of load
    .venv/bin/python bench/reserve.py --quick    # a smoke run
"""

import argparse
import http.client
import importlib.util
import json
import multiprocessing
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [
    entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).parent.resolve()
]
sys.path.insert(0, str(BASE_DIR))

_spec = importlib.util.spec_from_file_location("bench_simulate", BASE_DIR / "bench" / "simulate.py")
sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sim)

BENCH_TENANT = "bench-reserve"
RESERVE = "/api/v1/budgets/reserve/"
RELEASE = "/api/v1/budgets/reservations/{id}/release/"
LIMIT_CENTS = 100


def prepare_database(records: int) -> tuple[str, int, int]:
    """Migrate; the bench tenant with its budgets and this month's records; a fresh key."""
    from django.core.management import call_command
    from django.utils import timezone

    from analytics.models import Budget, BudgetType, CostRecord, Tenant
    from analytics.services.tenants import api_key_create, tenant_create

    call_command("migrate", interactive=False, verbosity=0)
    tenant = Tenant.objects.filter(slug=BENCH_TENANT).first() or tenant_create(
        slug=BENCH_TENANT, name="reserve benchmark"
    )
    api_key, raw_key = api_key_create(tenant=tenant, name="bench/reserve.py")
    big = 10**11  # never refuses: the throughput part measures the allowed path
    for budget_type, entity_id in (
        (BudgetType.TENANT, None),
        (BudgetType.FEATURE, "bench-load"),
        (BudgetType.USER, "bench-user"),
    ):
        Budget.objects.update_or_create(
            tenant=tenant,
            budget_type=budget_type,
            entity_id=entity_id,
            defaults={
                "daily_limit_cents": big,
                "monthly_limit_cents": big,
                "hard_limit_enabled": True,
                "is_active": True,
            },
        )
    now = timezone.now()
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    have = CostRecord.objects.filter(tenant=tenant, created_at__gte=month_start).count()
    if have < records:
        span = max((now - month_start).total_seconds(), 1)
        rng = random.Random(7)
        CostRecord.objects.bulk_create(
            [
                CostRecord(
                    tenant=tenant,
                    model="gpt-4o-mini",
                    feature_tag=rng.choice(["bench-load", "search", "chat"]),
                    user_id=rng.choice(["bench-user", "u-2", "u-3", "u-4"]),
                    cost_cents=Decimal(rng.randint(1, 500)) / 100,
                    created_at=month_start + timedelta(seconds=rng.random() * span),
                    ingested_at=now,
                )
                for _ in range(records - have)
            ],
            batch_size=5000,
        )
    # Hourly snapshots of the month's closed hours, as the :05 job leaves them: the spend
    # of those hours is read from their aggregates, the open hour from records.
    from analytics.models import CostSnapshot
    from analytics.services.snapshots import snapshot_compute

    hour = month_start
    current_hour = now.replace(minute=0, second=0, microsecond=0)
    while hour < current_hour:
        if not CostSnapshot.objects.filter(
            tenant=tenant,
            snapshot_type="hourly",
            period_start=hour,
            status="complete",
            is_stale=False,
        ).exists():
            snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=hour)
        hour += timedelta(hours=1)
    # Fresh statistics, as autovacuum leaves them on a live database: with none on the
    # month's partition the planner probes the records of a held reservation through an
    # index on the tenant alone, every record of the month per open reservation.
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE analytics_costrecord")
        cursor.execute("ANALYZE analytics_budgetreservation")
    return raw_key, api_key.pk, tenant.pk


# --- part 1: overshoot ------------------------------------------------------------------------


def _burst_process(port, raw_key, bodies, threads, start_at, queue):
    """Send `bodies` from `threads` connections at `start_at`; put (amount, allowed) pairs."""
    headers = {"Authorization": f"Api-Key {raw_key}", "Content-Type": "application/json"}
    answers, errors, lock = [], [], threading.Lock()

    def worker(share):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/api/health/")
        conn.getresponse().read()
        while time.time() < start_at:
            time.sleep(0.0002)
        for body in share:
            try:
                conn.request("POST", RESERVE, body=json.dumps(body), headers=headers)
                response = conn.getresponse()
                payload = json.loads(response.read())
                if response.status not in (200, 201):
                    raise RuntimeError(f"{response.status}: {payload}")
                with lock:
                    answers.append((body["amount_cents"], payload["allowed"]))
            except Exception as exc:
                conn.close()
                with lock:
                    errors.append(repr(exc))

    pool = [threading.Thread(target=worker, args=(bodies[n::threads],)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put((answers, errors))


def overshoot_round(args, port, raw_key, tenant_id, number, rng) -> dict:
    from django.db import connection
    from django.utils import timezone

    from analytics.models import Budget, BudgetReservation, BudgetType, CostRecord
    from analytics.selectors.budgets import budgets_usage

    feature = f"bench-round-{os.getpid()}-{number}"
    budget = Budget.objects.create(
        tenant_id=tenant_id,
        budget_type=BudgetType.FEATURE,
        entity_id=feature,
        daily_limit_cents=LIMIT_CENTS,
        hard_limit_enabled=True,
    )
    spent = rng.choice([0, 0, 13, 42, 77, 99])
    if spent:
        CostRecord.objects.create(
            tenant_id=tenant_id,
            model="gpt-4o-mini",
            feature_tag=feature,
            cost_cents=Decimal(spent),
            created_at=timezone.now() - timedelta(seconds=5),
            ingested_at=timezone.now(),
        )
    bodies = [
        {
            "amount_cents": rng.randint(1, 30),
            "feature_tag": feature,
            "request_id": f"{feature}-{index}",
            "ttl_seconds": 600,
        }
        for index in range(args.burst)
    ]
    processes = max(1, args.client_processes)
    per_process = max(1, args.clients // processes)
    start_at = time.time() + 0.8
    queue = multiprocessing.Queue()
    children = [
        multiprocessing.Process(
            target=_burst_process,
            args=(port, raw_key, bodies[n::processes], per_process, start_at, queue),
        )
        for n in range(processes)
    ]
    seen: list[Decimal] = []
    done = threading.Event()

    def watch():
        try:
            while not done.is_set():
                usage = budgets_usage(budget_ids=[budget.pk], at=timezone.now())[budget.pk]
                seen.append(usage.day_spend + usage.reserved_cents)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    for child in children:
        child.start()
    watcher.start()
    collected = [queue.get() for _ in children]
    for child in children:
        child.join()
    time.sleep(0.05)
    done.set()
    watcher.join()
    # Hand the round's budget back: open reservations also count against the tenant's
    # budget, and the throughput part should not read hundreds of leftovers.
    BudgetReservation.objects.filter(
        tenant_id=tenant_id, feature_tag=feature, status=BudgetReservation.Status.OPEN
    ).update(status=BudgetReservation.Status.RELEASED, closed_at=timezone.now())
    answers = [a for c in collected for a in c[0]]
    errors = [e for c in collected for e in c[1]]
    allowed = sum(amount for amount, ok in answers if ok)
    by_sum = spent + allowed - LIMIT_CENTS
    by_watch = max(seen, default=Decimal(0)) - LIMIT_CENTS
    return {
        "overshoot": max(Decimal(0), Decimal(by_sum), by_watch),
        "allowed": sum(1 for _, ok in answers if ok),
        "answers": len(answers),
        "errors": errors,
        "readings": len(seen),
        "headroom": LIMIT_CENTS - spent - allowed,
    }


# --- part 2: throughput -----------------------------------------------------------------------


def _load_process(port, raw_key, threads, start_at, stop_at, queue):
    """Reserve + release in a loop on keep-alive connections; put both latencies."""
    results, lock = [], threading.Lock()

    def worker(offset):
        reserves, releases, errors = [], [], 0
        conn = sim._Connection(port)
        number = 0
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            number += 1
            body = json.dumps(
                {
                    "amount_cents": 25,
                    "feature_tag": "bench-load",
                    "user_id": "bench-user",
                    "request_id": f"load-{os.getpid()}-{offset}-{number}-{start_at}",
                    "ttl_seconds": 60,
                }
            ).encode()
            began = time.perf_counter()
            try:
                code, answer = conn.exchange(sim._request_bytes(RESERVE, raw_key, body))
                reserved = time.perf_counter()
                reserves.append(reserved - began)
                if code != 201:
                    errors += 1
                    continue
                path = RELEASE.format(id=json.loads(answer)["reservation_id"])
                code, _ = conn.exchange(sim._request_bytes(path, raw_key, b""))
                releases.append(time.perf_counter() - reserved)
                errors += code != 200
            except (OSError, ValueError, KeyError):
                conn.close()
                errors += 1
        conn.close()
        with lock:
            results.append((reserves, releases, errors))

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    queue.put(
        (
            [v for r in results for v in r[0]],
            [v for r in results for v in r[1]],
            sum(r[2] for r in results),
        )
    )


def drive(args, port, raw_key, seconds) -> dict:
    processes = max(1, args.client_processes)
    per_process = max(1, args.clients // processes)
    start_at = time.time() + 0.5
    queue = multiprocessing.Queue()
    children = [
        multiprocessing.Process(
            target=_load_process,
            args=(port, raw_key, per_process, start_at, start_at + seconds, queue),
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    collected = [queue.get() for _ in children]
    for child in children:
        child.join()
    return {
        "latencies": [v for c in collected for v in c[0]],
        "releases": [v for c in collected for v in c[1]],
        "errors": sum(c[2] for c in collected),
    }


def _cpu_by_process(processes) -> dict[int, float]:
    import psutil

    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def reference_rate(tenant_id: int, seconds: float) -> float:
    """Reserve + release pairs per second through the services, in this process."""
    from analytics.models import Tenant
    from analytics.services.reservations import budget_reserve, reservation_release

    tenant = Tenant.objects.get(pk=tenant_id)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        outcome = budget_reserve(
            tenant=tenant,
            amount_cents=25,
            ttl_seconds=60,
            feature_tag="bench-load",
            user_id="bench-user",
            request_id=f"ref-{done}",
        )
        reservation_release(tenant=tenant, reservation_id=outcome.reservation.pk)
        done += 1
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--overshoot-rounds", type=int, default=40)
    parser.add_argument("--burst", type=int, default=50, help="reservations per round")
    parser.add_argument("--rounds", type=int, default=4, help="reference/HTTP alternations")
    parser.add_argument("--duration", type=float, default=6.0, help="HTTP seconds per round")
    parser.add_argument("--reference-seconds", type=float, default=2.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--records", type=int, default=20_000, help="cost records this month")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--access-log", action="store_true")
    parser.add_argument("--show-server-log", action="store_true")
    # Passed through to bench/simulate.py's server start, which reads them.
    parser.add_argument(
        "--server",
        default=os.environ.get("WEB_SERVER") or "granian",
        choices=["granian", "gunicorn"],
        help="web server (default: $WEB_SERVER or granian, as make run)",
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""))
    args = parser.parse_args()
    if args.quick:
        args.overshoot_rounds, args.rounds, args.duration = 5, 2, 3.0
        args.reference_seconds, args.warmup = 1.0, 1.0
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")

    sim._django_setup(args.database_url)
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    raw_key, key_id, tenant_id = prepare_database(args.records)
    port = sim.free_port()
    metrics_dir = tempfile.mkdtemp(prefix="bench-prom-")
    env = sim.server_env(args, port, metrics_dir)
    server = sim.start_server(args, env)
    rng = random.Random(13)
    try:
        workers = sim.describe_workers(env, args.server)
        print(
            f"{args.server}: {workers}; {args.clients} clients in "
            f"{args.client_processes} processes; {args.records:,} records this month"
        )
        worst, allowed, answers, errors, readings = Decimal(0), 0, 0, [], 0
        for number in range(1, args.overshoot_rounds + 1):
            result = overshoot_round(args, port, raw_key, tenant_id, number, rng)
            worst = max(worst, result["overshoot"])
            allowed += result["allowed"]
            answers += result["answers"]
            errors += result["errors"]
            readings += result["readings"]
        print(
            f"overshoot: {args.overshoot_rounds} rounds of {args.burst} concurrent reservations "
            f"(1-30 cents) against a hard 100-cent day: {allowed} of {answers} allowed, "
            f"{readings:,} watcher readings, {len(errors)} errors"
        )
        for error in errors[:5]:
            print(f"  error: {error}")
        print(f"LARGEST OVERSHOOT: {worst} cents (must be 0)")

        sim_rounds = []
        drive(args, port, raw_key, args.warmup)
        for number in range(1, args.rounds + 1):
            reference = reference_rate(tenant_id, args.reference_seconds)
            # Read each round: the server's connections are replaced after CONN_MAX_AGE.
            backends = sim.database_backends()
            cpu_before = sim.server_cpu_seconds(server)
            db_before = _cpu_by_process(backends)
            result = drive(args, port, raw_key, args.duration)
            result["server_cpu"] = sim.server_cpu_seconds(server) - cpu_before
            db_after = _cpu_by_process(backends)
            # Backends that exited in between (a closed connection) are left out.
            result["db_cpu"] = sum(
                db_after[pid] - db_before[pid] for pid in db_after.keys() & db_before.keys()
            )
            result["reference"] = reference
            sim_rounds.append(result)
            rate = len(result["latencies"]) / args.duration
            requests = (len(result["latencies"]) + len(result["releases"])) / args.duration
            print(
                f"  round {number}: {requests:,.0f} requests/s ({rate:,.0f} reserves/s + "
                f"releases), reference {reference:,.0f} pairs/s, ratio {rate / reference:.3f}, "
                f"errors {result['errors']}"
            )
    finally:
        sim.stop_server(server)
        sim.revoke_key(key_id)
        shutil.rmtree(metrics_dir, ignore_errors=True)

    latencies = sorted(v for r in sim_rounds for v in r["latencies"])
    releases = sorted(v for r in sim_rounds for v in r["releases"])
    seconds = args.duration * len(sim_rounds)
    rate = len(latencies) / seconds
    requests = len(latencies) + len(releases)
    reference = sum(r["reference"] for r in sim_rounds) / len(sim_rounds)
    load_errors = sum(r["errors"] for r in sim_rounds)
    cpu_ms = 1000 * sum(r["server_cpu"] for r in sim_rounds) / max(requests, 1)
    db_ms = 1000 * sum(r["db_cpu"] for r in sim_rounds) / max(requests, 1)
    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        f"throughput: {requests / seconds:,.0f} requests/s ({rate:,.0f} reserves/s and as many "
        f"releases)   errors {load_errors}"
    )
    print(
        f"reserve p50 {1000 * sim.percentile(latencies, 0.5):.1f} ms"
        f"   p99 {1000 * sim.percentile(latencies, 0.99):.1f} ms;"
        f"   release p50 {1000 * sim.percentile(releases, 0.5):.1f} ms"
        f"   p99 {1000 * sim.percentile(releases, 0.99):.1f} ms"
    )
    print(
        f"CPU per request: {args.server} {cpu_ms:.2f} ms"
        + (f", PostgreSQL {db_ms:.2f} ms" if backends else ", PostgreSQL not readable")
    )
    print(f"reference (services in-process, reserve + release): {reference:,.0f} pairs/s")
    print(f"RATIO HTTP reserves/s : in-process pairs/s = {rate / reference:.3f}")


if __name__ == "__main__":
    main()
