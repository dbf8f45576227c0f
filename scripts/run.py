"""Run costwise locally: web server, Celery worker and beat, on http://127.0.0.1:8000/.

`make run` calls this. It writes a git-ignored `.env` with a random DJANGO_SECRET_KEY if
there is none, resolves the database once (starting the embedded PostgreSQL when
DATABASE_URL is unset) and hands the URL to every child, empties the Prometheus
multiprocess directory, migrates, seeds the demo tenant, creates the `admin` operator
(password printed once), then starts the web server (granian, or gunicorn with
WEB_SERVER=gunicorn; config/webserver.py), a Celery worker and Celery beat. Once the
web server answers and the worker and beat are up, it prints one summary (URLs, the demo
API key and the admin login, or how to get new ones) as the last start-up output.

The console stays readable: the web server and beat log warnings and errors only, the
worker logs at INFO without Celery's lines about the alert outbox that runs every 10 s
(config/celery.py, RoutineTaskFilter). WEB_BIND (or GUNICORN_BIND; default 127.0.0.1:8000)
moves the server to another address.

Ctrl-C (SIGINT) or SIGTERM stops every child, waits for them, and only then lets the
embedded database stop. If one child dies, the others are stopped too and the exit
status is non-zero.

Options: --no-seed skips seed_demo; --runserver uses Django's development server instead
of the web server (auto-reload, DEBUG-style static files when DJANGO_DEBUG is on).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

ENV_FILE = BASE_DIR / ".env"
METRICS_DIR = BASE_DIR / ".data" / "prometheus"
# Celery's warm shutdown lets a running task finish; do not wait forever for it.
STOP_TIMEOUT = 20.0
READY_TIMEOUT = 120.0
# The worker and beat touch these files in COSTWISE_READY_DIR once up (config/celery.py).
READY_MARKS = ("worker", "beat")
MARK_SETTLE = 0.5
OPERATOR = "admin"
DEMO_TENANT = "demo"
# What seed_demo and create_operator print before the one-time secrets.
DEMO_KEY_MARKER = "API key of the demo tenant (shown once):"
LOGIN_PREFIX = "Admin login: "


class StepFailed(Exception):
    """A set-up command failed, or a stop was requested while it ran."""


class Launcher:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen] = {}
        self.stop_requested = False

    def request_stop(self, signum: int, frame: object) -> None:
        if not self.stop_requested:
            print(f"\n[run] {signal.Signals(signum).name}: stopping...", flush=True)
        self.stop_requested = True

    def spawn(
        self, name: str, argv: list[str], env: dict[str, str], *, capture: bool = False
    ) -> subprocess.Popen:
        # A session of its own: the terminal's Ctrl-C reaches only this launcher, which
        # then stops each child in order instead of everything at once.
        proc = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE if capture else None,
            text=capture,
        )
        self.children[name] = proc
        return proc

    def step(self, name: str, argv: list[str], env: dict[str, str]) -> list[str]:
        """Run one set-up command to completion, echoing its output; return its stdout lines.

        Raise StepFailed if it fails or a stop is requested first.
        """
        print(f"[run] {name}: {' '.join(argv[1:])}", flush=True)
        proc = self.spawn(name, argv, env, capture=True)
        lines: list[str] = []
        echo = threading.Thread(target=_echo_lines, args=(proc.stdout, lines), daemon=True)
        echo.start()
        while proc.poll() is None:
            if self.stop_requested:
                self.stop_all()
                raise StepFailed(name)
            time.sleep(0.1)
        echo.join()
        del self.children[name]
        if proc.returncode != 0:
            print(f"[run] {name} failed with exit status {proc.returncode}", flush=True)
            raise StepFailed(name)
        return lines

    # complexity: one poll loop watches for a stop, a child's exit, readiness and the ready timeout
    def supervise(self, health_url: str, ready_dir: Path, on_ready: Callable[[float], None]) -> int:
        """Watch the children until a stop; call `on_ready(seconds)` once all are up.

        Up means the web server answers `health_url` and the worker and beat have marked
        `ready_dir`. A child that exits stops the others; the status is then 1.
        """
        started = time.monotonic()
        up = False
        while not self.stop_requested:
            for name, proc in self.children.items():
                if proc.poll() is not None:
                    print(f"[run] {name} exited with status {proc.returncode}", flush=True)
                    self.stop_all()
                    return 1
            if not up and _all_marked(ready_dir) and _answers(health_url):
                up = True
                on_ready(time.monotonic() - started)
            elif not up and time.monotonic() - started > READY_TIMEOUT:
                waiting = [m for m in READY_MARKS if not (ready_dir / m).exists()]
                if not _answers(health_url):
                    waiting.insert(0, f"an answer from {health_url}")
                print(
                    f"[run] not up after {READY_TIMEOUT:.0f}s; waiting for {', '.join(waiting)}",
                    flush=True,
                )
                self.stop_all()
                return 1
            time.sleep(0.2)
        self.stop_all()
        return 0

    def stop_all(self) -> None:
        for proc in self.children.values():
            _signal_group(proc, signal.SIGTERM, leader_only=True)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc in self.children.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[run] {name} did not stop in {STOP_TIMEOUT:.0f}s; killing it", flush=True)
                proc.kill()
                proc.wait()
            # Pool processes and workers share the child's process group; none may outlive it.
            _signal_group(proc, signal.SIGKILL, leader_only=False)
        self.children.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-seed", action="store_true", help="skip seed_demo")
    parser.add_argument("--runserver", action="store_true", help="use manage.py runserver")
    args = parser.parse_args(argv)

    launcher = Launcher()
    # Installed before the database starts, so config.database keeps these handlers.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, launcher.request_stop)

    dotenv_ensure(ENV_FILE)
    from config.env import load_dotenv

    load_dotenv(ENV_FILE)

    env = dict(os.environ)
    metrics_dir = Path(env.get("PROMETHEUS_MULTIPROC_DIR") or METRICS_DIR)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir_reset(metrics_dir))
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    env["PYTHONUNBUFFERED"] = "1"

    from config.database import resolve_database_url

    started = time.monotonic()
    # The one owner of the embedded server: children get its URL and never start their own.
    env["DATABASE_URL"] = resolve_database_url()
    if "DATABASE_URL" not in os.environ:
        print(f"[run] embedded PostgreSQL ready in {time.monotonic() - started:.1f}s", flush=True)

    python = sys.executable
    manage = [python, "manage.py"]
    seed = not args.no_seed and _has_command("seed_demo")
    try:
        launcher.step("migrate", [*manage, "migrate", "--noinput"], env)
        seeded = launcher.step("seed_demo", [*manage, "seed_demo"], env) if seed else None
        operator = launcher.step(
            "operator", [*manage, "create_operator", "--username", OPERATOR], env
        )
    except StepFailed:
        return 1

    from config.webserver import web_bind, web_command, web_environment

    bind = web_bind(env)
    if args.runserver:
        launcher.spawn("web", [*manage, "runserver", bind], env)
    else:
        try:
            command = web_command(python, env)
        except ValueError as exc:
            print(f"[run] {exc}", flush=True)
            launcher.stop_all()
            return 1
        launcher.spawn("web", command, web_environment(env))
    ready_dir = Path(tempfile.mkdtemp(prefix="costwise-run-"))
    env["COSTWISE_READY_DIR"] = str(ready_dir)
    # --quiet drops the banners; a start-up problem is still logged as an error.
    celery = [python, "-m", "celery", "-A", "config", "--quiet"]
    # One local worker has no peers: gossip, mingle and event heartbeats would only leave
    # messages for dead workers' queues behind in the file-system broker.
    launcher.spawn(
        "worker",
        [
            *celery,
            "worker",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env,
    )
    # Beat's INFO lines are one "Sending due task" per job run; the worker logs the runs.
    launcher.spawn(
        "beat",
        [
            *celery,
            "beat",
            "--loglevel=WARNING",
            "--scheduler=django_celery_beat.schedulers:DatabaseScheduler",
        ],
        env,
    )

    def on_ready(elapsed: float) -> None:
        text = summary(
            base_url=base_url(bind),
            elapsed=elapsed,
            api_key=demo_key_from(seeded) if seeded is not None else None,
            seeded=seeded is not None,
            login=operator_login_from(operator),
            manage=manage_hint(),
        )
        print(text, flush=True)

    try:
        status = launcher.supervise(f"http://{bind}/api/health/", ready_dir, on_ready)
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)
    print("[run] all processes stopped", flush=True)
    return status


def summary(
    *,
    base_url: str,
    elapsed: float,
    api_key: str | None,
    seeded: bool,
    login: str | None,
    manage: str,
) -> str:
    """The block printed once everything is up: where things are and how to get in.

    `api_key` and `login` are the secrets this run created (None when they already
    existed, as on every run after the first); without them the block says which command
    makes new ones.
    """
    if login is not None:
        admin_login = login
    else:
        admin_login = f"{OPERATOR} (new password: {manage} changepassword {OPERATOR})"
    if api_key is not None:
        key = f"{api_key}  (tenant {DEMO_TENANT}; shown only on this first run)"
    elif seeded:
        key = f"new key for tenant {DEMO_TENANT}: {manage} create_api_key {DEMO_TENANT}"
    else:
        key = f"{manage} create_tenant <slug> (new tenant) or create_api_key <slug>"
    rows = [
        ("API", f"{base_url}api/v1/"),
        ("API docs", f"{base_url}api/docs/"),
        ("Admin", f"{base_url}admin/"),
        ("Admin login", admin_login),
        ("API key", key),
        ("Metrics", f"{base_url}metrics"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = [
        "",
        f"== costwise is up ({elapsed:.1f}s); Ctrl-C stops it",
        *(f"   {label.ljust(width)}  {value}" for label, value in rows),
        "",
    ]
    return "\n".join(lines)


def demo_key_from(lines: list[str]) -> str | None:
    """The API key seed_demo printed after DEMO_KEY_MARKER, or None (the tenant had one)."""
    for marker, key in zip(lines, lines[1:], strict=False):
        if marker.strip() == DEMO_KEY_MARKER:
            return key.strip() or None
    return None


def operator_login_from(lines: list[str]) -> str | None:
    """`user / password` as create_operator printed it, or None (the operator existed)."""
    for line in lines:
        if line.startswith(LOGIN_PREFIX):
            return line.removeprefix(LOGIN_PREFIX).strip()
    return None


def base_url(bind: str) -> str:
    """The URL a browser on this machine opens for the web server's `host:port`."""
    host, _, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/"


