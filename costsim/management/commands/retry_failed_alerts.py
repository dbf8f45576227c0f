from django.core.management.base import BaseCommand

from costsim.services.outbox import alerts_retry_failed


class Command(BaseCommand):
    help = (
        "Put failed breaker alerts back in the outbox: status pending, three more attempts, "
        "due now. Without --id every failed alert is retried."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--id", dest="ids", type=int, action="append", help="outbox row id (repeatable)"
        )

    def handle(self, *args, ids, **options):
        scope = f"alerts {', '.join(map(str, ids))}" if ids else "every failed alert"
        self.stdout.write(f"Retrying {scope}…")
        count = alerts_retry_failed(ids=ids)
        self.stdout.write(self.style.SUCCESS(f"Re-queued {count} failed alerts."))
