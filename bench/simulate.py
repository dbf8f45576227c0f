"""Throughput and latency of POST /api/v1/costsim/simulate/ with the V2 sandbox on.

Starts the web server as `make run` does (config/webserver.py: granian by default, or
gunicorn with config/gunicorn.conf.py; --server picks one) against DATABASE_URL
(COSTSIM_V2_SANDBOX=true, so every request runs V1, the breaker check, V2, the comparison,
the two breaker reports and one provenance INSERT), drives it with concurrent keep-alive
clients (they reconnect when a server closes the connection, as gunicorn's sync workers do)
on a realistic plan mix taken from the reference datasets, and prints requests/s, p50/p99
latency and the error count. The server's workers and threads are its defaults
(WEB_CONCURRENCY and WEB_THREADS or GUNICORN_THREADS, unless --workers/--threads say
otherwise), access log off, Prometheus in multiprocess mode.

Reference, measured in the same run on the same plans: the pure estimators in-process
(estimate_v1 + estimate_v2 + compare, results serialised, one core). The ratio says how
much of the pure engine speed survives HTTP, authentication, validation, the breaker and
provenance. Reference and HTTP load alternate over --rounds, so a change of load on a
shared machine lands on both. CPU per request is printed for the web server, for the
PostgreSQL backends serving it and for the load generator, next to the whole host's busy
CPU: on a busy host these are steadier than wall-clock figures, and they show where the two
cores go. The load generator writes each request as prepared bytes on a raw socket and
reads the answer by its Content-Length, so it spends little of the two cores the server
needs (a real deployment's clients are on other machines).

The breaker drift threshold is raised to 1.0 for the server so drift reports never trip
it: otherwise the run would measure the cheap "V2 disabled" path after the first trip.

    .venv/bin/python bench/simulate.py            # 4 rounds of 6 s at 16 clients
    .venv/bin/python bench/simulate.py --quick    # 2 rounds of 3 s, a smoke run
    .venv/bin/python bench/simulate.py --server gunicorn          # gunicorn, 5 sync workers
    .venv/bin/python bench/simulate.py --server gunicorn --threads 8 --workers 2  # gthread
"""

import argparse
import http.client
import json
import multiprocessing
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Other scripts in bench/ (one is named statistics.py) would shadow standard-library
# modules imported later, so the script's own folder leaves the path.
sys.path[:] = [
    entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).parent.resolve()
]
sys.path.insert(0, str(BASE_DIR))

BENCH_TENANT = "bench-simulate"
GUNICORN_CONF = BASE_DIR / "config" / "gunicorn.conf.py"
PYTHON = str(BASE_DIR / ".venv" / "bin" / "python")
ENDPOINTS = {"simulate": "/api/v1/costsim/simulate/", "v1": "/api/v1/costsim/v1/simulate/"}
# Bodies above this are left out of the mix: the 100 000-character prompt of the noise
# dataset measures JSON parsing of 100 KB, not the simulation path.
MAX_BODY_BYTES = 8_192


def _django_setup(database_url: str) -> None:
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def plan_mix() -> list[dict]:
    """Request bodies: every dataset sample the API accepts, plus allowlists and run ids."""
    from costsim.services.datasets import DATASETS

    bodies = []
    for dataset in DATASETS.values():
        for sample in dataset.samples:
            if not sample.plan:
                continue
            body = {"plan": sample.plan, "budget_cents": sample.budget_cents}
            if len(json.dumps(body)) > MAX_BODY_BYTES:
                continue
            bodies.append(body)
    # Callers that restrict skills and tag runs, as agents calling before a run do.
    for index, body in enumerate(list(bodies[::3])):
        skills = sorted({step["skill"] for step in body["plan"]})
        bodies.append({**body, "allowed_skills": skills, "run_id": f"bench-run-{index}"})
    return bodies


