"""Detection-to-delivery latency of notifications on the default beat schedule.

Starts a real Celery worker and Celery beat (database scheduler, the schedule of
`config/settings.py`, where the dispatcher runs every 10 s) against DATABASE_URL and the
broker of REDIS_URL, a local webhook receiver that verifies every message's Standard
Webhooks signature, and tenants whose cost history holds a spike yesterday, each with a
webhook channel and an immediate rule. At random moments (gaps of 0.5 to 9.6 s, so events
land at every phase of the 10 s tick) it runs one tenant's real detection
(`anomalies_detect`, which opens the incident and queues its delivery in one transaction)
and reads the wall clock when that run starts and when it has committed; the receiver
reads the wall clock when the verified message arrives. Latency is arrival minus commit
("from detection"), and arrival minus the run's start. p50, p95 and max are printed
against the 60 s target.

Reference, measured in the same run on the same kind of event: detection followed at once
by the dispatcher in this process, with no beat wait, i.e. what queueing and sending cost
without the schedule. The ratio p95(beat) / p95(reference) says how much of the latency
the schedule adds.

    .venv/bin/python bench/notify_latency.py            # 24 events on the schedule, 8 direct
    .venv/bin/python bench/notify_latency.py --quick    # 8 and 4
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path[:] = [
    entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).parent.resolve()
]
sys.path.insert(0, str(BASE_DIR))

PREFIX = "bench-notify-"
TARGET_P95_S = 60.0


class Receiver:
    """Verified webhooks on 127.0.0.1; `arrivals[incident id]` is the wall-clock arrival."""

    def __init__(self, secret: str):
        from standardwebhooks.webhooks import Webhook

        self.arrivals: dict[int, float] = {}
        self.rejected = 0
        receiver = self
        verifier = Webhook(secret)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802 (http.server naming)
                at = time.time()
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                headers = {key.lower(): value for key, value in self.headers.items()}
                try:
                    payload = verifier.verify(body, headers)
                except Exception:  # noqa: BLE001 - a bad signature is counted, not raised
                    receiver.rejected += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                incident = payload.get("data", {}).get("incident", {}).get("id")
                if incident is not None:
                    receiver.arrivals.setdefault(incident, at)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _django_setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ["NOTIFY_ALLOW_PRIVATE_URLS"] = "true"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _tenants(count: int, receiver: Receiver, secret: str) -> list:
    """`count` fresh tenants, each with yesterday's spike, a webhook channel and a rule."""
    from datetime import UTC, datetime

    from analytics.models import Tenant
    from notifications.models import Channel, Rule
    from tests.analytics.factories import outlier_history
    from tests.factories import TenantFactory

    # Cost records protect their tenant, so earlier runs' tenants stay, switched off.
    Tenant.objects.filter(slug__startswith=PREFIX).update(is_active=False)
    run = f"{int(time.time()):x}"
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    tenants = []
    for n in range(count):
        tenant = TenantFactory(slug=f"{PREFIX}{run}-{n}")
        outlier_history(tenant, yesterday)
        channel = Channel.objects.create(
            tenant=tenant, name="bench", kind="webhook", url=receiver.url, secret=secret
        )
        Rule.objects.create(tenant=tenant, channel=channel, events=["incident.opened"])
        tenants.append(tenant)
    return tenants


def _detect(tenant) -> tuple[int | None, float, float]:
    """Run detection; return (opened incident id, start, commit) wall-clock times."""
    from analytics.services.anomalies import anomalies_detect

    started = time.time()
    result = anomalies_detect(tenant=tenant)
    committed = time.time()
    opened = [incident.pk for incident in result["incidents"]]
    return (opened[0] if opened else None), started, committed


