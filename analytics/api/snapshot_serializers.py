"""Input and output serializers of snapshots and baselines."""

from django.utils import timezone
from rest_framework import serializers

from analytics.api.anomaly_serializers import AnomalySerializer
from analytics.api.fields import (
    AwareDateTimeField,
    StrictModelSerializer,
    StrictSerializer,
    SupportedDateField,
    TimeWindowFilterSerializer,
)
from analytics.models import (
    Baseline,
    CostSnapshot,
    SnapshotAggregate,
    SnapshotStatus,
    SnapshotType,
)

DEFAULT_EVALUATE_THRESHOLD_PCT = 200.0


class SnapshotFilterSerializer(TimeWindowFilterSerializer):
    """`snapshot_type`, `status`, and `from`/`to` on period_start."""

    snapshot_type = serializers.ChoiceField(required=False, choices=SnapshotType.choices)
    status = serializers.ChoiceField(required=False, choices=SnapshotStatus.choices)


class SnapshotSerializer(StrictModelSerializer):
    class Meta:
        model = CostSnapshot
        fields = (
            "id",
            "snapshot_type",
            "period_start",
            "period_end",
            "status",
            "version",
            "records_processed",
            "computation_ms",
            "is_stale",
        )
        read_only_fields = fields


class SnapshotAggregateSerializer(StrictModelSerializer):
    # numeric(38, 0) columns, whole numbers: integers in JSON and in the schema.
    total_input_tokens = serializers.IntegerField(read_only=True)
    total_output_tokens = serializers.IntegerField(read_only=True)

    class Meta:
        model = SnapshotAggregate
        fields = (
            "entity_type",
            "entity_id",
            "total_cost_cents",
            "request_count",
            "unpriced_records",
            "total_input_tokens",
            "total_output_tokens",
            "avg_cost_per_request_cents",
            "avg_tokens_per_request",
            "baseline_7d_avg_cents",
            "baseline_30d_avg_cents",
            "deviation_from_7d_pct",
            "deviation_from_30d_pct",
        )
        read_only_fields = fields


class SnapshotDetailSerializer(SnapshotSerializer):
    # Filled by the selector's prefetch, already in tenant, user, feature, model order.
    aggregates = SnapshotAggregateSerializer(source="ordered_aggregates", many=True, read_only=True)

    class Meta(SnapshotSerializer.Meta):
        fields = (*SnapshotSerializer.Meta.fields, "error_message", "completed_at", "aggregates")
        read_only_fields = fields


class SnapshotComputeInputSerializer(StrictSerializer):
    snapshot_type = serializers.ChoiceField(choices=SnapshotType.choices)
    period_start = AwareDateTimeField(
        required=False,
        allow_null=True,
        allow_date=True,
        help_text="Truncated to the UTC hour or day; default: the previous hour or yesterday.",
    )


class SnapshotEvaluateInputSerializer(StrictSerializer):
    threshold_pct = serializers.FloatField(required=False, default=DEFAULT_EVALUATE_THRESHOLD_PCT)

    def validate_threshold_pct(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("must be greater than 0")
        return value


class BaselineComputeInputSerializer(StrictSerializer):
    window_days = serializers.ChoiceField(
        choices=[(7, "7 days"), (30, "30 days")],
        error_messages={"invalid_choice": "must be one of: 7, 30"},
    )
    as_of = SupportedDateField(required=False, allow_null=True, help_text="default: today")

    def validate_as_of(self, value):
        if value is not None and value > timezone.now().date():
            raise serializers.ValidationError("must not be later than today")
        return value


class BaselineSerializer(StrictModelSerializer):
    last_snapshot_id = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = Baseline
        fields = (
            "id",
            "entity_type",
            "entity_id",
            "window_days",
            "as_of",
            "avg_daily_cost_cents",
            "stddev_daily_cost_cents",
            "avg_daily_requests",
            "max_daily_cost_cents",
            "min_daily_cost_cents",
            "samples_count",
            "last_snapshot_id",
            "computed_at",
            "valid_until",
            "is_current",
        )
        read_only_fields = fields


class BaselineComputeResultSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    baselines = BaselineSerializer(many=True)


class SnapshotEvaluateResultSerializer(serializers.Serializer):
    evaluated = serializers.IntegerField()
    triggered = serializers.IntegerField()
    anomalies = AnomalySerializer(many=True)
