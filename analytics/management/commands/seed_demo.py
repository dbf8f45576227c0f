from datetime import timedelta

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from analytics.models import SnapshotType
from analytics.services.anomalies import anomalies_detect
from analytics.services.demo import DAYS, demo_seed
from analytics.services.evaluation import snapshot_evaluate
from analytics.services.snapshots import baseline_compute, snapshot_compute

DETECTION_DAYS = 14


class Command(BaseCommand):
    help = (
        "Create the `demo` tenant with 60 days of deterministic traffic and injected incidents, "
        "then compute snapshots, baselines, anomalies, patterns and predictions. Safe to re-run."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--skip-analysis",
            action="store_true",
            help="only write the records; do not compute snapshots, anomalies or predictions",
        )

    def handle(self, *args, skip_analysis: bool, **options):
        now = timezone.now()
        result = demo_seed(now=now, progress=self._progress)
        self.stdout.write(
            f"Demo tenant {result.tenant.slug}: {result.records_accepted} of "
            f"{result.records_sent} cost records new, {result.runs_created} runs new."
        )
        if not skip_analysis:
            self._analyse(result.tenant, now)
        self.stdout.write(self.style.SUCCESS("Demo data ready; open /admin/ to see it."))
        if result.raw_key:
            self.stdout.write("API key of the demo tenant (shown once):")
            self.stdout.write(result.raw_key)

    def _progress(self, message: str) -> None:
        self.stdout.write(f"  {message}")

    def _analyse(self, tenant, now) -> None:
        today = now.replace(hour=0, minute=0, second=0, microsecond=0)
        threshold = settings.ANALYTICS_SNAPSHOT_THRESHOLD_PCT

        # Daily snapshots oldest first: each one computes the baselines as of its date from
        # the snapshots before it.
        for day in range(DAYS, 0, -1):
            snapshot = snapshot_compute(
                tenant=tenant,
                snapshot_type=SnapshotType.DAILY,
                period_start=today - timedelta(days=day),
            )
            snapshot_evaluate(snapshot=snapshot, threshold_pct=threshold)
        self._progress(f"daily snapshots: {DAYS}")
        # Hourly snapshots for eight days, so the latest hours have a same-hour baseline of
        # seven samples. They are not evaluated here: today's injected incidents sit in the
        # few hours since midnight, and the hourly job evaluates each new hour anyway.
        hour = now.replace(minute=0, second=0, microsecond=0)
        for hours_back in range(8 * 24, 0, -1):
            snapshot_compute(
                tenant=tenant,
                snapshot_type=SnapshotType.HOURLY,
                period_start=hour - timedelta(hours=hours_back),
            )
        self._progress(f"hourly snapshots: {8 * 24}")
        for window in (7, 30):
            baseline_compute(tenant=tenant, window_days=window, as_of=today.date())

        # Detection day by day over the last two weeks, as the hourly job would have run it:
        # breach and drift streaks build up, and each incident opens on the day it showed.
        detected = opened = 0
        for days_back in range(DETECTION_DAYS - 1, -1, -1):
            as_of = (today - timedelta(days=days_back)).date()
            result = anomalies_detect(tenant=tenant, as_of=as_of)
            detected, opened = result["detected"], opened + result["opened"]
        self._progress(f"anomalies detected today: {detected}; incidents opened: {opened}")

        # feedback and predictions sit above analytics in the import graph, so they are
        # reached through their commands.
        call_command("detect_patterns", tenant=tenant.slug, stdout=self.stdout)
        call_command("run_predictions", tenant=tenant.slug, stdout=self.stdout)
