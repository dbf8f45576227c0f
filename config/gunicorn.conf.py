"""gunicorn settings: `gunicorn -c config/gunicorn.conf.py` (WEB_SERVER=gunicorn; granian is
the default web server, config/webserver.py).

GUNICORN_BIND (default 127.0.0.1:8000), WEB_CONCURRENCY (workers, default 5),
GUNICORN_THREADS (threads per worker, default 1 = sync workers; more selects gthread),
GUNICORN_TIMEOUT (seconds, default 30), GUNICORN_ACCESS_LOG (access log file, "-" for
stdout; default off).

Sync workers, 2 x 2 cores + 1 of them, served the simulate endpoint best on the 2-core
host: the same throughput as gthread workers at the same CPU per request, and a p99 two to
three times lower, because a process serves one request at a time instead of its threads
queueing for one GIL (docs/performance.md, shadow simulation). They close the connection after each
response and are killed after GUNICORN_TIMEOUT, so a deployment that streams long exports
to slow clients without a buffering proxy in front should set GUNICORN_THREADS above 1.
"""

import os

wsgi_app = "config.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Empty counts as unset, as in .env.example.
workers = int(os.environ.get("WEB_CONCURRENCY") or "5")
threads = int(os.environ.get("GUNICORN_THREADS") or "1")
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT") or "30")
# One formatted line per request costs several percent of a worker's CPU; request counts
# and latencies are in the django-prometheus metrics.
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
# Workers must not share the parent's database connections or metric files.
preload_app = False


def child_exit(server, worker) -> None:
    # A dead worker's live gauges must leave the multiprocess aggregate; its counters stay.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
