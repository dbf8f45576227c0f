from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from analytics.management.tenant_option import tenants_for_option
from analytics.services.anomalies import anomalies_detect_active_tenants


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} must be a date as YYYY-MM-DD, got {value!r}.") from None


class Command(BaseCommand):
    help = (
        "Run anomaly detection for one or all active tenants, as of today, one day "
        "(--as-of) or every day of a range in order (--since/--until, a backtest: breach "
        "streaks and drift tracking build up day by day as they would have live)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")
        parser.add_argument("--as-of", metavar="DATE", help="detection day (default: today)")
        parser.add_argument("--since", metavar="DATE", help="first day of a backtest range")
        parser.add_argument("--until", metavar="DATE", help="last day of a backtest range")

    def handle(self, *args, tenant=None, as_of=None, since=None, until=None, **options):
        days = self._days(as_of=as_of, since=since, until=until)
        tenants = tenants_for_option(tenant)
        if not tenants:
            self.stdout.write("No active tenants.")
            return

        grand = {"succeeded": 0, "failed": 0, "detected": 0, "created": 0, "updated": 0}
        for day in days:
            label = day.isoformat() if day else "today"
            self.stdout.write(f"Detecting anomalies as of {label} for {len(tenants)} tenant(s)…")
            totals = anomalies_detect_active_tenants(
                as_of=day, tenants=tenants, progress=self._progress
            )
            for key in grand:
                grand[key] += totals[key]
        summary = (
            f"Done: {len(days)} day(s), {grand['detected']} detected "
            f"({grand['created']} created, {grand['updated']} updated), "
            f"{grand['failed']} tenant run(s) failed."
        )
        if grand["failed"]:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))

    def _progress(self, tenant, result, error) -> None:
        if error is not None:
            self.stderr.write(f"  {tenant.slug}: failed: {error}")
            return
        self.stdout.write(
            f"  {tenant.slug}: {result['detected']} detected "
            f"({result['created']} created, {result['updated']} updated)"
        )

    def _days(self, *, as_of, since, until) -> list[date | None]:
        today = timezone.now().date()
        if as_of and (since or until):
            raise CommandError("Give either --as-of or --since/--until, not both.")
        if bool(since) != bool(until):
            raise CommandError("--since and --until go together.")
        if as_of:
            days = [_parse_date(as_of, "--as-of")]
        elif since:
            first, last = _parse_date(since, "--since"), _parse_date(until, "--until")
            if first > last:
                raise CommandError("--since must not be after --until.")
            days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        else:
            return [None]
        if days[-1] > today:
            raise CommandError(f"Dates must not be later than today ({today}).")
        return days
