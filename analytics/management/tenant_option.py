"""The `--tenant SLUG` option of the per-tenant job commands, and their shared base."""

from django.core.management.base import BaseCommand, CommandError

from analytics.models import Tenant


def tenants_for_option(slug: str | None) -> list[Tenant]:
    """Every active tenant without a slug, else that one tenant; CommandError if it is
    unknown or inactive (jobs never run for inactive tenants)."""
    if slug is None:
        return list(Tenant.objects.active())
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"Unknown tenant {slug!r}.")
    if not tenant.is_active:
        raise CommandError(f"Tenant {slug!r} is inactive.")
    return [tenant]


class TenantJobCommand(BaseCommand):
    """A command that runs one per-tenant job for `--tenant SLUG` or every active tenant.

    A subclass names the job (`job_title`, e.g. "Pattern detection") and implements `run`
    (the service's all-tenants entry), `summary` (the totals line), `tenant_line` (one
    tenant's result) and, if its runs report errors without failing, `tenant_errors`. A failed
    tenant does not stop the others; the command then exits with an error naming them.
    """

    job_title = ""

    def run(self, *, tenants: list[Tenant], on_tenant_done):
        raise NotImplementedError

    def summary(self, totals: dict) -> str:
        raise NotImplementedError

    def tenant_line(self, tenant: Tenant, result: dict) -> str:
        raise NotImplementedError

    def tenant_errors(self, result: dict) -> list[str]:
        """Errors a tenant's run reported without failing; printed to stderr."""
        return []

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")

    def handle(self, *args, tenant: str | None = None, **options):
        report = self.run(tenants=tenants_for_option(tenant), on_tenant_done=self._report)
        if report.failed_tenants:
            raise CommandError(
                f"{self.job_title} failed for {len(report.failed_tenants)} of "
                f"{report.tenants} tenant(s): {', '.join(report.failed_tenants)}"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{self.job_title} done for {report.tenants} tenant(s): "
                f"{self.summary(report.totals)}"
            )
        )

    def _report(self, tenant: Tenant, result: dict | None, error: Exception | None) -> None:
        if error is not None:
            self.stderr.write(f"{tenant.slug}: failed: {error}")
            return
        self.stdout.write(self.tenant_line(tenant, result))
        for message in self.tenant_errors(result):
            self.stderr.write(f"{tenant.slug}: {message}")
