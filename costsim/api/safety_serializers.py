"""Input and output serializers of the CostSim safety-net endpoints."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.api.actors import ActorField
from analytics.api.fields import AwareDateTimeField, StrictSerializer
from analytics.api.pagination import PageSerializer
from costsim.api.serializers import ComparisonSerializer
from costsim.models import BreakerIncident, CanaryReport, CanaryStatus

MAX_REASON_CHARS = 500
MAX_TTL_HOURS = 720
CALIBRATION_DEFAULT_WINDOW = timedelta(days=30)
CALIBRATION_MAX_WINDOW = timedelta(days=90)
DATASET_VERDICTS = ("acceptable", "not_acceptable")


@extend_schema_field(OpenApiTypes.NUMBER)
class ExactDecimalField(serializers.Field):
    """Passes a Decimal through untouched; the JSON renderer writes it as an exact number."""

    def to_representation(self, value):
        return value


# Breaker ------------------------------------------------------------------------------


class BreakerStateSerializer(serializers.Serializer):
    is_open = serializers.BooleanField()
    opened_at = AwareDateTimeField(allow_null=True)
    reason = serializers.CharField(allow_null=True)
    incident_id = serializers.CharField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    last_failure_at = AwareDateTimeField(allow_null=True)
    disabled_until = AwareDateTimeField(allow_null=True)
    disabled_by = ActorField()


class BreakerDisableInputSerializer(StrictSerializer):
    reason = serializers.CharField(min_length=1, max_length=MAX_REASON_CHARS)
    ttl_hours = serializers.FloatField(required=False, allow_null=True, max_value=MAX_TTL_HOURS)

    def validate_ttl_hours(self, value):
        if value is not None and value <= 0:
            raise serializers.ValidationError("must be greater than 0")
        return value


class BreakerEnableInputSerializer(StrictSerializer):
    reason = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=MAX_REASON_CHARS
    )


class BreakerEnableOutputSerializer(serializers.Serializer):
    changed = serializers.BooleanField()
    message = serializers.CharField()
    state = BreakerStateSerializer()


class IncidentSerializer(serializers.ModelSerializer):
    timestamp = AwareDateTimeField(source="created_at")
    resolved_at = AwareDateTimeField(allow_null=True)
    alert_sent_at = AwareDateTimeField(allow_null=True)
    resolved_by = ActorField()
    resolution_notes = serializers.SerializerMethodField()

    class Meta:
        model = BreakerIncident
        fields = [
            "id",
            "timestamp",
            "reason",
            "severity",
            "trigger",
            "drift_score",
            "sample_count",
            "details",
            "resolved",
            "resolved_at",
            "resolved_by",
            "resolution_notes",
            "alert_sent",
            "alert_sent_at",
        ]

    def get_resolution_notes(self, incident) -> str | None:
        return incident.resolution_notes or None


class IncidentListQuerySerializer(serializers.Serializer):
    include_resolved = serializers.BooleanField(required=False, default=False)


class IncidentPageSerializer(PageSerializer):
    """A page of breaker incidents, newest first; `total` counts every matching one."""

    results = IncidentSerializer(many=True)
    total = serializers.IntegerField()


# Canary -------------------------------------------------------------------------------


class CanaryRunInputSerializer(StrictSerializer):
    sample_count = serializers.IntegerField(
        required=False, default=100, min_value=10, max_value=1000
    )
    drift_threshold = serializers.FloatField(
        required=False, default=0.2, min_value=0.0, max_value=1.0
    )


class CanaryReportListQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=CanaryStatus.choices, required=False)
    passed = serializers.BooleanField(required=False, allow_null=True, default=None)


class CanaryReportSummarySerializer(serializers.ModelSerializer):
    """A persisted report without its `comparisons` and `diffs`.

    `insufficient_data` reports carry `kl_divergence`/`js_distance` null; `min_samples` is
    how many evaluated samples a verdict needs (null on reports older than the floor).
    """

    timestamp = AwareDateTimeField()
    failure_reasons = serializers.ListField(child=serializers.CharField())
    sample_source = serializers.SerializerMethodField()
    median_cost_diff_cents = serializers.FloatField(source="median_cost_diff")
    p90_cost_diff_cents = serializers.FloatField(source="p90_cost_diff")

    class Meta:
        model = CanaryReport
        fields = [
            "run_id",
            "timestamp",
            "status",
            "total_samples",
            "evaluated_samples",
            "min_samples",
            "matching_samples",
            "minor_drift_samples",
            "major_drift_samples",
            "median_cost_diff_cents",
            "p90_cost_diff_cents",
            "kl_divergence",
            "js_distance",
            "outlier_count",
            "passed",
            "failure_reasons",
            "sample_source",
            "drift_threshold",
            "duration_ms",
        ]

    def get_sample_source(self, report) -> str | None:
        return report.sample_source or None


class CanaryReportPageSerializer(PageSerializer):
    """A page of persisted reports, newest first; `total` counts every matching one."""

    results = CanaryReportSummarySerializer(many=True)
    total = serializers.IntegerField()


class CanaryComparisonSerializer(ComparisonSerializer):
    sample_id = serializers.CharField()


class CanaryDiffSerializer(serializers.Serializer):
    """A sample whose comparison drifted (major drift or mismatch)."""

    sample_id = serializers.CharField()
    input_hash = serializers.CharField()
    v2_output_hash = serializers.CharField()
    cost_diff_cents = serializers.IntegerField(help_text="V2 minus V1.")
    duration_diff = serializers.FloatField(help_text="V2 minus V1, milliseconds.")
    diff_summary = serializers.CharField()


class CanaryRunReportSerializer(CanaryReportSummarySerializer):
    """The report of the run just made, with every evaluated sample (OpenAPI only)."""

    comparisons = CanaryComparisonSerializer(many=True)
    diffs = CanaryDiffSerializer(many=True)

    class Meta(CanaryReportSummarySerializer.Meta):
        fields = [*CanaryReportSummarySerializer.Meta.fields, "comparisons", "diffs"]


# The engine's JSON shape keeps the stored names; the API names every amount `*_cents`.
REPORT_CENTS_NAMES = {
    "median_cost_diff": "median_cost_diff_cents",
    "p90_cost_diff": "p90_cost_diff_cents",
}
DIFF_CENTS_NAMES = {"cost_diff": "cost_diff_cents"}


def canary_run_view(report) -> dict:
    """The report of a run (a canary_engine.CanaryReport) as CanaryRunReportSerializer
    documents it."""
    data = {REPORT_CENTS_NAMES.get(key, key): value for key, value in report.to_dict().items()}
    data["diffs"] = [
        {DIFF_CENTS_NAMES.get(key, key): value for key, value in diff.items()}
        for diff in data["diffs"]
    ]
    return data


# Datasets -----------------------------------------------------------------------------


class EmptyInputSerializer(StrictSerializer):
    """`{}`: the validation endpoints take no parameters but still reject unknown ones."""


# The dataset views answer with the dictionaries costsim.services.datasets builds; these
# serializers describe them in the OpenAPI document.


class DatasetThresholdsSerializer(serializers.Serializer):
    max_mean_error = serializers.FloatField(help_text="Cents.")
    max_median_error = serializers.FloatField(help_text="Cents.")
    max_std_deviation = serializers.FloatField(help_text="Cents.")
    max_outlier_pct = serializers.FloatField(help_text="0 to 1.")
    max_drift_score = serializers.FloatField(help_text="0 to 1.")


class DatasetSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    sample_count = serializers.IntegerField()
    thresholds = DatasetThresholdsSerializer()


class DatasetDetailSerializer(DatasetSerializer):
    sample_tags = serializers.ListField(
        child=serializers.CharField(), help_text="Every tag its samples use, sorted."
    )


class DatasetValidationDetailsSerializer(serializers.Serializer):
    thresholds = DatasetThresholdsSerializer()
    errors_count = serializers.IntegerField(help_text="Samples with an expected cost.")
    outliers_count = serializers.IntegerField()


class DatasetValidationSerializer(serializers.Serializer):
    """V2 on every sample of a dataset, judged against the dataset's thresholds."""

    dataset_id = serializers.CharField()
    dataset_name = serializers.CharField()
    sample_count = serializers.IntegerField()
    mean_error = serializers.FloatField(help_text="Absolute error in cents, 4 dp.")
    median_error = serializers.FloatField()
    std_deviation = serializers.FloatField()
    outlier_pct = serializers.FloatField()
    drift_score = serializers.FloatField()
    verdict = serializers.ChoiceField(choices=DATASET_VERDICTS)
    details = DatasetValidationDetailsSerializer()
    timestamp = AwareDateTimeField()