def reference_rate(bodies: list[dict], seconds: float) -> float:
    """Plans per second through estimate_v1 + estimate_v2 + compare, one core, in-process."""
    from costsim.services.drift import compare
    from costsim.services.estimators import estimate_v1, estimate_v2

    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for body in bodies:
            kwargs = {
                "budget_cents": body["budget_cents"],
                "allowed_skills": body.get("allowed_skills"),
            }
            v1 = estimate_v1(body["plan"], **kwargs)
            v2 = estimate_v2(body["plan"], **kwargs)
            # The HTTP path serialises both results; the reference does too.
            json.dumps({"v1": v1.to_dict(), "v2": v2.to_dict(), "c": compare(v1, v2).to_dict()})
            done += 1
    return done / (time.perf_counter() - started)


def prepare_database() -> tuple[str, int, int]:
    """Migrate, create the bench tenant and a fresh key; return (raw key, key id, tenant id)."""
    from django.core.management import call_command

    from analytics.models import Tenant
    from analytics.services.tenants import api_key_create, tenant_create
    from costsim.models import BREAKER_NAME, CircuitBreaker

    call_command("migrate", interactive=False, verbosity=0)
    tenant = Tenant.objects.filter(slug=BENCH_TENANT).first() or tenant_create(
        slug=BENCH_TENANT, name="simulate benchmark"
    )
    api_key, raw_key = api_key_create(tenant=tenant, name="bench/simulate.py")
    breaker = CircuitBreaker.objects.get(name=BREAKER_NAME)
    if breaker.disabled:
        sys.exit(
            "The circuit breaker is open in this database; the run would not exercise V2. "
            "Enable it (admin or POST /costsim/breaker/enable/) and start again."
        )
    return raw_key, api_key.pk, tenant.pk


def revoke_key(key_id: int) -> None:
    from django.utils import timezone

    from analytics.models import ApiKey

    ApiKey.objects.filter(pk=key_id).update(revoked_at=timezone.now())


def provenance_since(tenant_id: int, first_id: int) -> int:
    from costsim.models import Provenance

    return Provenance.objects.filter(tenant_id=tenant_id, id__gt=first_id).count()


def last_provenance_id() -> int:
    from django.db.models import Max

    from costsim.models import Provenance

    return Provenance.objects.aggregate(top=Max("id"))["top"] or 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(args, port: int, metrics_dir: str | None) -> dict[str, str]:
    """The environment the web server runs with."""
    env = {
        **os.environ,
        "DATABASE_URL": args.database_url,
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "COSTSIM_V2_SANDBOX": "true",
        "COSTSIM_DRIFT_THRESHOLD": "1.0",
        "WEB_SERVER": args.server,
        "WEB_BIND": f"127.0.0.1:{port}",
    }
    for name in ("PROMETHEUS_MULTIPROC_DIR", "WEB_ACCESS_LOG", "GUNICORN_ACCESS_LOG"):
        env.pop(name, None)
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if args.workers is not None:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads is not None:
        env["GUNICORN_THREADS" if args.server == "gunicorn" else "WEB_THREADS"] = str(args.threads)
    if args.access_log:
        # The server's output goes to a file nobody reads; every line is still formatted.
        env["GUNICORN_ACCESS_LOG" if args.server == "gunicorn" else "WEB_ACCESS_LOG"] = "-"
    return env


def start_server(args, env: dict[str, str]) -> subprocess.Popen:
    from config.webserver import web_bind, web_command, web_environment

    port = int(web_bind(env).rpartition(":")[2])
    # A file, not a pipe: nobody reads the server's output while it runs, and a full pipe
    # would block the workers.
    log = tempfile.TemporaryFile()  # noqa: SIM115 - must outlive this function, like the server
    server = subprocess.Popen(
        web_command(PYTHON, env),
        cwd=BASE_DIR,
        env=web_environment(env),
        stdout=None if args.show_server_log else log,
        stderr=None if args.show_server_log else log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace")[-3000:]
            raise SystemExit(f"{args.server} exited with {server.returncode}:\n{tail}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/api/health/")
            if conn.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    stop_server(server)
    raise SystemExit(f"{args.server} did not answer /api/health/ within 60 s")


def stop_server(server: subprocess.Popen) -> None:
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.pid, signal.SIGKILL)


