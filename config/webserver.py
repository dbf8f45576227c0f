"""The web server's command line: granian (the default) or gunicorn.

`make run` (scripts/run.py) and bench/simulate.py start the server with `web_command`, so a
benchmark measures what a deployment runs. The environment chooses:

WEB_SERVER          granian (default) or gunicorn
WEB_BIND            host:port, default 127.0.0.1:8000 (GUNICORN_BIND is still read)
WEB_CONCURRENCY     worker processes (granian default 2, gunicorn default 5)
WEB_THREADS         threads per granian worker serving the application (default 1)
WEB_ACCESS_LOG      granian: any value turns the access log on (to stderr)

gunicorn's own settings (GUNICORN_THREADS, GUNICORN_TIMEOUT, GUNICORN_ACCESS_LOG) stay in
config/gunicorn.conf.py.

Why granian: its HTTP layer is Rust, so parsing a request and writing the answer cost the
Python process almost nothing, and it keeps connections alive where gunicorn's sync workers
close each one after the answer. On the 2-core host the simulate endpoint took about 0.9 ms
less worker CPU per request (docs/performance.md, shadow simulation). One thread per worker
for the same reason the gunicorn workers are sync: threads of one process queue for its GIL.
Two workers, one per core: a worker is busy only while it computes (waits for PostgreSQL are
short), and more processes on two cores only add context switches. gunicorn remains for a
deployment that needs what granian's WSGI mode lacks: a per-request timeout that restarts a
stuck worker (GUNICORN_TIMEOUT).
"""

import os
from collections.abc import Mapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SERVERS = ("granian", "gunicorn")
DEFAULT_BIND = "127.0.0.1:8000"
DEFAULT_WORKERS = {"granian": 2, "gunicorn": 5}


def web_server(env: Mapping[str, str] = os.environ) -> str:
    """The server WEB_SERVER names; ValueError for an unknown one."""
    name = (env.get("WEB_SERVER") or "granian").strip().lower()
    if name not in SERVERS:
        raise ValueError(f"WEB_SERVER must be one of {', '.join(SERVERS)}, not {name!r}")
    return name


def web_bind(env: Mapping[str, str] = os.environ) -> str:
    """host:port the server listens on."""
    return env.get("WEB_BIND") or env.get("GUNICORN_BIND") or DEFAULT_BIND


def web_command(python: str, env: Mapping[str, str] = os.environ) -> list[str]:
    """The command that serves config.wsgi with `python`, as configured by `env`.

    For gunicorn the bind address travels as GUNICORN_BIND (config/gunicorn.conf.py reads
    it), so the caller passes web_environment(env) to the process.
    """
    server = web_server(env)
    if server == "gunicorn":
        return [
            python,
            "-m",
            "gunicorn",
            "-c",
            str(BASE_DIR / "config" / "gunicorn.conf.py"),
            "--log-level",
            "warning",
        ]
    host, _, port = web_bind(env).rpartition(":")
    command = [
        python,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "--host",
        host.strip("[]") or "127.0.0.1",
        "--port",
        port,
        "--workers",
        str(_positive(env, "WEB_CONCURRENCY", DEFAULT_WORKERS["granian"])),
        "--blocking-threads",
        str(_positive(env, "WEB_THREADS", 1)),
        "--http",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        "--respawn-failed-workers",
        "--working-dir",
        str(BASE_DIR),
    ]
    command.append("--access-log" if env.get("WEB_ACCESS_LOG") else "--no-access-log")
    command.append("config.wsgi:application")
    return command


def web_environment(env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`env` with the bind address where gunicorn's configuration looks for it."""
    return {**env, "GUNICORN_BIND": web_bind(env)}


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value
