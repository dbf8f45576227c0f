from analytics.management.tenant_option import TenantJobCommand
from analytics.models import Tenant
from predictions.services.cycle import prediction_cycles_run


class Command(TenantJobCommand):
    help = "Run the prediction cycle (failure likelihood, cost overrun) for one or all tenants."
    job_title = "Prediction cycle"

    def run(self, *, tenants, on_tenant_done):
        return prediction_cycles_run(tenants=tenants, on_tenant_done=on_tenant_done)

    def summary(self, totals: dict) -> str:
        return (
            f"{totals['predictions_created']} prediction(s) written, "
            f"{totals['errors']} emission error(s)."
        )

    def tenant_line(self, tenant: Tenant, result: dict) -> str:
        return (
            f"{tenant.slug}: {len(result['failure_predictions'])} failure likelihood, "
            f"{len(result['cost_predictions'])} cost overrun prediction(s) written"
        )

    def tenant_errors(self, result: dict) -> list[str]:
        return [f"emission error: {message}" for message in result["errors"]]
