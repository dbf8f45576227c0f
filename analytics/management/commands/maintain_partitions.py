from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from analytics.services.partitions import partitions_list, partitions_maintain


class Command(BaseCommand):
    help = (
        "Create the month partitions of cost records this month and --months-ahead after it "
        "(default COSTWISE_PARTITION_MONTHS_AHEAD), and one for every month with records in "
        "the DEFAULT partition, moving them there. Safe to run at any time."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--months-ahead",
            type=int,
            default=settings.COSTWISE_PARTITION_MONTHS_AHEAD,
            help="months after the current one (default %(default)s)",
        )

    def handle(self, *args, **options):
        if not 1 <= options["months_ahead"] <= 24:
            raise CommandError("--months-ahead must be between 1 and 24.")
        report = partitions_maintain(months_ahead=options["months_ahead"])
        for partition in partitions_list():
            self.stdout.write(f"  {partition.name}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.totals['created']} partition(s) created, "
                f"{report.totals['rows_moved']} record(s) moved out of DEFAULT."
            )
        )
