"""Input and output shapes of the anomaly endpoints."""

from django.utils import timezone
from rest_framework import serializers

from analytics.api.actors import ActorField
from analytics.api.fields import AwareDateTimeField, StrictSerializer, SupportedDateField
from analytics.models import (
    Anomaly,
    AnomalyStatus,
    AnomalyType,
    EntityType,
    FeedbackLabel,
    Severity,
)

ANOMALY_VIEW_FIELDS = (
    "id",
    "anomaly_type",
    "severity",
    "status",
    "entity_type",
    "entity_id",
    "anomaly_date",
    "budget_period",
    "current_value_cents",
    "expected_value_cents",
    "deviation_pct",
    "threshold_pct",
    "message",
    "derived_cause",
    "breach_count",
    "snapshot_id",
    "budget_id",
    "metadata",
    "contributors",
    "detected_at",
    "last_detected_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "resolution_notes",
    "feedback_label",
    "feedback_at",
    "feedback_by",
)

# Amounts the spike and drift rules store in `metadata` under names without their unit; the
# API names every amount `*_cents`.
METADATA_CENTS_KEYS = {
    "baseline_daily_avg": "baseline_daily_avg_cents",
    "rolling_7d_avg": "rolling_7d_avg_cents",
    "baseline_avg": "baseline_avg_cents",
}


class AnomalyMetadataField(serializers.JSONField):
    def to_representation(self, value):
        if isinstance(value, dict):
            return {METADATA_CENTS_KEYS.get(key, key): item for key, item in value.items()}
        return value


class AnomalySerializer(serializers.ModelSerializer):
    snapshot_id = serializers.IntegerField(read_only=True, allow_null=True)
    budget_id = serializers.IntegerField(read_only=True, allow_null=True)
    detected_at = AwareDateTimeField(read_only=True)
    last_detected_at = AwareDateTimeField(read_only=True)
    acknowledged_at = AwareDateTimeField(read_only=True, allow_null=True)
    resolved_at = AwareDateTimeField(read_only=True, allow_null=True)
    feedback_at = AwareDateTimeField(read_only=True, allow_null=True)
    acknowledged_by = ActorField()
    resolved_by = ActorField()
    feedback_by = ActorField()
    metadata = AnomalyMetadataField(read_only=True)

    class Meta:
        model = Anomaly
        fields = ANOMALY_VIEW_FIELDS
        read_only_fields = ANOMALY_VIEW_FIELDS


class AnomalyListSerializer(AnomalySerializer):
    """The list item: the anomaly view without `contributors`."""

    class Meta(AnomalySerializer.Meta):
        fields = tuple(name for name in ANOMALY_VIEW_FIELDS if name != "contributors")
        read_only_fields = fields


class AnomalyFilterSerializer(serializers.Serializer):
    """Query filters of `GET /anomalies/`; a bad value is a 400 naming the parameter."""

    status = serializers.ChoiceField(choices=AnomalyStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    anomaly_type = serializers.ChoiceField(choices=AnomalyType.choices, required=False)
    entity_type = serializers.ChoiceField(choices=EntityType.choices, required=False)
    # `from` is a Python keyword, hence the source mapping below.
    detected_from = AwareDateTimeField(required=False, allow_date=True)
    detected_to = AwareDateTimeField(required=False, allow_date=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("detected_from")
        fields["to"] = fields.pop("detected_to")
        return fields

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"from": ["must be before 'to'"]})
        return attrs


class DetectInputSerializer(StrictSerializer):
    as_of = SupportedDateField(required=False, allow_null=True)
    # Compute everything and write nothing: the answer says what a real run would raise.
    dry_run = serializers.BooleanField(required=False, default=False)

    def validate_as_of(self, value):
        if value is not None and value > timezone.now().date():
            raise serializers.ValidationError("must not be later than today")
        return value


class AcknowledgeInputSerializer(StrictSerializer):
    """An empty body; unknown fields are still rejected."""


class ResolveInputSerializer(StrictSerializer):
    resolution = serializers.ChoiceField(
        choices=[AnomalyStatus.RESOLVED.value, AnomalyStatus.DISMISSED.value]
    )
    notes = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, trim_whitespace=False, default=""
    )


class FeedbackInputSerializer(StrictSerializer):
    label = serializers.ChoiceField(choices=FeedbackLabel.values)
