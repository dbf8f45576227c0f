from django.core.management.base import BaseCommand, CommandError

from costsim.services.locks import LockId, leader_lock
from costsim.services.outbox import PURGE_AFTER_DAYS, alerts_purge


class Command(BaseCommand):
    help = (
        "Delete sent, failed and skipped breaker alerts created more than N days ago "
        f"(default {PURGE_AFTER_DAYS}), under lock 7003. Pending alerts are kept."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=PURGE_AFTER_DAYS, help="age in days")
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args, days, dry_run, **options):
        if days < 1:
            raise CommandError("--days must be at least 1.")
        self.stdout.write(f"Purging alerts older than {days} days{' (dry run)' * dry_run}…")
        with leader_lock(LockId.PROVENANCE_PRUNE) as leader:
            if not leader:
                self.stdout.write(
                    self.style.WARNING(
                        f"skipped: another process holds lock {int(LockId.PROVENANCE_PRUNE)}"
                    )
                )
                return
            count = alerts_purge(older_than_days=days, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {count} alerts."))
