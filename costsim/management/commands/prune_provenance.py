from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.services.locks import LockId
from costsim.services.provenance import provenance_prune


class Command(BaseCommand):
    help = (
        "Delete provenance rows created more than N days ago (default "
        "COSTSIM_PROVENANCE_RETENTION_DAYS), under advisory lock 7003; prints the count, or "
        "'skipped' when another process holds the lock."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--days", type=int, help="retention in days, at least 1 (default: the setting)"
        )
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args, days: int | None, dry_run: bool, **options):
        if days is None:
            days = settings.COSTSIM_PROVENANCE_RETENTION_DAYS
        if days < 1:
            raise CommandError("--days must be at least 1.")
        self.stdout.write(f"Pruning provenance older than {days} days{' (dry run)' * dry_run}…")
        count = provenance_prune(days=days, dry_run=dry_run)
        if count is None:
            self.stdout.write(
                self.style.WARNING(
                    f"skipped: another process holds lock {int(LockId.PROVENANCE_PRUNE)}"
                )
            )
            return
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {count} provenance rows."))
