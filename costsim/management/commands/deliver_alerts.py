from django.core.management.base import BaseCommand, CommandError

from costsim.services.locks import LockId
from costsim.services.outbox import alert_queue_stats, alerts_deliver


class Command(BaseCommand):
    help = (
        "Deliver one batch of due breaker alerts to Alertmanager (under lock 7002), as the "
        "beat job does every 10 s, and print the queue before and after."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size", type=int, help="alerts to claim (default COSTSIM_ALERT_BATCH_SIZE)"
        )

    def handle(self, *args, batch_size, **options):
        if batch_size is not None and batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        self.stdout.write(f"Queue before: {self._stats()}")
        result = alerts_deliver(batch_size=batch_size)
        if not result.leader:
            self.stdout.write(
                self.style.WARNING(
                    f"skipped: another process holds lock {int(LockId.ALERT_OUTBOX)}"
                )
            )
            return
        self.stdout.write(f"Queue after:  {self._stats()}")
        self.stdout.write(
            self.style.SUCCESS(
                f"Delivered batch: {result.sent} sent, {result.retrying} to retry, "
                f"{result.failed} failed, {result.skipped} skipped."
            )
        )

    @staticmethod
    def _stats() -> str:
        stats = alert_queue_stats()
        oldest = stats["oldest_pending_at"]
        return (
            f"{stats['pending']} pending ({stats['due']} due), {stats['sent']} sent, "
            f"{stats['failed']} failed, {stats['skipped']} skipped"
            + (f"; oldest pending created {oldest.isoformat()}" if oldest else "")
        )
