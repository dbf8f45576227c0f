import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="predictions.run_cycle", soft_time_limit=600, time_limit=660)
def run_cycle_task() -> dict:
    """Hourly prediction cycle over every active tenant, one transaction per tenant."""
    from predictions.services.cycle import prediction_cycles_run

    summary = prediction_cycles_run()
    logger.info(
        "Prediction cycle: %s tenant(s), %s failed, %s",
        summary["tenants"],
        len(summary["failed"]),
        summary["totals"],
    )
    return summary
