"""Fanned-out per-tenant jobs: the run record, its tenant chunks and each chunk's work.

A beat tick becomes one `JobRun` (unique per job and tick, so a tick delivered twice
dispatches once) whose active tenants are split into `JobChunk`s of
`JOBS_CHUNK_SIZE`; Celery runs each chunk as one task (`analytics.tasks`). A chunk is safe
to run again at any point, whole or in part, also by two workers at once:

- each tenant's work and the chunk's bookkeeping for it (`done_tenant_ids`, `totals`)
  commit in one transaction, under the chunk's row lock; a tenant already marked done is
  skipped, so a retried chunk neither repeats committed work nor counts it twice;
- a tenant whose transaction did not commit (its worker died, its connection was lost) is
  simply run again; its work upserts on natural keys like every job's;
- the run is settled by whichever chunk finishes last, under the run's row lock;
- a chunk whose message was lost is sent again by the sweeper (`job_chunks_sweep`), or
  failed with the reason once its attempts are spent.

Jobs register their `TenantJob` spec here (from their app's tasks module), so the base app
runs feedback's and predictions' jobs without importing them.
"""

import json
import logging
import zlib
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from analytics import metrics
from analytics.models import JobChunk, JobChunkStatus, JobRun, JobRunStatus, Tenant
from analytics.services.jobs import FAILED, SUCCESS, JobReport, TenantJob
from analytics.services.locks import leader_lock
from analytics.services.tenants import tenants_run_each

logger = logging.getLogger(__name__)

_JOBS: dict[str, TenantJob] = {}
FINISHED = (JobChunkStatus.SUCCESS, JobChunkStatus.FAILED)
# Not a tenant's fault: the chunk stops and Celery retries it.
RETRYABLE_ERRORS = (InterfaceError, OperationalError)


class UnknownJob(LookupError):
    pass


class ChunkLockBusy(Exception):
    """The job's shared lock is held exclusively elsewhere (a backfill); retry later."""


def tenant_job_register(spec: TenantJob) -> TenantJob:
    _JOBS[spec.name] = spec
    return spec


def tenant_job_get(name: str) -> TenantJob:
    try:
        return _JOBS[name]
    except KeyError:
        raise UnknownJob(f"no per-tenant job named {name!r} is registered") from None


def job_lock_key(name: str) -> int:
    """A job's stable key under lock class 7006 (JOB_DISPATCH)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


_RUN_INSERT = """
INSERT INTO analytics_jobrun
    (job, scheduled_for, params, status, chunk_size, chunks_total, tenants_total, started_at,
     finished_at)
VALUES (%(job)s, %(scheduled_for)s, %(params)s::jsonb, %(status)s, %(chunk_size)s, %(chunks)s,
        %(tenants)s, %(now)s, CASE WHEN %(chunks)s = 0 THEN %(now)s END)
