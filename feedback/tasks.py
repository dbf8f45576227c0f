import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="feedback.detect_patterns", soft_time_limit=600, time_limit=660)
def detect_patterns_task() -> dict:
    """Hourly pattern detection over every active tenant, one transaction per tenant."""
    from feedback.services.patterns import patterns_detect_for_tenants

    summary = patterns_detect_for_tenants()
    logger.info(
        "Pattern detection: %s tenant(s), %s failed, %s",
        summary["tenants"],
        len(summary["failed"]),
        summary["totals"],
    )
    return summary