class DatasetValidationSummarySerializer(serializers.Serializer):
    dataset_name = serializers.CharField()
    sample_count = serializers.IntegerField()
    mean_error = serializers.FloatField()
    drift_score = serializers.FloatField()
    verdict = serializers.ChoiceField(choices=DATASET_VERDICTS)


class DatasetValidationAllSerializer(serializers.Serializer):
    all_passed = serializers.BooleanField()
    results = serializers.DictField(
        child=DatasetValidationSummarySerializer(), help_text="Keyed by dataset id."
    )
    timestamp = AwareDateTimeField()


# Alert rules --------------------------------------------------------------------------


class AlertRuleSerializer(serializers.Serializer):
    alert = serializers.CharField()
    expr = serializers.CharField(help_text="PromQL.")
    labels = serializers.DictField(child=serializers.CharField())
    annotations = serializers.DictField(child=serializers.CharField())

    def get_fields(self):
        fields = super().get_fields()
        # `for` is a Python keyword, so it cannot be a class attribute.
        fields["for"] = serializers.CharField(help_text="How long the condition must hold: `5m`.")
        return fields


class AlertRuleGroupSerializer(serializers.Serializer):
    name = serializers.CharField()
    rules = AlertRuleSerializer(many=True)


class AlertRuleFileSerializer(serializers.Serializer):
    """The Prometheus rule file, served as YAML (OpenAPI only)."""

    groups = AlertRuleGroupSerializer(many=True)