ON CONFLICT (job, scheduled_for) DO NOTHING
RETURNING id
"""


@transaction.atomic
def job_run_start(
    *,
    spec: TenantJob,
    now: datetime | None = None,
    scheduled_for: datetime | None = None,
    tenant_ids: Iterable[int] | None = None,
    chunk_size: int | None = None,
) -> JobRun | None:
    """Record a run of `spec` for the tick `scheduled_for` (default: `spec.period(now)`) and
    split its tenants (default: every active one, by id) into chunks.

    Returns None, writing nothing, when the tick already has its run. A run without tenants
    is recorded as finished.
    """
    now = now or timezone.now()
    chunk_size = chunk_size or settings.JOBS_CHUNK_SIZE
    if tenant_ids is None:
        tenant_ids = Tenant.objects.active().order_by("pk").values_list("pk", flat=True)
    ids = list(tenant_ids)
    slices = [ids[start : start + chunk_size] for start in range(0, len(ids), chunk_size)]
    with connection.cursor() as cursor:
        cursor.execute(
            _RUN_INSERT,
            {
                "job": spec.name,
                "scheduled_for": scheduled_for or spec.period(now),
                "params": json.dumps(spec.params(now)),
                "status": JobRunStatus.RUNNING if slices else JobRunStatus.SUCCESS,
                "chunk_size": chunk_size,
                "chunks": len(slices),
                "tenants": len(ids),
                "now": now,
            },
        )
        row = cursor.fetchone()
    if row is None:
        return None
    run = JobRun.objects.get(pk=row[0])
    JobChunk.objects.bulk_create(
        JobChunk(run=run, index=index, tenant_ids=chunk) for index, chunk in enumerate(slices)
    )
    return run


def job_chunk_run(*, chunk_id: int, max_attempts: int) -> JobChunk | None:
    """Run the chunk's tenants that are not done yet; return the finished chunk.

    Returns None, doing nothing, when the chunk is already finished (a message delivered
    again after the chunk completed). A chunk started more than `max_attempts` times (its
    worker died each time) is recorded as failed instead of run again. Raises one of
    `RETRYABLE_ERRORS` or `ChunkLockBusy` for the caller to retry; the tenants committed so
    far stay done.
    """
    chunk = _chunk_claim(chunk_id)
    if chunk is None:
        return None
    if chunk.attempts > max_attempts:
        return job_chunk_finish(
            chunk_id=chunk_id,
            status=JobChunkStatus.FAILED,
            error=f"gave up after {max_attempts} attempts: {chunk.error}".strip(": "),
        )
    run = chunk.run
    spec = tenant_job_get(run.job)
    done = set(chunk.done_tenant_ids)
    tenants = (
        Tenant.objects.active()
        .filter(pk__in=[pk for pk in chunk.tenant_ids if pk not in done])
        .order_by("pk")
    )

    def work(tenant: Tenant):
        return _tenant_work(chunk_id=chunk_id, spec=spec, params=run.params, tenant=tenant)

    def note_failure(tenant: Tenant, result, error: Exception | None) -> None:
        if error is not None:
            _chunk_note_failed_tenant(chunk_id=chunk_id, slug=tenant.slug)

    with ExitStack() as stack:
        if spec.shared_lock is not None:
            held = stack.enter_context(leader_lock(spec.shared_lock, shared=True))
            if not held:
                raise ChunkLockBusy(f"lock {int(spec.shared_lock)} is held exclusively")
        tenants_run_each(
            work,
            label=f"{spec.name} chunk {chunk.index}",
            tenants=tenants,
            on_tenant_done=note_failure,
            reraise=RETRYABLE_ERRORS,
        )
    return job_chunk_finish(chunk_id=chunk_id, status=JobChunkStatus.SUCCESS)


def _chunk_claim(chunk_id: int) -> JobChunk | None:
    claimed = (
        JobChunk.objects.filter(pk=chunk_id)
        .exclude(status__in=FINISHED)
        .update(
            status=JobChunkStatus.RUNNING, started_at=timezone.now(), attempts=F("attempts") + 1
        )
    )
    if not claimed:
        return None
    return JobChunk.objects.select_related("run").get(pk=chunk_id)


def _tenant_work(*, chunk_id: int, spec: TenantJob, params: dict, tenant: Tenant):
    """One tenant's work and the chunk's bookkeeping for it, in the caller's transaction."""
    chunk = JobChunk.objects.select_for_update().get(pk=chunk_id)
    if tenant.pk in chunk.done_tenant_ids:
        return None  # committed by an earlier or a parallel attempt
    result = spec.work(tenant, params)
    totals = dict(chunk.totals)
    for name, value in spec.counts(result).items():
        totals[name] = totals.get(name, 0) + value
    chunk.totals = totals
    chunk.done_tenant_ids = [*chunk.done_tenant_ids, tenant.pk]
    # An earlier attempt may have listed the tenant as failed; this one decides.
    chunk.failed_tenants = [slug for slug in chunk.failed_tenants if slug != tenant.slug]
    if spec.failed is not None and spec.failed(result):
        chunk.failed_tenants.append(tenant.slug)
    chunk.save(update_fields=["totals", "done_tenant_ids", "failed_tenants"])
    return result