def manage_hint() -> str:
    """How to call manage.py with this interpreter, as the user would type it here."""
    try:
        python = Path(sys.executable).relative_to(BASE_DIR)
    except ValueError:
        python = Path(sys.executable)
    return f"{python} manage.py"


def dotenv_ensure(path: Path) -> None:
    """Append a random DJANGO_SECRET_KEY to `path` unless it or the environment has one."""
    existing = path.read_text() if path.exists() else ""
    has_key = any(line.strip().startswith("DJANGO_SECRET_KEY=") for line in existing.splitlines())
    if has_key or os.environ.get("DJANGO_SECRET_KEY"):
        return
    header = "" if existing else "# Local settings for `make run`; git-ignored, never commit.\n"
    separator = "\n" if existing and not existing.endswith("\n") else ""
    with open(path, "a") as fh:
        fh.write(f"{separator}{header}DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\n")
    path.chmod(0o600)
    print(f"[run] wrote a new DJANGO_SECRET_KEY to {path.name}", flush=True)


def metrics_dir_reset(path: Path) -> Path:
    """Create `path` and delete its metric files: counters must start from a clean slate."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path


def _echo_lines(stream, lines: list[str]) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        lines.append(line.rstrip("\n"))


def _all_marked(ready_dir: Path) -> bool:
    # Each mark must have settled: the worker logs its own "ready" line just after marking.
    now = time.time()
    try:
        ages = [now - (ready_dir / mark).stat().st_mtime for mark in READY_MARKS]
    except FileNotFoundError:
        return False
    return min(ages) >= MARK_SETTLE


def _has_command(name: str) -> bool:
    return any(BASE_DIR.glob(f"*/management/commands/{name}.py"))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _signal_group(proc: subprocess.Popen, signum: int, *, leader_only: bool) -> None:
    try:
        if leader_only:
            proc.send_signal(signum)
        else:
            os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main())