def _start_celery(env: dict, ready_dir: Path) -> list[subprocess.Popen]:
    celery = [sys.executable, "-m", "celery", "-A", "config", "--quiet"]
    commands = [
        [
            *celery,
            "worker",
            "--loglevel=WARNING",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        [
            *celery,
            "beat",
            "--loglevel=WARNING",
            "--scheduler=django_celery_beat.schedulers:DatabaseScheduler",
            f"--schedule={ready_dir / 'beat-schedule'}",
        ],
    ]
    processes = [
        subprocess.Popen(command, cwd=BASE_DIR, env=env, start_new_session=True)
        for command in commands
    ]
    deadline = time.monotonic() + 90
    while not all((ready_dir / mark).exists() for mark in ("worker", "beat")):
        if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
            _stop(processes)
            raise SystemExit("worker or beat did not start")
        time.sleep(0.2)
    return processes


def _stop(processes: list[subprocess.Popen]) -> None:
    # SIGTERM to the main process is Celery's warm shutdown: the running task finishes.
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for(receiver: Receiver, ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(i in receiver.arrivals for i in ids):
        time.sleep(0.1)


def _summary(latencies: list[float]) -> dict:
    ordered = sorted(latencies)
    p95 = (
        statistics.quantiles(ordered, n=20, method="inclusive")[-1]
        if len(ordered) > 1
        else ordered[0]
    )
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(p95, 3),
        "max_s": round(ordered[-1], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=24, help="events on the beat schedule")
    parser.add_argument("--direct", type=int, default=8, help="reference events (no beat)")
    parser.add_argument("--quick", action="store_true", help="8 events and 4 references")
    parser.add_argument("--seed", type=int, default=12)
    args = parser.parse_args()
    if args.quick:
        args.events, args.direct = 8, 4
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        raise SystemExit("DATABASE_URL is required")
    _django_setup(database_url)
    from notifications.services.channels import secret_generate
    from notifications.services.outbox import deliveries_dispatch

    secret = secret_generate()
    receiver = Receiver(secret)
    tenants = _tenants(args.events + args.direct, receiver, secret)
    scheduled, direct = tenants[: args.events], tenants[args.events :]
    rng = random.Random(args.seed)

    ready_dir = Path(tempfile.mkdtemp(prefix="bench-notify-"))
    env = {**os.environ, "COSTWISE_READY_DIR": str(ready_dir)}
    processes = _start_celery(env, ready_dir)
    events: list[tuple[int, float, float]] = []
    try:
        for tenant in scheduled:
            time.sleep(rng.uniform(0.5, 9.6))
            incident, started, committed = _detect(tenant)
            if incident is not None:
                events.append((incident, started, committed))
        _wait_for(receiver, [e[0] for e in events], timeout=120)
    finally:
        _stop(processes)

    references: list[tuple[int, float, float]] = []
    for tenant in direct:
        incident, started, committed = _detect(tenant)
        deliveries_dispatch()
        if incident is not None:
            references.append((incident, started, committed))
    _wait_for(receiver, [e[0] for e in references], timeout=10)

    def latencies(rows, start_index):
        return [
            receiver.arrivals[row[0]] - row[start_index]
            for row in rows
            if row[0] in receiver.arrivals
        ]

    beat_commit = _summary(latencies(events, 2))
    beat_start = _summary(latencies(events, 1))
    reference = _summary(latencies(references, 2))
    missing = len(events) - beat_commit["n"]
    result = {
        "events": len(events),
        "undelivered": missing,
        "rejected_signatures": receiver.rejected,
        "beat_from_commit": beat_commit,
        "beat_from_run_start": beat_start,
        "reference_direct_dispatch": reference,
        "ratio_p95_beat_vs_reference": round(beat_commit["p95_s"] / reference["p95_s"], 1),
        "target_p95_s": TARGET_P95_S,
        "met": missing == 0 and beat_start["p95_s"] < TARGET_P95_S,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result, indent=2))

    from analytics.models import Tenant

    # Switched off so that no scheduled job works on them later.
    Tenant.objects.filter(slug__startswith=PREFIX).update(is_active=False)


if __name__ == "__main__":
    main()