# Divergence and calibration -----------------------------------------------------------


class DivergenceQuerySerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, default=7, min_value=1, max_value=90)


class DivergenceSampleSerializer(serializers.Serializer):
    timestamp = AwareDateTimeField()
    input_hash = serializers.CharField()
    v1_cost_cents = serializers.IntegerField()
    v2_cost_cents = serializers.IntegerField()
    cost_delta_cents = serializers.IntegerField()
    drift_score = serializers.FloatField(allow_null=True)
    verdict = serializers.CharField(allow_null=True)


class DivergenceReportSerializer(serializers.Serializer):
    start_date = AwareDateTimeField()
    end_date = AwareDateTimeField()
    version = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["ok", "insufficient_data"],
        help_text="insufficient_data: fewer than min_samples rows, so no KL or JS.",
    )
    sample_count = serializers.IntegerField()
    min_samples = serializers.IntegerField(
        help_text="Rows the distances need (COSTSIM_MIN_DRIFT_SAMPLES)."
    )
    delta_p50_cents = serializers.FloatField(source="delta_p50")
    delta_p90_cents = serializers.FloatField(source="delta_p90")
    kl_divergence = serializers.FloatField(allow_null=True, help_text="Null below min_samples.")
    js_distance = serializers.FloatField(allow_null=True, help_text="Null below min_samples.")
    outlier_count = serializers.IntegerField()
    fail_ratio = serializers.FloatField()
    matching_rate = serializers.FloatField()
    detailed_samples = DivergenceSampleSerializer(many=True)


class CalibrationQuerySerializer(serializers.Serializer):
    """`from`/`to` are optional: `to` defaults to now and `from` to 30 days before `to`."""

    to = AwareDateTimeField(required=False, allow_date=True)

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword, so the field cannot be a class attribute.
        fields["from"] = AwareDateTimeField(required=False, allow_date=True)
        return fields

    def validate(self, attrs):
        end = attrs.get("to") or timezone.now()
        start = attrs.get("from") or end - CALIBRATION_DEFAULT_WINDOW
        if start >= end:
            raise serializers.ValidationError({"from": ["must be before 'to'"]})
        if end - start > CALIBRATION_MAX_WINDOW:
            raise serializers.ValidationError({"to": ["time window cannot exceed 90 days"]})
        return {"from": start, "to": end}


class CalibrationMetricsSerializer(serializers.Serializer):
    runs = serializers.IntegerField()
    estimated_cents = ExactDecimalField()
    actual_cents = ExactDecimalField()
    bias_pct = serializers.FloatField(allow_null=True)
    mean_abs_error_cents = serializers.FloatField()
    coverage = serializers.FloatField()


class CalibrationSkillSerializer(CalibrationMetricsSerializer):
    skill_id = serializers.CharField()

    def to_representation(self, instance):
        data = super().to_representation(instance)
        return {"skill_id": data.pop("skill_id"), **data}


class CalibrationWindowSerializer(serializers.Serializer):
    to = AwareDateTimeField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = AwareDateTimeField()
        return fields

    def to_representation(self, instance):
        data = super().to_representation(instance)
        return {"from": data["from"], "to": data["to"]}


class CalibrationReportSerializer(serializers.Serializer):
    window = CalibrationWindowSerializer()
    tolerance = serializers.FloatField()
    runs_matched = serializers.IntegerField()
    runs_unmatched = serializers.IntegerField()
    overall = CalibrationMetricsSerializer()
    by_skill = CalibrationSkillSerializer(many=True)
