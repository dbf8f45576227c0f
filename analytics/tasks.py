"""Celery tasks of the analytics app: thin wrappers, the work lives in services.

Task names are the ones listed in CELERY_BEAT_SCHEDULE (config/settings.py). The per-tenant
jobs (snapshots, detection, and feedback's and predictions' own) are fanned out: the beat
task only dispatches a run as a group of `analytics.job_chunk` tasks, one per chunk of
`JOBS_CHUNK_SIZE` tenants, on the `JOBS_CHUNK_QUEUE` queue, so every worker shares the work
(docs/architecture.md, "Jobs and locks").
"""

import logging
from collections.abc import Iterable
from datetime import datetime

from celery import group, shared_task
from django.conf import settings

from analytics.services.anomalies import DETECT_ANOMALIES
from analytics.services.job_runs import (
    RETRYABLE_ERRORS,
    ChunkLockBusy,
    job_chunk_finish,
    job_chunk_note_retry,
    job_chunk_run,
    job_chunks_sweep,
    job_lock_key,
    job_run_report,
    job_run_start,
    tenant_job_register,
)
from analytics.services.jobs import DAILY_SNAPSHOTS, HOURLY_SNAPSHOTS, SKIPPED, TenantJob
from analytics.services.locks import LockId, leader_lock

logger = logging.getLogger(__name__)

for _spec in (HOURLY_SNAPSHOTS, DAILY_SNAPSHOTS, DETECT_ANOMALIES):
    tenant_job_register(_spec)


# --- fanned-out jobs -----------------------------------------------------------------------


def tenant_job_dispatch(
    task,
    spec: TenantJob,
    *,
    now: datetime | None = None,
    scheduled_for: datetime | None = None,
    tenant_ids: Iterable[int] | None = None,
) -> dict:
    """Record a run of `spec` and send its chunks as one Celery group; return what was sent.

    Leader-only (lock class 7006, key: the job): a second dispatcher of the same job, or a
    tick whose run already exists, sends nothing and reports `skipped`. Called eagerly
    (`task.apply()`, tests), the chunks run in this process and the run's report is returned.
    """
    tenant_job_register(spec)
    with leader_lock(LockId.JOB_DISPATCH, key=job_lock_key(spec.name)) as leader:
        run = (
            job_run_start(spec=spec, now=now, scheduled_for=scheduled_for, tenant_ids=tenant_ids)
            if leader
            else None
        )
    if run is None:
        logger.info("%s: not dispatched (another dispatcher or an earlier tick)", spec.name)
        return {"job": spec.name, "outcome": SKIPPED, "run_id": None}
    chunk_ids = list(run.chunks.order_by("index").values_list("pk", flat=True))
    _chunks_send(task, chunk_ids)
    if task.request.is_eager:
        run.refresh_from_db()
        return {**job_run_report(run).as_dict(), "run_id": run.pk, "chunks": len(chunk_ids)}
    logger.info(
        "%s: run %s dispatched, %s tenant(s) in %s chunk(s)",
        spec.name,
        run.pk,
        run.tenants_total,
        len(chunk_ids),
    )
    return {
        "job": spec.name,
        "outcome": "dispatched",
        "run_id": run.pk,
        "tenants": run.tenants_total,
        "chunks": len(chunk_ids),
    }


def _chunks_send(task, chunk_ids: list[int]) -> None:
    """Send the chunks as one group; called eagerly (tests), run them here, one by one."""
    if not chunk_ids:
        return
    if task.request.is_eager:
        for chunk_id in chunk_ids:
            job_chunk_task.apply(args=[chunk_id])
        return
    group(
        job_chunk_task.si(chunk_id).set(queue=settings.JOBS_CHUNK_QUEUE) for chunk_id in chunk_ids
    ).apply_async()


@shared_task(bind=True, name="analytics.sweep_job_runs", soft_time_limit=60, time_limit=90)
def sweep_job_runs_task(self) -> dict:
    """Send again the chunks of running job runs that stalled (a lost message, a vanished
    worker) and give up on those out of attempts (JOBS_CHUNK_STALL_MINUTES)."""
    sweep = job_chunks_sweep()
    _chunks_send(self, sweep.resend)
    return {"resent": sweep.resend, "failed": sweep.failed}


