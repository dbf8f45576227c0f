"""CostSim beat jobs (docs/architecture.md, "Jobs and locks"). Each is leader-only: a run
that finds the lock taken does nothing and reports `skipped`; the services hold the logic,
these only call them.
"""

import logging

from celery import shared_task
from django.conf import settings

from analytics.services.locks import LockId, leader_lock
from costsim import metrics

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


@shared_task(name="costsim.prune_provenance", soft_time_limit=60 * 60, time_limit=65 * 60)
def prune_provenance_task() -> dict:
    """Delete expired provenance under lock 7003. Old breaker alerts are purged with the
    other finished deliveries by the notifications digest job."""
    from costsim.services.provenance import provenance_prune

    with leader_lock(LockId.PROVENANCE_PRUNE) as leader:
        if not leader:
            metrics.job_runs_total.labels(job="provenance_prune", outcome="skipped").inc()
            logger.info("Provenance prune skipped: another process holds lock 7003")
            return {"status": "skipped"}
        try:
            # The prune takes lock 7003 too; advisory locks are re-entrant per session.
            provenance = provenance_prune(days=settings.COSTSIM_PROVENANCE_RETENTION_DAYS)
        except Exception:
            metrics.job_runs_total.labels(job="provenance_prune", outcome="failed").inc()
            raise
    metrics.job_runs_total.labels(job="provenance_prune", outcome="success").inc()
    logger.info("Pruned %s provenance rows", provenance)
    return {"status": "success", "provenance_deleted": provenance}
