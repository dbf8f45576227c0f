from celery import shared_task

from analytics.services.job_runs import tenant_job_register
from analytics.tasks import tenant_job_dispatch
from predictions.services.cycle import PREDICTION_CYCLE

tenant_job_register(PREDICTION_CYCLE)


@shared_task(bind=True, name="predictions.run_cycle", soft_time_limit=5 * 60, time_limit=6 * 60)
def run_cycle_task(self) -> dict:
    """Fan out the hourly prediction cycle over every active tenant (`analytics.job_chunk`)."""
    return tenant_job_dispatch(self, PREDICTION_CYCLE)
