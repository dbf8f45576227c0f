from django.core.management.base import BaseCommand, CommandError

from analytics.management.tenant_option import tenants_for_option
from analytics.models import Tenant
from feedback.services.patterns import patterns_detect_for_tenants


class Command(BaseCommand):
    help = "Detect failure patterns and cost spikes for one or every active tenant."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")

    def handle(self, *args, tenant: str | None = None, **options):
        tenants = tenants_for_option(tenant)
        report = patterns_detect_for_tenants(tenants=tenants, on_tenant_done=self._report)
        if report.failed_tenants:
            raise CommandError(
                f"Pattern detection failed for {len(report.failed_tenants)} of "
                f"{report.tenants} tenant(s): {', '.join(report.failed_tenants)}"
            )
        totals = report.totals
        self.stdout.write(
            self.style.SUCCESS(
                f"Pattern detection done for {report.tenants} tenant(s): "
                f"{totals['feedback_created']} created, {totals['feedback_updated']} updated."
            )
        )

    def _report(self, tenant: Tenant, result: dict | None, error: Exception | None) -> None:
        if error is not None:
            self.stderr.write(f"{tenant.slug}: failed: {error}")
            return
        self.stdout.write(
            f"{tenant.slug}: {result['failure_patterns']} failure pattern(s), "
            f"{result['cost_spikes']} cost spike(s); {result['feedback_created']} created, "
            f"{result['feedback_updated']} updated"
        )
