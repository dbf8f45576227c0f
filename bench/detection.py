"""Anomaly detection for many tenants against a raw SQL GROUP BY of the same rows.

    .venv/bin/python bench/detection.py [--tenants N] [--days D] [--per-day R] [--quick] [--keep]
    .venv/bin/python bench/detection.py --fan-out [--tenants N] [--workers W] ...

1. Creates N scratch tenants (`bench-det-<run>-<i>`, default 1000), each with D days
   (default 60) of R records a day (default 6) ending today, generated inside PostgreSQL:
   3 users, 3 features (one in six records untagged), 3 models, weekday seasonality, a
   daily tenant budget, and for one tenant in ten a spend surge over the last three days
   (so spikes, budget and statistical anomalies are really written, not only evaluated).
   Even tenants get a monthly budget they have exceeded, odd ones one at about 60 %.
2. Times the reference: one read-only `SELECT ... GROUP BY GROUPING SETS` giving the daily
   spend per tenant, user, feature and model over the detection look-back (40 days) for
   all scratch tenants: the minimum aggregation the rules need.
3. Runs detection as of yesterday once, untimed, so breach history exists as it would in
   production, then times `anomalies_detect_active_tenants` over the scratch tenants twice:
   a first run for today (anomalies created) and an identical second run (the hourly job's
   steady state: every anomaly updated in place).
4. Prints seconds, milliseconds per tenant and the ratio detection / reference; the target
   is a first run under 30 s for 1000 tenants.

With --fan-out (default 5000 tenants) steps 3-4 become: detection as of yesterday and a
first run for today inline (untimed), then the hourly job's steady state fanned out the way
beat runs it, as a Celery group of tenant chunks (`JOBS_CHUNK_SIZE`) on real workers: once on
1 worker process, then on --workers (2) processes, each timed from dispatch until the run is
settled. The anomalies and incidents must be identical after each run; the target is a
ratio W processes / 1 process of at most 0.6. The broker is the configured one (Redis with
REDIS_URL, else the file-system transport).

The scratch rows are removed at the end (unless --keep). The database must be migrated.
"""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# DEBUG off so Django does not keep every query of the run in memory.
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
os.environ.setdefault("DJANGO_DEBUG", "0")
# Fanned-out runs go to a queue of their own, so no other worker can take their chunks.
FAN_OUT_QUEUE = f"bench-jobs-{secrets.token_hex(4)}"
os.environ["JOBS_CHUNK_QUEUE"] = FAN_OUT_QUEUE

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402
from django.db.migrations.executor import MigrationExecutor  # noqa: E402

from analytics.models import Anomaly, JobRun, JobRunStatus, Tenant  # noqa: E402
from analytics.services.anomalies import (  # noqa: E402
    DETECT_ANOMALIES,
    anomalies_detect_active_tenants,
)
from analytics.services.job_runs import job_run_report  # noqa: E402
from analytics.services.jobs import JobReport  # noqa: E402

TARGET_SECONDS = 30.0
TARGET_FAN_OUT_RATIO = 0.6
LOOKBACK_DAYS = 40  # the longest window a rule reads: 28 history days before D - 1, plus slack

_TENANTS_SQL = """
INSERT INTO analytics_tenant (slug, name, is_active, created_at)
SELECT %(prefix)s || i, %(prefix)s || i, TRUE, now()
FROM generate_series(1, %(count)s) AS i
"""

# Record r of day d of tenant t: weekday traffic about twice the weekend's, a cost that
# varies deterministically with (t, d, r), and a 3x surge on the last three days of every
# tenth tenant.
_RECORDS_SQL = """
INSERT INTO analytics_costrecord
    (tenant_id, user_id, feature_tag, model, provider, input_tokens, output_tokens,
     cost_cents, is_retry, created_at, ingested_at)
SELECT t.id,
       'user-' || ((t.id + d.n + r) %% 3),
       CASE WHEN r %% 6 = 0 THEN NULL ELSE (ARRAY['chat', 'search', 'summarize'])[1 + r %% 3] END,
       (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-sonnet'])[1 + (t.id + r) %% 3],
       'bench',
       200 + (t.id * 7 + d.n * 13 + r * 31) %% 400,
       50 + (t.id + d.n + r) %% 100,
       (20 + (t.id * 31 + d.n * 17 + r * 7) %% 30)
           * CASE WHEN extract(isodow FROM d.day) >= 6 THEN 0.5 ELSE 1 END
           * CASE WHEN t.id %% 10 = 0 AND d.n < 3 THEN 3 ELSE 1 END,
       (t.id + d.n + r) %% 17 = 0,
       d.day + make_interval(mins => 30 + r * (1380 / %(per_day)s)),
       d.day + make_interval(mins => 30 + r * (1380 / %(per_day)s))
FROM analytics_tenant t
CROSS JOIN LATERAL (
    SELECT n, (date_trunc('day', %(today)s::timestamptz) - make_interval(days => n)) AS day
    FROM generate_series(0, %(days)s - 1) AS n
) d
CROSS JOIN generate_series(0, %(per_day)s - 1) AS r
WHERE t.slug LIKE %(pattern)s
  AND d.day + make_interval(mins => 30 + r * (1380 / %(per_day)s)) < %(today)s
"""

