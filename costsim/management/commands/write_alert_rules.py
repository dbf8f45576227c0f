from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from costsim.services.alert_rules import alert_rules_write


class Command(BaseCommand):
    help = (
        "Write the Prometheus alert rule file, byte-identical to "
        "GET /api/v1/costsim/alert-rules.yaml."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="file to write (overwritten if it exists)")

    def handle(self, *args, path, **options):
        target = Path(path)
        self.stdout.write(f"Writing alert rules to {target}…")
        try:
            count = alert_rules_write(path=target)
        except OSError as exc:
            raise CommandError(f"Cannot write {target}: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote {count} alert rules to {target}."))
