"""Notification beat jobs; the services hold the logic, these only call them."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)


# Every 10 s with `expires` 9 s. Runs may overlap: SKIP LOCKED gives each its own rows.
@shared_task(name="notifications.dispatch", soft_time_limit=5 * 60, time_limit=6 * 60)
def dispatch_task() -> dict:
    """Send one batch of due deliveries."""
    from notifications.services.outbox import deliveries_dispatch

    result = deliveries_dispatch()
    if result.claimed:
        logger.info(
            "Notifications: %s sent, %s retrying, %s failed, %s skipped",
            result.sent,
            result.retrying,
            result.failed,
            result.skipped,
        )
    return {
        "sent": result.sent,
        "retrying": result.retrying,
        "failed": result.failed,
        "skipped": result.skipped,
    }


@shared_task(name="notifications.budget_thresholds", soft_time_limit=5 * 60, time_limit=6 * 60)
def budget_thresholds_task() -> dict:
    """Queue budget threshold crossings of every active tenant, one transaction each."""
    from analytics.models import Tenant
    from notifications.services.events import budget_thresholds_check

    queued = 0
    for tenant in Tenant.objects.active():
        try:
            queued += budget_thresholds_check(tenant=tenant)
        except Exception:
            logger.exception("Budget thresholds of tenant %s failed", tenant.slug)
    return {"queued": queued}


@shared_task(name="notifications.daily_digest", soft_time_limit=10 * 60, time_limit=11 * 60)
def daily_digest_task() -> dict:
    """Queue yesterday's (UTC) digest of every daily-digest rule, then purge finished
    deliveries older than 30 days."""
    from notifications.selectors import held_days_before
    from notifications.services.events import digests_build
    from notifications.services.outbox import deliveries_purge

    today = timezone.now().date()
    # Yesterday, and any earlier day a missed run left held rows for.
    days = sorted({today - timedelta(days=1), *held_days_before(day=today)})
    queued = sum(digests_build(day=day) for day in days)
    purged = deliveries_purge()
    logger.info("Queued %s digests for %s day(s); purged %s deliveries", queued, len(days), purged)
    return {"days": [day.isoformat() for day in days], "queued": queued, "purged": purged}
