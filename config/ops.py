"""Operations endpoints: liveness, readiness and the Prometheus scrape.

Plain Django views, unauthenticated, outside DRF: probes and scrapers must not depend on
API keys, throttles or content negotiation.
"""

import logging
import os
from collections.abc import Callable, Iterable

import prometheus_client
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from analytics.db import REPLICA_DB_ALIAS

logger = logging.getLogger(__name__)

# Seconds the readiness probe waits for the broker; a probe must answer quickly.
BROKER_TIMEOUT = 2.0

# Collectors that compute their metrics when /metrics is scraped (state gauges read from
# the database). Apps append to this list in AppConfig.ready(); they are not registered
# in the default registry, so multiprocess and single-process scrapes both see them once.
SCRAPE_COLLECTORS: list[Collector] = []


def register_scrape_collector(collector: Collector) -> Collector:
    """Add `collector` to the scrape-time collectors once; return it (usable as a decorator)."""
    if collector not in SCRAPE_COLLECTORS:
        SCRAPE_COLLECTORS.append(collector)
    return collector


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """Answer 200 while the process serves requests; touches nothing else."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def ready(request: HttpRequest) -> JsonResponse:
    """Answer 200 when the database, the broker and the migrations are fine, else 503."""
    checks = {
        "database": _check(_database_check),
        "broker": _check(_broker_check),
        "migrations": _check(_migrations_check),
    }
    if REPLICA_DB_ALIAS in connections.settings:
        checks["replica"] = _check(_replica_check)
    if all(result == "ok" for result in checks.values()):
        return JsonResponse({"status": "ready", "checks": checks})
    return JsonResponse({"status": "not_ready", "checks": checks}, status=503)


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the Prometheus text exposition.

    With PROMETHEUS_MULTIPROC_DIR set, the samples come from every process that writes to
    that directory (gunicorn workers, Celery worker, beat); otherwise from this process's
    default registry. Scrape-time collectors are added in both cases.
    """
    registry = prometheus_client.CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(prometheus_client.REGISTRY)
    for collector in SCRAPE_COLLECTORS:
        registry.register(_Isolated(collector))
    return HttpResponse(
        prometheus_client.generate_latest(registry),
        content_type=prometheus_client.CONTENT_TYPE_LATEST,
    )


class _Isolated:
    """Wrap a scrape-time collector so that its failure drops its metrics, not the scrape."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector

    def collect(self) -> Iterable:
        try:
            return list(self.collector.collect())
        except Exception:
            logger.exception("Scrape-time collector %r failed", self.collector)
            return []


def _check(probe: Callable[[], None]) -> str:
    try:
        probe()
    except Exception as exc:
        # One line: the text ends up in a JSON body read by humans and probes alike.
        text = " ".join(str(exc).split()) or type(exc).__name__
        return f"error: {text}"
    return "ok"


def _database_check(alias: str = DEFAULT_DB_ALIAS) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _replica_check() -> None:
    _database_check(REPLICA_DB_ALIAS)


def _broker_check() -> None:
    from config.celery import app

    with app.connection_for_write(
        connect_timeout=BROKER_TIMEOUT,
        transport_options={
            "socket_connect_timeout": BROKER_TIMEOUT,
            "socket_timeout": BROKER_TIMEOUT,
        },
    ) as conn:
        conn.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT
        )
        if conn.transport_cls == "filesystem":
            _filesystem_broker_check(conn.transport_options)


def _filesystem_broker_check(options: dict) -> None:
    # The file-system transport "connects" without touching the disk; what can break is
    # the queue folder, so check that it is there and writable.
    for key in ("data_folder_in", "data_folder_out"):
        folder = options.get(key)
        if not folder or not os.path.isdir(folder) or not os.access(folder, os.W_OK | os.X_OK):
            raise RuntimeError(f"broker folder {key}={folder!r} is missing or not writable")


def _migrations_check() -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        pending = ", ".join(f"{m.app_label}.{m.name}" for m, _ in plan[:5])
        more = f" and {len(plan) - 5} more" if len(plan) > 5 else ""
        raise RuntimeError(f"{len(plan)} unapplied migration(s): {pending}{more}")
