from django.utils import timezone
from rest_framework import serializers

from analytics.api.facets import choice_counts_serializer
from analytics.api.fields import AwareDateTimeField, StrictSerializer
from analytics.api.pagination import PageSerializer
from predictions.choices import PredictionType, SubjectType
from predictions.models import Prediction


class PredictionIncludeExpiredQuerySerializer(serializers.Serializer):
    include_expired = serializers.BooleanField(required=False, default=False)


class PredictionListQuerySerializer(PredictionIncludeExpiredQuerySerializer):
    prediction_type = serializers.ChoiceField(choices=PredictionType.choices, required=False)
    subject_type = serializers.ChoiceField(choices=SubjectType.choices, required=False)
    subject_id = serializers.CharField(max_length=128, required=False)


class PredictionSubjectQuerySerializer(PredictionIncludeExpiredQuerySerializer):
    subject_type = serializers.ChoiceField(choices=SubjectType.choices)
    subject_id = serializers.CharField(max_length=128)


class PredictionEmptyBodySerializer(StrictSerializer):
    """`{}`: the cycle takes no input, and unknown fields are still a 400."""


class _ValidityMixin(serializers.Serializer):
    """`is_valid` against one instant per response, so a list never disagrees with itself."""

    is_valid = serializers.SerializerMethodField()

    def get_is_valid(self, prediction: Prediction) -> bool:
        now = self.context.get("now") or timezone.now()
        return prediction.expires_at > now


class PredictionItemSerializer(_ValidityMixin, serializers.ModelSerializer):
    created_at = AwareDateTimeField()
    expires_at = AwareDateTimeField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "prediction_type",
            "subject_type",
            "subject_id",
            "confidence_score",
            "is_advisory",
            "created_at",
            "expires_at",
            "is_valid",
        ]
        read_only_fields = fields


class PredictionDetailSerializer(PredictionItemSerializer):
    prediction_value = serializers.DictField()
    contributing_factors = serializers.ListField(child=serializers.DictField())

    class Meta(PredictionItemSerializer.Meta):
        fields = [
            *PredictionItemSerializer.Meta.fields,
            "prediction_value",
            "contributing_factors",
            "notes",
        ]
        read_only_fields = fields


class SubjectPredictionSerializer(_ValidityMixin, serializers.ModelSerializer):
    created_at = AwareDateTimeField()
    expires_at = AwareDateTimeField()
    prediction_value = serializers.DictField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "prediction_type",
            "confidence_score",
            "prediction_value",
            "created_at",
            "expires_at",
            "is_advisory",
            "is_valid",
        ]
        read_only_fields = fields


PredictionCountsByTypeSerializer = choice_counts_serializer(
    "PredictionCountsByType", PredictionType.values
)
PredictionCountsBySubjectTypeSerializer = choice_counts_serializer(
    "PredictionCountsBySubjectType", SubjectType.values
)


class PredictionPageSerializer(PageSerializer):
    """A page of predictions; `total` and the counts cover the whole filtered list."""

    results = PredictionItemSerializer(many=True)
    total = serializers.IntegerField()
    by_type = PredictionCountsByTypeSerializer()
    by_subject_type = PredictionCountsBySubjectTypeSerializer()


class SubjectPredictionPageSerializer(PageSerializer):
    """A page of the predictions about one subject; `total` counts all of them."""

    results = SubjectPredictionSerializer(many=True)
    subject_type = serializers.ChoiceField(choices=SubjectType.choices)
    subject_id = serializers.CharField()
    total = serializers.IntegerField()


class PredictionAdvisoryComplianceSerializer(serializers.Serializer):
    all_advisory = serializers.BooleanField()
    non_advisory_count = serializers.IntegerField()


class PredictionStatsSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    by_type = PredictionCountsByTypeSerializer()
    by_subject_type = PredictionCountsBySubjectTypeSerializer()
    avg_confidence = serializers.FloatField()
    high_confidence_count = serializers.IntegerField()
    advisory_compliance = PredictionAdvisoryComplianceSerializer()


class PredictionCycleResultSerializer(serializers.Serializer):
    failure_predictions = PredictionDetailSerializer(many=True)
    cost_predictions = PredictionDetailSerializer(many=True)
    predictions_created = serializers.IntegerField()
    errors = serializers.ListField(child=serializers.CharField())