def _chunk_note_failed_tenant(*, chunk_id: int, slug: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE analytics_jobchunk SET failed_tenants = array_append(failed_tenants, %s) "
            "WHERE id = %s AND NOT (%s = ANY (failed_tenants))",
            [slug, chunk_id, slug],
        )


def job_chunk_note_retry(*, chunk_id: int, error: str) -> None:
    """Record why the chunk stopped; it runs again later (Celery retry)."""
    JobChunk.objects.filter(pk=chunk_id).exclude(status__in=FINISHED).update(
        status=JobChunkStatus.RETRYING, error=error[:2000]
    )


def job_chunk_finish(*, chunk_id: int, status: str, error: str = "") -> JobChunk:
    """Finish the chunk and, when it is the run's last, settle the run.

    The run's row lock orders the chunks that finish at the same time, so exactly one of
    them sees every other chunk finished and settles the run.
    """
    _chunk_finish(chunk_id=chunk_id, status=status, error=error)
    return JobChunk.objects.get(pk=chunk_id)


@transaction.atomic
def _chunk_finish(
    *, chunk_id: int, status: str, error: str, untouched_since: datetime | None = None
) -> bool:
    """Finish the chunk unless it is finished already; return whether this call did.

    With `untouched_since`, only a chunk nobody claimed or sent again after that instant is
    finished (the sweeper gives up on a chunk only while it is still stalled).
    """
    now = timezone.now()
    run_id = JobChunk.objects.values_list("run_id", flat=True).get(pk=chunk_id)
    run = JobRun.objects.select_for_update().get(pk=run_id)
    changes = {"status": status, "finished_at": now}
    if error or status == JobChunkStatus.SUCCESS:
        changes["error"] = error[:2000]
    chunks = JobChunk.objects.filter(pk=chunk_id).exclude(status__in=FINISHED)
    if untouched_since is not None:
        chunks = chunks.filter(
            Q(started_at__lt=untouched_since)
            | Q(started_at__isnull=True, run__started_at__lt=untouched_since)
        )
    finished = bool(chunks.update(**changes))
    _run_settle(run, now)
    return finished


def _run_settle(run: JobRun, now: datetime) -> None:
    """Settle a running run whose chunks are all finished; the caller holds its row lock."""
    unfinished = run.chunks.exclude(status__in=FINISHED).exists()
    if run.status == JobRunStatus.RUNNING and not unfinished:
        failed = (
            run.chunks.filter(status=JobChunkStatus.FAILED).exists()
            or run.chunks.filter(failed_tenants__len__gt=0).exists()
        )
        run.status = JobRunStatus.FAILED if failed else JobRunStatus.SUCCESS
        run.finished_at = now
        run.save(update_fields=["status", "finished_at"])
        outcome = FAILED if failed else SUCCESS
        transaction.on_commit(
            lambda: metrics.job_runs_total.labels(job=run.job, outcome=outcome).inc()
        )


# --- the sweeper ---------------------------------------------------------------------------
# A chunk is stalled when it is unfinished and nobody has claimed it, nor sent it again, for
# JOBS_CHUNK_STALL_MINUTES: its message was lost (a broker restarted without persistence, the
# dispatcher died between recording the run and sending it, a retry's delayed message never
# came back) or its worker vanished without the broker delivering it again. The bound is
# longer than a chunk task's hard time limit, so a chunk that is really running is never
# taken for stalled. Chunks are idempotent, so sending one again is always safe; the sweeper
# only has to make sure that two sweepers side by side do not both send it.

