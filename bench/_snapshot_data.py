"""Shared pieces of the snapshot and statistics benches (not a bench itself).

Sets Django up against DATABASE_URL (or the embedded server), creates a scratch tenant,
fills it with synthetic cost records generated inside PostgreSQL (generate_series, so
millions of rows cost no Python time) and removes everything again.
"""

import os
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Production settings (DEBUG off) so Django does not keep every query in memory.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
os.environ.setdefault("DJANGO_DEBUG", "0")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

from analytics.models import Tenant  # noqa: E402
from analytics.services.tenants import tenant_create  # noqa: E402

MODELS = ["gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "claude-3-5-haiku", "gemini-1.5-pro"]
FEATURES = ["chat", "search", "summarize", "extract", "unclassified"]

# Deterministic synthetic traffic: record i lands at start + i * span / n, so rows are evenly
# spread and arrive in time order, as ingested traffic does. Every 6th record is untagged,
# every 9th anonymous; users, features and models are spread by multiplicative hashing.
_GENERATE = """
INSERT INTO analytics_costrecord
    (tenant_id, user_id, feature_tag, model, provider, input_tokens, output_tokens,
     cost_cents, is_retry, created_at, ingested_at)
SELECT %(tenant)s,
       CASE WHEN i %% 9 = 0 THEN NULL ELSE 'user-' || ((i * 2654435761) %% %(users)s) END,
       CASE WHEN i %% 6 = 0 THEN NULL ELSE (%(features)s::text[])[1 + (i * 40503) %% 5] END,
       (%(models)s::text[])[1 + (i * 69069) %% 5],
       'bench',
       (i * 31) %% 4000,
       (i * 17) %% 800,
       ((i * 7919) %% 250000) / 10000.0,
       i %% 23 = 0,
       %(start)s + make_interval(secs => i * %(step)s),
       %(start)s + make_interval(secs => i * %(step)s)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

# Tables holding rows of the scratch tenant, children first (the foreign keys have no
# ON DELETE CASCADE in the database).
_CLEANUP_TABLES = (
    "analytics_anomalyevaluation",
    "analytics_anomaly",
    "analytics_baseline",
    "analytics_snapshotaggregate",
    "analytics_costsnapshot",
    "analytics_costrecord",
    "analytics_runrecord",
    "analytics_apikey",
)


def log(message: str) -> None:
    print(message, flush=True)


def check_migrated() -> None:
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        sys.exit("The database has unapplied migrations; run `manage.py migrate` first.")


def scratch_tenant(prefix: str) -> Tenant:
    return tenant_create(slug=f"{prefix}-{secrets.token_hex(3)}")


def generate_records(
    *, tenant: Tenant, count: int, start: datetime, span_seconds: float, users: int = 1000
) -> float:
    """Insert `count` records evenly over [start, start + span); return the seconds taken."""
    began = time.perf_counter()
    chunk = 500_000
    with connection.cursor() as cursor:
        for first in range(0, count, chunk):
            last = min(first + chunk, count) - 1
            cursor.execute(
                _GENERATE,
                {
                    "tenant": tenant.pk,
                    "users": users,
                    "features": FEATURES,
                    "models": MODELS,
                    "start": start,
                    "step": span_seconds / count,
                    "first": first,
                    "last": last,
                },
            )
            log(f"  generated {last + 1:,} / {count:,} records")
        # Rows deleted by earlier runs would otherwise still be scanned, and fresh rows need
        # their visibility bits set before index-only scans pay off.
        cursor.execute("VACUUM ANALYZE analytics_costrecord")
    return time.perf_counter() - began


def analyze_snapshot_tables() -> None:
    """What autovacuum does for a live deployment: fresh planner statistics."""
    with connection.cursor() as cursor:
        for table in (
            "analytics_costsnapshot",
            "analytics_snapshotaggregate",
            "analytics_baseline",
        ):
            cursor.execute(f"VACUUM ANALYZE {table}")


def cleanup(tenant: Tenant) -> None:
    with connection.cursor() as cursor:
        for table in _CLEANUP_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM analytics_tenant WHERE id = %s", [tenant.pk])
        for table in _CLEANUP_TABLES[:5]:
            cursor.execute(f"VACUUM ANALYZE {table}")
    log(f"cleanup: removed scratch tenant {tenant.slug} and its rows")


def timed(function: Callable[[], object], repeat: int) -> list[float]:
    """Wall-clock milliseconds of `repeat` calls."""
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        samples.append((time.perf_counter() - began) * 1000)
    return samples


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(pct) - 1]


def run_sql(sql: str, params: dict) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        cursor.fetchall()
