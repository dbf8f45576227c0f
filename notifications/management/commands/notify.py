from django.core.management.base import BaseCommand, CommandError

from notifications.models import ChannelKind
from notifications.selectors import outbox_stats, recent_failures
from notifications.services.outbox import (
    PURGE_AFTER_DAYS,
    deliveries_dispatch,
    deliveries_purge,
    deliveries_retry,
)


class Command(BaseCommand):
    help = (
        "Operate the notification outbox: `inspect` prints the queue and recent failures, "
        "`dispatch` sends due deliveries as the beat job does every 10 s, `retry` queues "
        "failed deliveries again, `purge` deletes old finished ones."
    )

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
        inspect = commands.add_parser("inspect", help="queue by status, due rows, failures")
        inspect.add_argument("--kind", choices=ChannelKind.values, help="one channel kind")
        inspect.add_argument("--failures", type=int, default=10, help="failures to list")

        dispatch = commands.add_parser("dispatch", help="send due deliveries now")
        dispatch.add_argument("--batch-size", type=int, help="rows per batch (NOTIFY_BATCH_SIZE)")
        dispatch.add_argument(
            "--until-empty",
            action="store_true",
            help="repeat batches until nothing due is left (rows that fail wait for backoff)",
        )

        retry = commands.add_parser("retry", help="queue failed deliveries again, due now")
        which = retry.add_mutually_exclusive_group(required=True)
        which.add_argument("--id", type=int, action="append", dest="ids", help="a delivery id")
        which.add_argument("--all-failed", action="store_true", help="every failed delivery")
        retry.add_argument("--kind", choices=ChannelKind.values, help="one channel kind")

        purge = commands.add_parser("purge", help="delete finished deliveries past an age")
        purge.add_argument("--older-than-days", type=int, default=PURGE_AFTER_DAYS)
        purge.add_argument("--dry-run", action="store_true", help="count, delete nothing")

    def handle(self, *args, verb, **options):
        getattr(self, f"_{verb.replace('-', '_')}")(**options)

    def _inspect(self, *, kind, failures, **options):
        self.stdout.write(self._stats(kind))
        rows = recent_failures(kind=kind, limit=max(failures, 0))
        if rows:
            self.stdout.write("Recent failures:")
        for row in rows:
            at = row.last_attempt_at.isoformat() if row.last_attempt_at else "-"
            self.stdout.write(
                f"  #{row.pk} {row.channel.kind}:{row.channel.name} {row.event_type} "
                f"{row.status} {row.attempts}/{row.max_attempts} at {at}: {row.last_error}"
            )
        self.stdout.write(self.style.SUCCESS("Inspected the outbox."))

    def _dispatch(self, *, batch_size, until_empty, **options):
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.stdout.write(f"Queue before: {self._stats(None)}")
        totals = {"sent": 0, "retrying": 0, "failed": 0, "skipped": 0}
        while True:
            result = deliveries_dispatch(batch_size=batch_size)
            for field in totals:
                totals[field] += getattr(result, field)
            # Failed attempts are not due again at once, so this ends.
            if not until_empty or result.claimed == 0:
                break
        self.stdout.write(f"Queue after:  {self._stats(None)}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Dispatched: {totals['sent']} sent, {totals['retrying']} to retry, "
                f"{totals['failed']} failed, {totals['skipped']} skipped."
            )
        )

    def _retry(self, *, ids, all_failed, kind, **options):
        count = deliveries_retry(ids=None if all_failed else ids, kind=kind)
        self.stdout.write(self.style.SUCCESS(f"Queued {count} failed deliveries again."))

    def _purge(self, *, older_than_days, dry_run, **options):
        if older_than_days < 0:
            raise CommandError("--older-than-days must be 0 or more.")
        count = deliveries_purge(older_than_days=older_than_days, dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {count} finished deliveries."))

    @staticmethod
    def _stats(kind: str | None) -> str:
        stats = outbox_stats(kind=kind)
        oldest = stats["oldest_pending_at"]
        return (
            f"{stats['pending']} pending ({stats['due']} due), {stats['held']} held, "
            f"{stats['sent']} sent, {stats['digested']} digested, {stats['failed']} failed, "
            f"{stats['skipped']} skipped"
            + (f"; oldest pending created {oldest.isoformat()}" if oldest else "")
        )
