from rest_framework import serializers

from analytics.api.actors import ActorField
from analytics.api.facets import choice_counts_serializer
from analytics.api.fields import AwareDateTimeField, StrictSerializer
from analytics.api.pagination import PageSerializer
from feedback.choices import FeedbackSeverity, PatternType
from feedback.models import PatternFeedback


class FeedbackListQuerySerializer(serializers.Serializer):
    pattern_type = serializers.ChoiceField(choices=PatternType.choices, required=False)
    severity = serializers.ChoiceField(choices=FeedbackSeverity.choices, required=False)
    acknowledged = serializers.BooleanField(required=False, allow_null=True, default=None)


class FeedbackEmptyBodySerializer(StrictSerializer):
    """`{}`: the verbs take no input, and unknown fields are still a 400."""


class FeedbackItemSerializer(serializers.ModelSerializer):
    description = serializers.CharField(source="short_description")
    provenance_count = serializers.IntegerField(source="provenance_length")
    detected_at = AwareDateTimeField()

    class Meta:
        model = PatternFeedback
        fields = [
            "id",
            "pattern_type",
            "severity",
            "description",
            "signature",
            "occurrence_count",
            "detected_at",
            "acknowledged",
            "provenance_count",
        ]
        read_only_fields = fields


class FeedbackDetailSerializer(serializers.ModelSerializer):
    detected_at = AwareDateTimeField()
    created_at = AwareDateTimeField()
    updated_at = AwareDateTimeField()
    acknowledged_at = AwareDateTimeField(allow_null=True)
    acknowledged_by = ActorField()
    provenance = serializers.ListField(child=serializers.CharField())
    metadata = serializers.DictField()

    class Meta:
        model = PatternFeedback
        fields = [
            "id",
            "pattern_type",
            "severity",
            "description",
            "signature",
            "provenance",
            "occurrence_count",
            "time_window_minutes",
            "threshold_used",
            "metadata",
            "detected_at",
            "created_at",
            "updated_at",
            "acknowledged",
            "acknowledged_at",
            "acknowledged_by",
        ]
        read_only_fields = fields


FeedbackCountsByTypeSerializer = choice_counts_serializer(
    "FeedbackCountsByType", PatternType.values
)
FeedbackCountsBySeveritySerializer = choice_counts_serializer(
    "FeedbackCountsBySeverity", FeedbackSeverity.values
)


class FeedbackPageSerializer(PageSerializer):
    """A page of feedback; `total` and the counts cover the whole filtered list."""

    results = FeedbackItemSerializer(many=True)
    total = serializers.IntegerField()
    by_type = FeedbackCountsByTypeSerializer()
    by_severity = FeedbackCountsBySeveritySerializer()


class FeedbackStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    acknowledged = serializers.IntegerField()
    unacknowledged = serializers.IntegerField()
    by_type = FeedbackCountsByTypeSerializer()
    by_severity = FeedbackCountsBySeveritySerializer()


class PatternDetectionResultSerializer(serializers.Serializer):
    failure_patterns = serializers.IntegerField()
    cost_spikes = serializers.IntegerField()
    feedback_created = serializers.IntegerField()
    feedback_updated = serializers.IntegerField()
