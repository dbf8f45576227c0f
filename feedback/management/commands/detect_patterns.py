from analytics.management.tenant_option import TenantJobCommand
from analytics.models import Tenant
from feedback.services.patterns import patterns_detect_for_tenants


class Command(TenantJobCommand):
    help = "Detect failure patterns and cost spikes for one or every active tenant."
    job_title = "Pattern detection"

    def run(self, *, tenants, on_tenant_done):
        return patterns_detect_for_tenants(tenants=tenants, on_tenant_done=on_tenant_done)

    def summary(self, totals: dict) -> str:
        return f"{totals['feedback_created']} created, {totals['feedback_updated']} updated."

    def tenant_line(self, tenant: Tenant, result: dict) -> str:
        return (
            f"{tenant.slug}: {result['failure_patterns']} failure pattern(s), "
            f"{result['cost_spikes']} cost spike(s); {result['feedback_created']} created, "
            f"{result['feedback_updated']} updated"
        )
