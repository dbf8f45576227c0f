from datetime import date

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from analytics.datetimes import parse_supported_date
from analytics.management.tenant_option import tenants_for_option
from analytics.models import SnapshotType
from analytics.services.jobs import (
    DAILY_LOCK_ID,
    SKIPPED,
    latest_periods,
    snapshots_backfill,
    snapshots_compute_periods,
)


class Command(BaseCommand):
    help = (
        "Compute cost snapshots. Without a range: the previous full hour and/or yesterday. "
        "With --since/--until: every period of those days (inclusive), oldest first, under "
        f"advisory lock {DAILY_LOCK_ID}."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="one tenant (default: all active)")
        parser.add_argument(
            "--type",
            dest="snapshot_type",
            choices=SnapshotType.values,
            help="hourly or daily (default: both)",
        )
        parser.add_argument("--since", metavar="DATE", help="first day, YYYY-MM-DD")
        parser.add_argument("--until", metavar="DATE", help="last day, YYYY-MM-DD (inclusive)")
        parser.add_argument(
            "--evaluate",
            action="store_true",
            help="also evaluate each snapshot with ANALYTICS_SNAPSHOT_THRESHOLD_PCT",
        )

    def handle(self, *args, **options):
        now = timezone.now()
        tenants = tenants_for_option(options["tenant"])
        snapshot_types = (
            [options["snapshot_type"]] if options["snapshot_type"] else list(SnapshotType.values)
        )
        since, until = options["since"], options["until"]
        if (since is None) != (until is None):
            raise CommandError("--since and --until go together.")

        if since is None:
            periods = latest_periods(snapshot_types=snapshot_types, now=now)
            self.stdout.write(f"Computing {len(periods)} period(s) for {len(tenants)} tenant(s)...")
            report = snapshots_compute_periods(
                tenants=tenants,
                periods=periods,
                evaluate=options["evaluate"],
                progress=self.stdout.write,
            )
        else:
            since, until = self._date("--since", since), self._date("--until", until)
            if since > until:
                raise CommandError("--since must not be after --until.")
            if since > now.date():
                raise CommandError("--since must not be in the future.")
            self.stdout.write(
                f"Backfilling {', '.join(snapshot_types)} snapshots from {since} to {until} "
                f"for {len(tenants)} tenant(s)..."
            )
            report = snapshots_backfill(
                tenants=tenants,
                snapshot_types=snapshot_types,
                since=since,
                until=until,
                evaluate=options["evaluate"],
                progress=self.stdout.write,
                now=now,
            )
            if report.outcome == SKIPPED:
                raise CommandError(
                    f"Lock {DAILY_LOCK_ID} is held by the daily job or another backfill; "
                    "nothing was computed."
                )

        totals = report.totals
        summary = f"{totals['snapshots']} snapshot(s) computed, {totals['failed_snapshots']} failed"
        if options["evaluate"]:
            summary += f"; {totals['evaluated']} evaluated, {totals['triggered']} triggered"
        if totals["failed_snapshots"]:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(f"Done: {summary}."))

    @staticmethod
    def _date(option: str, raw: str) -> date:
        try:
            return parse_supported_date(raw)
        except ValueError as exc:
            raise CommandError(f"{option} {exc}, got {raw!r}.") from None