def _request_bytes(path: str, raw_key: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Api-Key {raw_key}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


class _Connection:
    """One keep-alive HTTP/1.1 client connection on a raw socket.

    Requests are prepared bytes; an answer is read by its Content-Length (or chunks), so the
    load generator parses nothing it does not need. Reconnects after `Connection: close`.
    """

    def __init__(self, port: int):
        self.port = port
        self.sock: socket.socket | None = None
        self.buffer = b""

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buffer = b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            body = self._chunked()
        else:
            length = int(headers.get(b"content-length", b"0"))
            while len(self.buffer) < length:
                self._fill()
            body, self.buffer = self.buffer[:length], self.buffer[length:]
        if headers.get(b"connection", b"").lower() == b"close":
            self.close()
        return status, body

    def _chunked(self) -> bytes:
        parts = []
        while True:
            while b"\r\n" not in self.buffer:
                self._fill()
            size_line, _, self.buffer = self.buffer.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(self.buffer) < size + 2:
                self._fill()
            parts.append(self.buffer[:size])
            self.buffer = self.buffer[size + 2 :]
            if size == 0:
                return b"".join(parts)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buffer += data


def _client_process(port, path, raw_key, bodies, threads, start_at, stop_at, queue):
    """Run `threads` keep-alive clients until stop_at; put their latencies and counts."""
    import threading

    prepared = [_request_bytes(path, raw_key, json.dumps(body).encode()) for body in bodies]
    sandbox_path = ENDPOINTS["simulate"]
    results = []

    def worker(offset: int) -> None:
        latencies: list[float] = []
        errors = 0
        shadowed = 0  # answers with a V2 result: one provenance row each
        codes: dict[int, int] = {}
        conn = _Connection(port)
        index = offset
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            request = prepared[index % len(prepared)]
            index += 7  # a different stride per thread interleaves the mix
            began = time.perf_counter()
            try:
                status, payload = conn.exchange(request)
            except (OSError, ValueError, IndexError):
                conn.close()
                status, payload = 0, b""
            latencies.append(time.perf_counter() - began)
            # /v1/simulate/ answers the bare V1 result; the sandbox must have run V2.
            ok = status == 200 and (path != sandbox_path or b'"v2_error":null' in payload)
            shadowed += ok and path == sandbox_path
            errors += not ok
            codes[status] = codes.get(status, 0) + 1
        conn.close()
        results.append((latencies, errors, codes, shadowed))

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    codes: dict[int, int] = {}
    for r in results:
        for code, count in r[2].items():
            codes[code] = codes.get(code, 0) + count
    queue.put(
        (
            [value for r in results for value in r[0]],
            sum(r[1] for r in results),
            codes,
            sum(r[3] for r in results),
        )
    )


def server_cpu_seconds(server: subprocess.Popen) -> float:
    """User + system CPU of the web server's main process and its workers so far."""
    import psutil

    master = psutil.Process(server.pid)
    return _cpu_seconds([master, *master.children(recursive=True)])


def _cpu_seconds(processes) -> float:
    import psutil

    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def database_backends() -> list:
    """The PostgreSQL backends connected to the bench database (the server's connections).

    Only readable when PostgreSQL runs on this host under a user whose processes this one
    may inspect; otherwise an empty list, and the figure is left out.
    """
    import psutil
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    backends = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.cpu_times()
        except psutil.Error:
            continue
        backends.append(process)
    return backends


def host_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole host so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal ...
    busy = sum(fields[:8]) - fields[3] - fields[4] - fields[7]
    return busy / ticks, fields[7] / ticks


def children_cpu_seconds() -> float:
    """CPU of the finished children of this process: the load generator's processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def drive(args, port: int, raw_key: str, bodies: list[dict], seconds: float) -> dict:
    """Load the server for `seconds` with args.clients connections; return the figures."""
    processes = max(1, args.client_processes)
    per_process = max(1, args.clients // processes)
    start_at = time.time() + 0.5
    stop_at = start_at + seconds
    queue = multiprocessing.Queue()
    children = [
        multiprocessing.Process(
            target=_client_process,
            args=(
                port,
                ENDPOINTS[args.endpoint],
                raw_key,
                bodies,
                per_process,
                start_at,
                stop_at,
                queue,
            ),
        )
        for _ in range(processes)
    ]
    for child in children:
        child.start()
    collected = [queue.get() for _ in children]
    for child in children:
        child.join()
    codes: dict[int, int] = {}
    for c in collected:
        for code, count in c[2].items():
            codes[code] = codes.get(code, 0) + count
    return {
        "latencies": [value for c in collected for value in c[0]],
        "errors": sum(c[1] for c in collected),
        "codes": codes,
        "shadowed": sum(c[3] for c in collected),
        "seconds": seconds,
    }


def describe_workers(env: dict[str, str], server: str) -> str:
    """What the server runs: its configuration evaluated with the server's environment."""
    import runpy
    from unittest import mock

    from config.webserver import web_command

    if server == "granian":
        command = web_command(PYTHON, env)
        workers = command[command.index("--workers") + 1]
        threads = command[command.index("--blocking-threads") + 1]
        return f"granian: {workers} workers x {threads} thread(s); access log off"
    with mock.patch.dict(os.environ, env, clear=True):
        conf = runpy.run_path(str(GUNICORN_CONF))
    if conf["worker_class"] == "gthread":
        workers = f"{conf['workers']} gthread workers x {conf['threads']} threads"
    else:
        workers = f"{conf['workers']} {conf['worker_class']} workers"
    return f"gunicorn: {workers}; access log {'on' if conf['accesslog'] else 'off'}"


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s, 1 s warm-up")
    parser.add_argument("--rounds", type=int, default=4, help="reference/HTTP alternations")
    parser.add_argument("--duration", type=float, default=6.0, help="HTTP seconds per round")
    parser.add_argument("--reference-seconds", type=float, default=2.0, help="per round")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    # Few threads per load process: a Python client queueing for its own GIL would add
    # that wait to the latencies it measures.
    parser.add_argument("--client-processes", type=int, default=4, help="load processes")
    parser.add_argument(
        "--workers", type=int, default=None, help="server workers (default: the server's)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per worker; gunicorn: 1 = sync workers (default: the server's)",
    )
    parser.add_argument("--access-log", action="store_true", help="turn the server's access log on")
    parser.add_argument(
        "--no-multiprocess-metrics",
        action="store_true",
        help="single-process Prometheus registry instead of PROMETHEUS_MULTIPROC_DIR",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", ""),
        help="PostgreSQL URL (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--endpoint",
        default="simulate",
        choices=sorted(ENDPOINTS),
        help="simulate (V1 + V2 shadow + provenance) or v1 (V1 only, no database work)",
    )
    parser.add_argument(
        "--server",
        default=os.environ.get("WEB_SERVER") or "granian",
        choices=["granian", "gunicorn"],
        help="web server (default: $WEB_SERVER or granian, as make run)",
    )
    parser.add_argument("--show-server-log", action="store_true", help="server output")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.reference_seconds, args.warmup = 2, 3.0, 1.0, 1.0
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")

    _django_setup(args.database_url)
    bodies = plan_mix()
    print(f"plan mix: {len(bodies)} bodies, {sum(len(b['plan']) for b in bodies)} steps")
    print("load average before: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    raw_key, key_id, tenant_id = prepare_database()
    first_id = last_provenance_id()
    port = free_port()
    metrics_dir = None if args.no_multiprocess_metrics else tempfile.mkdtemp(prefix="bench-prom-")
    env = server_env(args, port, metrics_dir)
    server = start_server(args, env)
    rounds = []
    try:
        print(
            f"{describe_workers(env, args.server)}; metrics "
            f"{'single-process' if metrics_dir is None else 'multiprocess'}; "
            f"{args.clients} clients in {args.client_processes} processes on "
            f"{ENDPOINTS[args.endpoint]}; "
            f"{args.rounds} rounds of {args.duration:g} s after {args.warmup:g} s warm-up"
        )
        warmup = drive(args, port, raw_key, bodies, args.warmup)
        backends = database_backends()
        for number in range(1, args.rounds + 1):
            reference = reference_rate(bodies, seconds=args.reference_seconds)
            cpu_before = server_cpu_seconds(server)
            db_before = _cpu_seconds(backends)
            clients_before = children_cpu_seconds()
            host_before = host_cpu_seconds()
            result = drive(args, port, raw_key, bodies, args.duration)
            host_after = host_cpu_seconds()
            result["server_cpu"] = server_cpu_seconds(server) - cpu_before
            result["db_cpu"] = _cpu_seconds(backends) - db_before
            result["client_cpu"] = children_cpu_seconds() - clients_before
            result["host_cpu"] = host_after[0] - host_before[0]
            result["steal"] = host_after[1] - host_before[1]
            result["reference"] = reference
            rounds.append(result)
            rate = len(result["latencies"]) / args.duration
            print(
                f"  round {number}: {rate:,.0f} simulations/s, reference "
                f"{reference:,.0f} plans/s, ratio {rate / reference:.3f}"
            )
    finally:
        stop_server(server)
        revoke_key(key_id)
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    latencies = sorted(value for r in rounds for value in r["latencies"])
    measured_seconds = args.duration * len(rounds)
    rate = len(latencies) / measured_seconds
    reference = sum(r["reference"] for r in rounds) / len(rounds)
    codes: dict[int, int] = {}
    for r in rounds:
        for code, count in r["codes"].items():
            codes[code] = codes.get(code, 0) + count
    errors = sum(r["errors"] for r in rounds)
    shadowed = warmup["shadowed"] + sum(r["shadowed"] for r in rounds)
    requests = max(len(latencies), 1)

    def per_request_ms(key: str) -> float:
        return 1000 * sum(r[key] for r in rounds) / requests

    cpu_ms = per_request_ms("server_cpu")
    written = provenance_since(tenant_id, first_id)

    print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(f"requests measured: {len(latencies):,} ({codes})")
    print(
        f"throughput: {rate:,.0f} simulations/s   p50 {1000 * percentile(latencies, 0.5):.1f} ms"
        f"   p99 {1000 * percentile(latencies, 0.99):.1f} ms"
    )
    print(f"errors (non-200 or v2_error set): {errors}")
    print(
        f"server CPU per request: {cpu_ms:.2f} ms "
        f"(so {os.cpu_count()} cores serve at most {1000 * (os.cpu_count() or 1) / cpu_ms:,.0f}/s "
        "with nothing else running)"
    )
    host_ms = per_request_ms("host_cpu")
    known = cpu_ms + per_request_ms("db_cpu") + per_request_ms("client_cpu")
    print(
        f"CPU per request: server {cpu_ms:.2f} ms, PostgreSQL backends "
        f"{per_request_ms('db_cpu'):.2f} ms, load generator {per_request_ms('client_cpu'):.2f} ms; "
        f"whole host {host_ms:.2f} ms busy (other processes {max(host_ms - known, 0):.2f} ms), "
        f"{per_request_ms('steal'):.2f} ms stolen by the hypervisor"
    )
    if args.endpoint == "simulate":
        print(
            f"provenance rows written: {written:,} for {shadowed:,} shadowed answers "
            f"(warm-up included){'' if written == shadowed else '  MISMATCH'}"
        )
    print(f"reference (pure V1 + V2 + compare, 1 core, mean of rounds): {reference:,.0f} plans/s")
    print(f"RATIO HTTP simulations/s : in-process engine plans/s = {rate / reference:.3f}")


if __name__ == "__main__":
    main()