# A stalled chunk that was still pending never reached a worker: that lost message counts
# as one of its attempts (a claim counts the others), so a chunk whose messages keep getting
# lost is given up too. The rows are claimed with SKIP LOCKED: a second sweeper skips the
# chunks the first is resending, and once the first commits they are no longer stalled.
_STALLED = """
    SELECT c.id, c.attempts + (c.status = 'pending')::int AS attempts
    FROM analytics_jobchunk c
    JOIN analytics_jobrun r ON r.id = c.run_id
    WHERE r.status = 'running'
      AND c.status IN ('pending', 'running', 'retrying')
      AND COALESCE(c.started_at, r.started_at) < %(stalled_before)s
"""
STALLED_RESEND_SQL = f"""
WITH stalled AS (
    {_STALLED}
      AND c.attempts + (c.status = 'pending')::int < %(max_attempts)s
    ORDER BY c.id
    FOR UPDATE OF c SKIP LOCKED
)
UPDATE analytics_jobchunk c
SET status = 'pending', started_at = %(now)s, attempts = stalled.attempts,
    error = left(%(note)s || CASE WHEN c.error <> '' THEN ' (last error: ' || c.error || ')'
                                  ELSE '' END, 2000)
FROM stalled
WHERE c.id = stalled.id
RETURNING c.id
"""
_STALLED_SPENT_SQL = f"""
{_STALLED}
  AND c.attempts + (c.status = 'pending')::int >= %(max_attempts)s
ORDER BY c.id
"""


@dataclass
class ChunkSweep:
    """What one sweep did: chunks to send again (marked pending, not sent yet) and chunks
    given up as failed."""

    resend: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def job_chunks_sweep(
    *,
    now: datetime | None = None,
    stall_minutes: int | None = None,
    max_attempts: int | None = None,
) -> ChunkSweep:
    """Find the stalled chunks of running runs: mark those with attempts left pending again
    (the caller sends them, after this commits) and finish the others as failed, settling
    their run when they were its last.

    A chunk is stalled after `stall_minutes` (default JOBS_CHUNK_STALL_MINUTES) without being
    claimed or sent; it has `max_attempts` (default JOBS_CHUNK_MAX_RETRIES + 1) in all.
    """
    now = now or timezone.now()
    stall_minutes = stall_minutes or settings.JOBS_CHUNK_STALL_MINUTES
    max_attempts = max_attempts or settings.JOBS_CHUNK_MAX_RETRIES + 1
    params = {
        "now": now,
        "stalled_before": now - timedelta(minutes=stall_minutes),
        "max_attempts": max_attempts,
        "note": f"sent again at {now:%Y-%m-%d %H:%M}Z: no progress for {stall_minutes} min",
    }
    sweep = ChunkSweep()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(STALLED_RESEND_SQL, params)
        sweep.resend = sorted(row[0] for row in cursor.fetchall())
    with connection.cursor() as cursor:
        cursor.execute(_STALLED_SPENT_SQL, params)
        spent = cursor.fetchall()
    for chunk_id, attempts in spent:
        if _chunk_finish(
            chunk_id=chunk_id,
            status=JobChunkStatus.FAILED,
            error=f"gave up: no progress for {stall_minutes} min after {attempts} attempts",
            untouched_since=params["stalled_before"],
        ):
            sweep.failed.append(chunk_id)
    if sweep.resend or sweep.failed:
        logger.warning("Stalled job chunks: %s sent again, %s given up", sweep.resend, sweep.failed)
    return sweep


def job_run_report(run: JobRun) -> JobReport:
    """The run's report so far: the counters of every tenant done, and the failed ones."""
    spec = _JOBS.get(run.job)
    report = JobReport(
        job=run.job,
        outcome={JobRunStatus.RUNNING: "running"}.get(run.status, run.status),
        totals=dict.fromkeys(spec.keys, 0) if spec else {},
    )
    done: set[int] = set()
    for chunk in run.chunks.order_by("index"):
        done.update(chunk.done_tenant_ids)
        report.failed_tenants.extend(chunk.failed_tenants)
        report.add(chunk.totals)
    # A tenant whose work raised is failed without being done; one stored as failed is both.
    failed = Tenant.objects.filter(slug__in=report.failed_tenants).values_list("pk", flat=True)
    report.tenants = len(done.union(failed))
    return report