# acks_late with reject_on_worker_lost: a chunk whose worker dies is delivered again, and
# one that raised a retryable error is retried with backoff. Either way the tenants it has
# committed stay done (analytics.services.job_runs), so nothing runs or counts twice.
@shared_task(
    bind=True,
    name="analytics.job_chunk",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # bounded below by JOBS_CHUNK_MAX_RETRIES
    soft_time_limit=20 * 60,
    time_limit=25 * 60,
)
def job_chunk_task(self, chunk_id: int) -> dict | None:
    """Run one chunk of a fanned-out run; settle the run when it is the last chunk."""
    max_attempts = settings.JOBS_CHUNK_MAX_RETRIES + 1
    try:
        chunk = job_chunk_run(chunk_id=chunk_id, max_attempts=max_attempts)
    except (*RETRYABLE_ERRORS, ChunkLockBusy) as exc:
        error = f"{type(exc).__name__}: {exc}"
        if self.request.retries + 1 >= max_attempts:
            job_chunk_finish(chunk_id=chunk_id, status="failed", error=error)
            logger.error("Job chunk %s failed for good: %s", chunk_id, error)
            return {"chunk": chunk_id, "status": "failed"}
        job_chunk_note_retry(chunk_id=chunk_id, error=error)
        logger.warning("Job chunk %s will be retried: %s", chunk_id, error)
        raise self.retry(exc=exc, countdown=min(2**self.request.retries * 5, 300)) from exc
    except Exception as exc:
        # A bug, not a passing condition: retrying would fail the same way.
        job_chunk_finish(chunk_id=chunk_id, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    if chunk is None:
        logger.info("Job chunk %s was already finished; nothing to do", chunk_id)
        return None
    logger.info(
        "Job chunk %s (run %s, #%s): %s, %s tenant(s) done, %s failed",
        chunk.pk,
        chunk.run_id,
        chunk.index,
        chunk.status,
        len(chunk.done_tenant_ids),
        len(chunk.failed_tenants),
    )
    return {"chunk": chunk.pk, "status": chunk.status, "totals": chunk.totals}


# --- snapshots -----------------------------------------------------------------------------


@shared_task(
    bind=True, name="analytics.hourly_snapshots", soft_time_limit=5 * 60, time_limit=6 * 60
)
def hourly_snapshots_task(self) -> dict:
    """Fan out: snapshot the previous full hour for every active tenant; recompute stale ones."""
    return tenant_job_dispatch(self, HOURLY_SNAPSHOTS)


@shared_task(bind=True, name="analytics.daily_snapshots", soft_time_limit=5 * 60, time_limit=6 * 60)
def daily_snapshots_task(self) -> dict:
    """Fan out: snapshot yesterday and refresh baselines for every active tenant.

    The chunks hold lock 7004 shared, so a snapshot backfill and the run exclude each other.
    """
    return tenant_job_dispatch(self, DAILY_SNAPSHOTS)


# --- anomaly detection ---------------------------------------------------------------------


@shared_task(
    bind=True, name="analytics.detect_anomalies", soft_time_limit=5 * 60, time_limit=6 * 60
)
def detect_anomalies_task(self) -> dict:
    """Fan out: detect anomalies as of today for every active tenant."""
    return tenant_job_dispatch(self, DETECT_ANOMALIES)


# --- cost record partitions and retention --------------------------------------------------


@shared_task(name="analytics.maintain_partitions", soft_time_limit=30 * 60, time_limit=35 * 60)
def maintain_partitions_task() -> dict:
    """Create the coming months' cost record partitions; drain DEFAULT into new ones."""
    from analytics.services.partitions import partitions_maintain

    report = partitions_maintain()
    logger.info("Partitions: %s", report.totals)
    return report.as_dict()


@shared_task(name="analytics.record_retention", soft_time_limit=5 * 3600, time_limit=5 * 3600 + 300)
def record_retention_task() -> dict:
    """Apply every tenant's raw cost record retention (leader lock 7008)."""
    from analytics.services.retention import retention_run

    report = retention_run()
    logger.info("Retention: %s %s", report.outcome, report.totals)
    return report.as_dict()