# Month-to-date spend is about 200 a day: even tenants exceed a limit of 150 a day, odd ones
# stay around 60 % of 350 a day.
_BUDGETS_SQL = """
INSERT INTO analytics_budget
    (tenant_id, budget_type, entity_id, daily_limit_cents, monthly_limit_cents,
     warn_threshold_pct, hard_limit_enabled, is_active, created_at, updated_at)
SELECT id, 'tenant', NULL, 1000,
       extract(day FROM %(today)s::timestamptz)::int * CASE WHEN id %% 2 = 0 THEN 150 ELSE 350 END,
       80, FALSE, TRUE, now(), now()
FROM analytics_tenant WHERE slug LIKE %(pattern)s
"""

REFERENCE_SQL = """
SELECT tenant_id, day, GROUPING(user_id), GROUPING(feature_tag), GROUPING(model),
       COALESCE(user_id, feature_tag, model), SUM(cost_cents)
FROM (
    SELECT r.tenant_id, (r.created_at AT TIME ZONE 'UTC')::date AS day, r.user_id,
           r.feature_tag, r.model, r.cost_cents
    FROM analytics_costrecord r
    JOIN analytics_tenant t ON t.id = r.tenant_id
    WHERE t.slug LIKE %(pattern)s AND r.created_at >= %(since)s AND r.created_at < %(until)s
) records
GROUP BY GROUPING SETS (
    (tenant_id, day), (tenant_id, day, user_id), (tenant_id, day, feature_tag),
    (tenant_id, day, model)
)
"""

# Children first: the foreign keys have no ON DELETE CASCADE in the database.
_CLEANUP_TABLES = (
    "analytics_anomaly",
    "analytics_incident",
    "analytics_detectionsettings",
    "analytics_plannedactivity",
    "analytics_breachhistory",
    "analytics_drifttracking",
    "analytics_budget",
    "analytics_costrecord",
)


