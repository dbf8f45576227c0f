from celery import shared_task

from analytics.services.job_runs import tenant_job_register
from analytics.tasks import tenant_job_dispatch
from feedback.services.patterns import DETECT_PATTERNS

tenant_job_register(DETECT_PATTERNS)


@shared_task(bind=True, name="feedback.detect_patterns", soft_time_limit=5 * 60, time_limit=6 * 60)
def detect_patterns_task(self) -> dict:
    """Fan out hourly pattern detection over every active tenant (`analytics.job_chunk`)."""
    return tenant_job_dispatch(self, DETECT_PATTERNS)
