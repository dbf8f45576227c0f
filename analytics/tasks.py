"""Celery tasks of the analytics app: thin wrappers, the work lives in services.

Task names are the ones listed in CELERY_BEAT_SCHEDULE (config/settings.py).
"""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


# --- snapshots -----------------------------------------------------------------------------


@shared_task(name="analytics.hourly_snapshots", soft_time_limit=45 * 60, time_limit=50 * 60)
def hourly_snapshots_task() -> dict:
    """Snapshot the previous full hour for every active tenant; recompute stale snapshots."""
    from analytics.services.jobs import hourly_snapshots_run

    report = hourly_snapshots_run().as_dict()
    logger.info("hourly_snapshots: %s", report)
    return report


@shared_task(name="analytics.daily_snapshots", soft_time_limit=5 * 3600, time_limit=5 * 3600 + 600)
def daily_snapshots_task() -> dict:
    """Snapshot yesterday and refresh baselines for every active tenant (lock 7004)."""
    from analytics.services.jobs import daily_snapshots_run

    report = daily_snapshots_run().as_dict()
    logger.info("daily_snapshots: %s", report)
    return report


# --- anomaly detection ---------------------------------------------------------------------


@shared_task(name="analytics.detect_anomalies", soft_time_limit=40 * 60, time_limit=45 * 60)
def detect_anomalies_task() -> dict:
    """Detect anomalies as of today for every active tenant, each in its own transaction."""
    from analytics.services.anomalies import anomalies_detect_active_tenants

    totals = anomalies_detect_active_tenants()
    logger.info("detect_anomalies: %s", totals)
    return totals