def log(message: str) -> None:
    print(message, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, help="scratch tenants (1000; 5000 with --fan-out)")
    parser.add_argument("--days", type=int, default=60, help="days of history per tenant (60)")
    parser.add_argument("--per-day", type=int, default=6, help="records per tenant-day (6)")
    parser.add_argument("--quick", action="store_true", help="50 tenants: a smoke run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch rows")
    parser.add_argument(
        "--fan-out", action="store_true", help="time the job fanned out on 1 vs W workers"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    parser.add_argument(
        "--rounds", type=int, default=2, help="fan-out rounds, 1 then W workers each (2)"
    )
    args = parser.parse_args()
    if args.tenants is None:
        args.tenants = 5000 if args.fan_out else 1000
    if args.quick:
        args.tenants = 50
    if args.tenants < 1 or args.days < 30 or not 1 <= args.per_day <= 100 or args.workers < 2:
        parser.error("need --tenants >= 1, --days >= 30, 1 <= --per-day <= 100 and --workers >= 2")
    return args


def check_migrated() -> None:
    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        sys.exit("The database has unapplied migrations; run `manage.py migrate` first.")


def execute(sql: str, params: dict | None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def generate(*, prefix: str, tenants: int, days: int, per_day: int, now: datetime) -> None:
    pattern = prefix + "%"
    began = time.perf_counter()
    execute(_TENANTS_SQL, {"prefix": prefix, "count": tenants})
    records = execute(
        _RECORDS_SQL,
        {"pattern": pattern, "today": now, "days": days, "per_day": per_day},
    )
    execute(_BUDGETS_SQL, {"pattern": pattern, "today": now})
    execute("ANALYZE analytics_costrecord", None)
    log(
        f"generated {tenants:,} tenants, {records:,} cost records and {tenants:,} budgets "
        f"in {time.perf_counter() - began:.1f} s"
    )


def reference_seconds(*, prefix: str, now: datetime) -> float:
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            REFERENCE_SQL,
            {"pattern": prefix + "%", "since": now - timedelta(days=LOOKBACK_DAYS), "until": now},
        )
        rows = len(cursor.fetchall())
    seconds = time.perf_counter() - began
    log(f"reference: one GROUP BY GROUPING SETS, {rows:,} daily spend rows in {seconds:.2f} s")
    return seconds


def detection_seconds(tenants: list[Tenant], label: str, as_of=None) -> tuple[float, JobReport]:
    began = time.perf_counter()
    totals = anomalies_detect_active_tenants(tenants=tenants, as_of=as_of)
    seconds = time.perf_counter() - began
    log(
        f"{label}: {len(tenants):,} tenants in {seconds:.2f} s "
        f"({seconds / len(tenants) * 1000:.1f} ms per tenant): "
        f"{totals.totals['created']} created, {totals.totals['updated']} updated, "
        f"{len(totals.failed_tenants)} failed"
    )
    return seconds, totals


# Every column a run decides, none of the clocks it stamps: equal digests, equal results.
_DIGEST_SQL = """
SELECT count(*), md5(COALESCE(string_agg(row::text, '|' ORDER BY row::text), ''))
FROM (
    SELECT (to_jsonb(x) - 'id' - 'detected_at' - 'last_detected_at' - 'updated_at'
            - 'created_at' - 'opened_at' - 'last_seen_at' - 'escalated_at') AS row
    FROM {table} x
    JOIN analytics_tenant t ON t.id = x.tenant_id
    WHERE t.slug LIKE %(pattern)s
) rows
"""


def results_digest(prefix: str) -> dict[str, tuple[int, str]]:
    digests = {}
    with connection.cursor() as cursor:
        for table in ("analytics_anomaly", "analytics_incident", "analytics_breachhistory"):
            cursor.execute(_DIGEST_SQL.format(table=table), {"pattern": prefix + "%"})
            digests[table] = cursor.fetchone()
    return digests


class Workers:
    """`count` Celery worker processes (prefork, one pool process each) on FAN_OUT_QUEUE."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.ready_dir = Path(tempfile.mkdtemp(prefix="bench-workers-"))
        self.log_path = self.ready_dir / "workers.log"
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> "Workers":
        self.log = open(self.log_path, "a")  # noqa: SIM115 (closed in __exit__)
        for index in range(self.count):
            env = {**os.environ, "COSTWISE_READY_DIR": str(self.ready_dir / str(index))}
            Path(env["COSTWISE_READY_DIR"]).mkdir()
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "--quiet",
                        "worker",
                        "--pool=prefork",
                        "--concurrency=1",
                        "--loglevel=WARNING",
                        f"--queues={FAN_OUT_QUEUE}",
                        f"--hostname={FAN_OUT_QUEUE}-{index}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 120
        while not all((self.ready_dir / str(i) / "worker").exists() for i in range(self.count)):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                sys.exit(f"the Celery workers did not start; see {self.log_path}")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.log.close()


def fan_out_seconds(tenants: list[Tenant], workers: int) -> tuple[float, JobRun]:
    from analytics.tasks import detect_anomalies_task, tenant_job_dispatch

    with Workers(workers):
        began = time.perf_counter()
        sent = tenant_job_dispatch(
            detect_anomalies_task,
            DETECT_ANOMALIES,
            scheduled_for=datetime.now(UTC),  # a tick of its own for each timed run
            tenant_ids=[tenant.pk for tenant in tenants],
        )
        while (run := JobRun.objects.get(pk=sent["run_id"])).status == JobRunStatus.RUNNING:
            time.sleep(0.1)
        seconds = time.perf_counter() - began
    totals = job_run_report(run)
    log(
        f"fan-out on {workers} worker process(es): {len(tenants):,} tenants in "
        f"{run.chunks_total} chunks in {seconds:.2f} s: {run.status}, "
        f"{totals.totals['created']} created, {totals.totals['updated']} updated, "
        f"{len(totals.failed_tenants)} failed"
    )
    return seconds, run


def fan_out_main(args, prefix: str, now: datetime) -> None:
    generate(prefix=prefix, tenants=args.tenants, days=args.days, per_day=args.per_day, now=now)
    tenants = list(Tenant.objects.filter(slug__startswith=prefix).order_by("pk"))
    reference = reference_seconds(prefix=prefix, now=now)
    detection_seconds(tenants, "warm-up: detection as of yesterday", now.date() - timedelta(1))
    inline, _ = detection_seconds(tenants, "inline, first run (creates; untimed step)")
    expected = results_digest(prefix)
    log(f"results after the inline run: {_digest_line(expected)}")
    ones, manys, digests, runs = [], [], [], []
    try:
        # Alternated, so a change of load on the machine weighs on both sides alike.
        for _ in range(args.rounds):
            for workers, times in ((1, ones), (args.workers, manys)):
                seconds, run = fan_out_seconds(tenants, workers)
                times.append(seconds)
                runs.append(run)
                digests.append(results_digest(prefix))
    finally:
        # The bench's runs are not the scheduler's: leave no trace of them in the admin.
        JobRun.objects.filter(pk__in=[run.pk for run in runs]).delete()
    identical = all(digest == expected for digest in digests)
    log(f"results after every fanned-out run: {_digest_line(digests[-1])}")
    one, many = statistics.median(ones), statistics.median(manys)
    log("")
    log(f"fan-out 1 worker:  {', '.join(f'{s:.1f}' for s in ones)} s (median {one:.1f} s)")
    log(
        f"fan-out {args.workers} workers: {', '.join(f'{s:.1f}' for s in manys)} s "
        f"(median {many:.1f} s)"
    )
    log(f"RATIO fan-out 1 worker / reference: {one / reference:.1f}x")
    log(f"RATIO fan-out {args.workers} workers / 1 worker: {many / one:.2f}")
    verdict = "OK" if many / one <= TARGET_FAN_OUT_RATIO else "OVER TARGET"
    log(f"target <= {TARGET_FAN_OUT_RATIO}: {verdict}; results identical: {identical}")
    if not identical or any(run.status == JobRunStatus.FAILED for run in runs):
        sys.exit(1)


def _digest_line(digests: dict[str, tuple[int, str]]) -> str:
    return ", ".join(
        f"{table.removeprefix('analytics_')} {count} ({digest[:8]})"
        for table, (count, digest) in digests.items()
    )


def cleanup(prefix: str) -> None:
    pattern = prefix + "%"
    for table in _CLEANUP_TABLES:
        execute(
            f"DELETE FROM {table} WHERE tenant_id IN "
            "(SELECT id FROM analytics_tenant WHERE slug LIKE %(pattern)s)",
            {"pattern": pattern},
        )
    execute("DELETE FROM analytics_tenant WHERE slug LIKE %(pattern)s", {"pattern": pattern})
    log(f"cleanup: removed the scratch tenants {pattern} and their rows")


def main() -> None:
    args = parse_args()
    check_migrated()
    prefix = f"bench-det-{secrets.token_hex(3)}-"
    now = datetime.now(UTC)
    log(
        f"bench/detection: {args.tenants:,} tenants x {args.days} days x {args.per_day} "
        f"records/day, as of {now:%Y-%m-%d}"
    )
    try:
        if args.fan_out:
            fan_out_main(args, prefix, now)
            return
        generate(prefix=prefix, tenants=args.tenants, days=args.days, per_day=args.per_day, now=now)
        tenants = list(Tenant.objects.filter(slug__startswith=prefix).order_by("pk"))
        reference = reference_seconds(prefix=prefix, now=now)
        # Yesterday's run leaves the breach history today's spikes need (untimed).
        detection_seconds(tenants, "warm-up: detection as of yesterday", now.date() - timedelta(1))
        first, totals = detection_seconds(tenants, "detection, first run")
        second, _ = detection_seconds(tenants, "detection, second run (updates)")
        by_type = (
            Anomaly.objects.filter(tenant__slug__startswith=prefix)
            .values_list("anomaly_type")
            .order_by("anomaly_type")
        )
        counts: dict[str, int] = {}
        for (anomaly_type,) in by_type:
            counts[anomaly_type] = counts.get(anomaly_type, 0) + 1
        log(f"anomalies by type: {counts}")
        log("")
        log(f"RATIO first run / reference:  {first / reference:.1f}x")
        log(f"RATIO second run / reference: {second / reference:.1f}x")
        verdict = "OK" if first < TARGET_SECONDS else "OVER TARGET"
        log(
            f"first run {first:.2f} s for {len(tenants):,} tenants "
            f"(target < {TARGET_SECONDS:.0f} s for 1000): {verdict}"
        )
        if totals.failed_tenants:
            sys.exit(1)
    finally:
        if args.keep:
            log(f"kept the scratch tenants {prefix}*")
        else:
            cleanup(prefix)


if __name__ == "__main__":
    main()
