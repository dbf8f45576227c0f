from django.core.management.base import BaseCommand, CommandError

from analytics.models import Tenant
from analytics.services.retention import retention_run


class Command(BaseCommand):
    help = (
        "Delete raw cost records past each tenant's retention (its retention_days, else "
        "COSTWISE_RECORD_RETENTION_DAYS): months past every tenant's retention are dropped "
        "as partitions, the rest deleted in batches, with their idempotency keys. Snapshots, "
        "anomalies and incidents are kept. Inactive tenants count too."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--tenant",
            metavar="SLUG",
            help="only this tenant's records, in batches (no month is dropped)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would go, write nothing"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            help="records per statement and commit (default COSTWISE_RETENTION_BATCH_SIZE)",
        )

    def handle(self, *args, **options):
        tenant = None
        if options["tenant"] is not None:
            tenant = Tenant.objects.filter(slug=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"Unknown tenant {options['tenant']!r}.")
        batch_size = options["batch_size"]
        if batch_size is not None and not 1 <= batch_size <= 100_000:
            raise CommandError("--batch-size must be between 1 and 100000.")
        dry_run = options["dry_run"]
        self.stdout.write(
            ("Dry run: nothing is written. " if dry_run else "")
            + f"Retention for {tenant.slug if tenant else 'every tenant'}..."
        )
        report = retention_run(
            tenant=tenant,
            dry_run=dry_run,
            batch_size=batch_size,
            progress=lambda line: self.stdout.write(f"  {line}"),
        )
        if report.outcome == "skipped":
            raise CommandError("Another retention run holds lock 7008; try again later.")
        totals = report.totals
        verb = "would go" if dry_run else "gone"
        if totals["partitions_busy"]:
            self.stdout.write(
                self.style.WARNING(
                    f"{totals['partitions_busy']} partition(s) past every retention could not "
                    "be detached while the table was busy; the next run drops them."
                )
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.tenants} tenant(s): {totals['partitions_dropped']} partition(s) "
                f"({totals['rows_dropped']} records), {totals['rows_deleted']} records and "
                f"{totals['keys_deleted']} idempotency keys {verb}."
            )
        )
