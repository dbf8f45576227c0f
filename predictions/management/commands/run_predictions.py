from django.core.management.base import BaseCommand, CommandError

from analytics.management.tenant_option import tenants_for_option
from analytics.models import Tenant
from predictions.services.cycle import prediction_cycles_run


class Command(BaseCommand):
    help = "Run the prediction cycle (failure likelihood, cost overrun) for one or all tenants."

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")

    def handle(self, *args, tenant: str | None = None, **options):
        tenants = tenants_for_option(tenant)
        report = prediction_cycles_run(tenants=tenants, on_tenant_done=self._report)
        if report.failed_tenants:
            raise CommandError(
                f"Prediction cycle failed for {len(report.failed_tenants)} of "
                f"{report.tenants} tenant(s): {', '.join(report.failed_tenants)}"
            )
        totals = report.totals
        self.stdout.write(
            self.style.SUCCESS(
                f"Prediction cycle done for {report.tenants} tenant(s): "
                f"{totals['predictions_created']} prediction(s) written, "
                f"{totals['errors']} emission error(s)."
            )
        )

    def _report(self, tenant: Tenant, result: dict | None, error: Exception | None) -> None:
        if error is not None:
            self.stderr.write(f"{tenant.slug}: failed: {error}")
            return
        self.stdout.write(
            f"{tenant.slug}: {len(result['failure_predictions'])} failure likelihood, "
            f"{len(result['cost_predictions'])} cost overrun prediction(s) written"
        )
        for message in result["errors"]:
            self.stderr.write(f"{tenant.slug}: emission error: {message}")
