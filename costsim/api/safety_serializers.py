"""Input and output serializers of the CostSim safety-net endpoints (spec/api.md §5)."""

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.api.fields import AwareDateTimeField, StrictSerializer
from costsim.models import BreakerIncident, CanaryReport, CanaryStatus

MAX_REASON_CHARS = 500
MAX_TTL_HOURS = 720
CALIBRATION_DEFAULT_WINDOW = timedelta(days=30)
CALIBRATION_MAX_WINDOW = timedelta(days=90)


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
    disabled_by = serializers.CharField(allow_null=True)


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
    resolved_by = serializers.SerializerMethodField()
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

    def get_resolved_by(self, incident) -> str | None:
        return incident.resolved_by or None

    def get_resolution_notes(self, incident) -> str | None:
        return incident.resolution_notes or None


class IncidentListQuerySerializer(serializers.Serializer):
    include_resolved = serializers.BooleanField(required=False, default=False)
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)


class IncidentListSerializer(serializers.Serializer):
    incidents = IncidentSerializer(many=True)
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
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=100)


class CanaryReportSummarySerializer(serializers.ModelSerializer):
    """A persisted report without its `comparisons` and `diffs`."""

    timestamp = AwareDateTimeField()
    sample_source = serializers.SerializerMethodField()

    class Meta:
        model = CanaryReport
        fields = [
            "run_id",
            "timestamp",
            "status",
            "total_samples",
            "matching_samples",
            "minor_drift_samples",
            "major_drift_samples",
            "median_cost_diff",
            "p90_cost_diff",
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


class CanaryReportListSerializer(serializers.Serializer):
    reports = CanaryReportSummarySerializer(many=True)
    total = serializers.IntegerField()


# Datasets -----------------------------------------------------------------------------


class EmptyInputSerializer(StrictSerializer):
    """`{}`: the validation endpoints take no parameters but still reject unknown ones."""


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
    sample_count = serializers.IntegerField()
    delta_p50 = serializers.FloatField()
    delta_p90 = serializers.FloatField()
    kl_divergence = serializers.FloatField()
    js_distance = serializers.FloatField()
    outlier_count = serializers.IntegerField()
    fail_ratio = serializers.FloatField()
    matching_rate = serializers.FloatField()
    detailed_samples = DivergenceSampleSerializer(many=True)


class CalibrationQuerySerializer(serializers.Serializer):
    """`from`/`to` are optional: `to` defaults to now and `from` to 30 days before `to`."""

    to = AwareDateTimeField(required=False)

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword, so the field cannot be a class attribute.
        fields["from"] = AwareDateTimeField(required=False)
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
