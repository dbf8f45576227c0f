from datetime import date, timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from analytics.datetimes import parse_supported_date
from analytics.management.tenant_option import tenants_for_option
from analytics.services.anomalies import anomalies_detect_active_tenants
from analytics.services.jobs import JobReport


def _parse_date(value: str, option: str) -> date:
    try:
        return parse_supported_date(value)
    except ValueError as exc:
        raise CommandError(f"{option} {exc}, got {value!r}.") from None


class Command(BaseCommand):
    help = (
        "Run anomaly detection for one or all active tenants, as of today, one day "
        "(--as-of) or every day of a range in order (--since/--until, a backtest: breach "
        "streaks and drift tracking build up day by day as they would have live). "
        "With --dry-run the whole run is rolled back: it prints the incidents it would "
        "have opened and writes nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", metavar="SLUG", help="only this tenant")
        parser.add_argument("--as-of", metavar="DATE", help="detection day (default: today)")
        parser.add_argument("--since", metavar="DATE", help="first day of a backtest range")
        parser.add_argument("--until", metavar="DATE", help="last day of a backtest range")
        parser.add_argument(
            "--dry-run", action="store_true", help="compute and report, write nothing"
        )

    def handle(
        self, *args, tenant=None, as_of=None, since=None, until=None, dry_run=False, **options
    ):
        days = self._days(as_of=as_of, since=since, until=until)
        tenants = tenants_for_option(tenant)
        if not tenants:
            self.stdout.write("No active tenants.")
            return
        self._incidents = {}
        if not dry_run:
            self._run(days, tenants)
            return
        # One transaction around the whole range, rolled back at the end: streaks and
        # incidents build up day by day as they would live, and nothing stays written.
        with transaction.atomic():
            self._run(days, tenants)
            self._report_incidents()
            transaction.set_rollback(True)
        self.stdout.write("Dry run: nothing was written.")

    def _run(self, days, tenants) -> None:
        grand = JobReport(job="detect_anomalies")
        for day in days:
            label = day.isoformat() if day else "today"
            self.stdout.write(f"Detecting anomalies as of {label} for {len(tenants)} tenant(s)…")
            grand.merge(
                anomalies_detect_active_tenants(as_of=day, tenants=tenants, progress=self._progress)
            )
        totals = grand.totals
        summary = (
            f"Done: {len(days)} day(s), {totals['detected']} detected "
            f"({totals['created']} created, {totals['updated']} updated), "
            f"{totals['opened']} incident(s) opened, "
            f"{len(grand.failed_tenants)} tenant run(s) failed."
        )
        if grand.failed_tenants:
            raise CommandError(summary)
        self.stdout.write(self.style.SUCCESS(summary))

    def _progress(self, tenant, result, error) -> None:
        if error is not None:
            self.stderr.write(f"  {tenant.slug}: failed: {error}")
            return
        for incident in result["incidents"]:
            self._incidents[incident.pk] = incident
        self.stdout.write(
            f"  {tenant.slug}: {result['detected']} detected "
            f"({result['created']} created, {result['updated']} updated), "
            f"{result['opened']} incident(s) opened"
        )

    def _report_incidents(self) -> None:
        self.stdout.write(f"Incidents that would be open or updated: {len(self._incidents)}")
        for incident in sorted(self._incidents.values(), key=lambda i: (i.started_on, i.pk)):
            incident.refresh_from_db()
            causes = ", ".join(
                f"{cause['entity_type']} {cause['entity_id']} ({cause['share']:.0%})"
                for cause in incident.root_causes[:3]
            )
            self.stdout.write(
                f"  [{incident.severity}] {incident.title}"
                + (f"; root causes: {causes}" if causes else "")
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
