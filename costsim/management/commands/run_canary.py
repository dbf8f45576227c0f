from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from costsim.services.canary import canary_run


class Command(BaseCommand):
    help = (
        "Run the V2 canary (under lock 7001) and print its report. Exits 1 when the canary "
        "fails or errors; 0 on pass, on too few samples to decide (insufficient_data) and "
        "when another instance is running it (skipped)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sample-count",
            type=int,
            help="samples to evaluate, 10-1000 (default COSTSIM_CANARY_SAMPLE_COUNT)",
        )
        parser.add_argument(
            "--drift-threshold",
            type=float,
            help="KL divergence gate, 0-1 (default COSTSIM_CANARY_DRIFT_THRESHOLD)",
        )

    def handle(self, *args, sample_count, drift_threshold, **options):
        if sample_count is None:
            sample_count = settings.COSTSIM_CANARY_SAMPLE_COUNT
        if drift_threshold is None:
            drift_threshold = settings.COSTSIM_CANARY_DRIFT_THRESHOLD
        if not 10 <= sample_count <= 1000:
            raise CommandError("--sample-count must be between 10 and 1000.")
        if not 0.0 <= drift_threshold <= 1.0:
            raise CommandError("--drift-threshold must be between 0 and 1.")

        self.stdout.write(
            f"Running canary: up to {sample_count} samples, KL gate {drift_threshold}…"
        )
        report = canary_run(sample_count=sample_count, drift_threshold=drift_threshold)

        self.stdout.write(f"run_id:           {report.run_id}")
        self.stdout.write(f"status:           {report.status}")
        self.stdout.write(f"sample source:    {report.sample_source or '-'}")
        self.stdout.write(
            f"samples:          {report.total_samples} taken, {report.evaluated_samples} "
            f"evaluated, {report.min_samples} needed"
        )
        self.stdout.write(
            f"verdicts:         {report.matching_samples} match, "
            f"{report.minor_drift_samples} minor, {report.major_drift_samples} major"
        )
        self.stdout.write(
            f"cost diff:        median {report.median_cost_diff}, p90 {report.p90_cost_diff}"
        )
        self.stdout.write(
            f"distances:        KL {_or_dash(report.kl_divergence)}, "
            f"JS {_or_dash(report.js_distance)}, {report.outlier_count} outliers"
        )
        self.stdout.write(f"duration:         {report.duration_ms} ms")
        for reason in report.failure_reasons:
            self.stdout.write(f"  - {reason}")

        if report.status in ("fail", "error"):
            raise CommandError(
                f"Canary {report.run_id} did not pass (status {report.status}).", returncode=1
            )
        if report.status == "skipped":
            self.stdout.write(self.style.WARNING("Canary skipped: another instance is running."))
            return
        if report.status == "insufficient_data":
            self.stdout.write(
                self.style.WARNING(
                    f"Canary {report.run_id} could not decide: {report.evaluated_samples} "
                    f"samples evaluated, {report.min_samples} needed. The breaker was not told."
                )
            )
            return
        self.stdout.write(self.style.SUCCESS(f"Canary {report.run_id} passed."))


def _or_dash(value) -> str:
    return "-" if value is None else str(value)
