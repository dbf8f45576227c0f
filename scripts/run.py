"""Run costwise locally: web server, Celery worker and beat, on http://127.0.0.1:8000/.

`make run` calls this. It writes a git-ignored `.env` with a random DJANGO_SECRET_KEY if
there is none, resolves the database once (starting the embedded PostgreSQL when
DATABASE_URL is unset) and hands the URL to every child, empties the Prometheus
multiprocess directory, migrates, seeds the demo tenant, creates the `admin` operator
(password printed once), then starts gunicorn, a Celery worker and Celery beat.

Ctrl-C (SIGINT) or SIGTERM stops every child, waits for them, and only then lets the
embedded database stop. If one child dies, the others are stopped too and the exit
status is non-zero.

Options: --no-seed skips seed_demo; --runserver uses Django's development server instead
of gunicorn (auto-reload, DEBUG-style static files when DJANGO_DEBUG is on).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

ENV_FILE = BASE_DIR / ".env"
METRICS_DIR = BASE_DIR / ".data" / "prometheus"
# Celery's warm shutdown lets a running task finish; do not wait forever for it.
STOP_TIMEOUT = 20.0
READY_TIMEOUT = 120.0


class Launcher:
    def __init__(self) -> None:
        self.children: dict[str, subprocess.Popen] = {}
        self.stop_requested = False

    def request_stop(self, signum: int, frame: object) -> None:
        if not self.stop_requested:
            print(f"\n[run] {signal.Signals(signum).name}: stopping...", flush=True)
        self.stop_requested = True

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        # A session of its own: the terminal's Ctrl-C reaches only this launcher, which
        # then stops each child in order instead of everything at once.
        proc = subprocess.Popen(argv, cwd=BASE_DIR, env=env, start_new_session=True)
        self.children[name] = proc
        return proc

    def step(self, name: str, argv: list[str], env: dict[str, str]) -> bool:
        """Run one set-up command to completion; False if it failed or a stop came first."""
        print(f"[run] {name}: {' '.join(argv[1:])}", flush=True)
        proc = self.spawn(name, argv, env)
        while proc.poll() is None:
            if self.stop_requested:
                self.stop_all()
                return False
            time.sleep(0.1)
        del self.children[name]
        if proc.returncode != 0:
            print(f"[run] {name} failed with exit status {proc.returncode}", flush=True)
            return False
        return True

    def supervise(self, health_url: str) -> int:
        started = time.monotonic()
        up = False
        while not self.stop_requested:
            for name, proc in self.children.items():
                if proc.poll() is not None:
                    print(f"[run] {name} exited with status {proc.returncode}", flush=True)
                    self.stop_all()
                    return 1
            if not up and _answers(health_url):
                up = True
                elapsed = time.monotonic() - started
                print(
                    f"[run] costwise is up on {health_url.removesuffix('api/health/')} "
                    f"({elapsed:.1f}s); Ctrl-C stops it",
                    flush=True,
                )
            elif not up and time.monotonic() - started > READY_TIMEOUT:
                print(f"[run] no answer from {health_url} after {READY_TIMEOUT:.0f}s", flush=True)
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
    if not launcher.step("migrate", [*manage, "migrate", "--noinput"], env):
        return 1
    seed = not args.no_seed and _has_command("seed_demo")
    if seed and not launcher.step("seed_demo", [*manage, "seed_demo"], env):
        return 1
    if not launcher.step("operator", [*manage, "create_operator"], env):
        return 1

    bind = env.get("GUNICORN_BIND", "127.0.0.1:8000")
    if args.runserver:
        launcher.spawn("web", [*manage, "runserver", bind], env)
    else:
        gunicorn_conf = str(BASE_DIR / "config" / "gunicorn.conf.py")
        launcher.spawn("web", [python, "-m", "gunicorn", "-c", gunicorn_conf], env)
    celery = [python, "-m", "celery", "-A", "config"]
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
    launcher.spawn(
        "beat",
        [
            *celery,
            "beat",
            "--loglevel=INFO",
            "--scheduler=django_celery_beat.schedulers:DatabaseScheduler",
        ],
        env,
    )
    status = launcher.supervise(f"http://{bind}/api/health/")
    print("[run] all processes stopped", flush=True)
    return status


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
