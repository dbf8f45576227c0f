from datetime import datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from analytics.datetimes import parse_aware_datetime
from analytics.management.tenant_option import tenants_for_option
from analytics.services.price_catalog import CATALOG_VERSION
from analytics.services.pricing import DEFAULT_CHUNK, RepriceResult, cost_records_reprice


class Command(BaseCommand):
    help = (
        "Recompute the costs the service computed (catalogue, override and unpriced records; "
        f"never client costs) with the installed catalogue ({CATALOG_VERSION}) and each "
        "tenant's price overrides. Records created in [--since, --until); a date alone is "
        "midnight UTC. Reports rows changed and the cents delta, and marks the snapshots of "
        "changed periods stale."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="one tenant (default: all active)")
        parser.add_argument(
            "--since", metavar="DATE", required=True, help="YYYY-MM-DD or ISO-8601 instant"
        )
        parser.add_argument(
            "--until", metavar="DATE", help="exclusive end, as --since (default: no end)"
        )
        parser.add_argument("--model", metavar="NAME", help="only records of this model name")
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would change, write nothing"
        )
        parser.add_argument(
            "--chunk-days",
            type=int,
            default=DEFAULT_CHUNK.days,
            help=f"days of records per statement and commit (default {DEFAULT_CHUNK.days})",
        )

    # complexity: checks every option before any tenant is touched, then reports each tenant's
    # result and the total
    def handle(self, *args, **options):
        since = self._instant("--since", options["since"])
        until = None if options["until"] is None else self._instant("--until", options["until"])
        if until is not None and since >= until:
            raise CommandError("--since must be before --until.")
        if options["chunk_days"] < 1:
            raise CommandError("--chunk-days must be at least 1.")
        model = options["model"]
        if model is not None and not 0 < len(model) <= 64:
            raise CommandError("--model must be 1 to 64 characters.")
        tenants = tenants_for_option(options["tenant"])
        dry_run = options["dry_run"]
        verb = "Would reprice" if dry_run else "Repricing"
        self.stdout.write(f"{verb} records of {len(tenants)} tenant(s) with {CATALOG_VERSION}...")

        total = RepriceResult(dry_run=dry_run)
        for tenant in tenants:

            def progress(start: datetime, end: datetime, chunk: RepriceResult, slug=tenant.slug):
                self.stdout.write(
                    f"  {slug} {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}: "
                    f"{chunk.records_examined} examined, {chunk.rows_changed} changed, "
                    f"{chunk.cents_delta:+} cents"
                )

            result = cost_records_reprice(
                tenant=tenant,
                since=since,
                until=until,
                model=model,
                dry_run=dry_run,
                chunk=timedelta(days=options["chunk_days"]),
                progress=progress,
            )
            total.add(result)
            self.stdout.write(
                f"{tenant.slug}: {result.rows_changed} row(s) changed of "
                f"{result.records_examined}, {result.cents_delta:+} cents"
            )

        summary = (
            f"{total.rows_changed} row(s) {'would change' if dry_run else 'changed'}, "
            f"cents delta {total.cents_delta:+}, {total.newly_priced} newly priced, "
            f"{total.newly_unpriced} newly unpriced, "
            f"{total.snapshots_marked_stale} snapshot(s) "
            f"{'would be' if dry_run else ''} marked stale".replace("  ", " ")
        )
        self.stdout.write(self.style.SUCCESS(f"Done{' (dry run)' if dry_run else ''}: {summary}."))

    @staticmethod
    def _instant(option: str, raw: str) -> datetime:
        try:
            return parse_aware_datetime(raw, allow_date=True)
        except ValueError as exc:
            raise CommandError(f"{option} {exc}, got {raw!r}.") from None
