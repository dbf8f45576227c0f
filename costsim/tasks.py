"""CostSim beat jobs (SPEC.md §6). Each is leader-only: a run that finds the lock taken does
nothing and reports `skipped`; the services hold the logic, these only call them.
"""

import logging

from celery import shared_task
from django.conf import settings

from costsim import metrics
from costsim.services.locks import LockId, leader_lock

logger = logging.getLogger(__name__)


@shared_task(name="costsim.canary", soft_time_limit=30 * 60, time_limit=35 * 60)
def canary_task(sample_count: int | None = None, drift_threshold: float | None = None) -> dict:
    """Run the canary (lock 7001) with the configured sample count and KL gate."""
    from costsim.services.canary import canary_run

    report = canary_run(
        sample_count=sample_count or settings.COSTSIM_CANARY_SAMPLE_COUNT,
        drift_threshold=(
            settings.COSTSIM_CANARY_DRIFT_THRESHOLD if drift_threshold is None else drift_threshold
        ),
    )
    logger.info("Canary %s finished: %s", report.run_id, report.status)
    return {"run_id": report.run_id, "status": report.status, "passed": report.passed}


# Every 10 s with `expires` 9 s; the soft limit covers a full batch of timeouts, and lock
# 7002 keeps a slow run and the next one from overlapping.
@shared_task(name="costsim.deliver_alerts", soft_time_limit=5 * 60, time_limit=6 * 60)
def deliver_alerts_task() -> dict:
    """Deliver one batch of due breaker alerts (lock 7002)."""
    from costsim.services.outbox import alerts_deliver

    result = alerts_deliver()
    if result.claimed:
        logger.info(
            "Alert outbox: %s sent, %s retrying, %s failed, %s skipped",
            result.sent,
            result.retrying,
            result.failed,
            result.skipped,
        )
    return {
        "leader": result.leader,
        "sent": result.sent,
        "retrying": result.retrying,
        "failed": result.failed,
        "skipped": result.skipped,
    }


@shared_task(name="costsim.prune_provenance", soft_time_limit=60 * 60, time_limit=65 * 60)
def prune_provenance_task() -> dict:
    """Delete expired provenance and old delivered alerts, both under lock 7003."""
    from costsim.services.outbox import alerts_purge
    from costsim.services.provenance import provenance_prune

    with leader_lock(LockId.PROVENANCE_PRUNE) as leader:
        if not leader:
            metrics.job_runs_total.labels(job="provenance_prune", outcome="skipped").inc()
            logger.info("Provenance prune skipped: another process holds lock 7003")
            return {"status": "skipped"}
        try:
            # The prune takes lock 7003 too; advisory locks are re-entrant per session.
            provenance = provenance_prune(days=settings.COSTSIM_PROVENANCE_RETENTION_DAYS)
            alerts = alerts_purge()
        except Exception:
            metrics.job_runs_total.labels(job="provenance_prune", outcome="failed").inc()
            raise
    metrics.job_runs_total.labels(job="provenance_prune", outcome="success").inc()
    logger.info("Pruned %s provenance rows and %s alerts", provenance, alerts)
    return {"status": "success", "provenance_deleted": provenance, "alerts_deleted": alerts}
