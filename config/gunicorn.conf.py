"""gunicorn settings: `gunicorn -c config/gunicorn.conf.py`.

GUNICORN_BIND (default 127.0.0.1:8000), WEB_CONCURRENCY (workers, default 2),
GUNICORN_TIMEOUT (seconds, default 30).
"""

import os

wsgi_app = "config.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
accesslog = "-"
# Workers must not share the parent's database connections or metric files.
preload_app = False


def child_exit(server, worker) -> None:
    # A dead worker's live gauges must leave the multiprocess aggregate; its counters stay.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
