"""Input and output serializers of the notification endpoints."""

from rest_framework import serializers

from analytics.api.fields import AwareDateTimeField, StrictModelSerializer
from analytics.models import Severity
from notifications.models import (
    TENANT_CHANNEL_KINDS,
    Channel,
    Delivery,
    DeliveryStatus,
    EventType,
    Rule,
    RuleMode,
)
from notifications.services.channels import RULE_EVENTS


class ChannelSerializer(StrictModelSerializer):
    """A channel; `secret` is accepted on write and never shown."""

    email_to = serializers.ListField(
        child=serializers.CharField(max_length=254), required=False, max_length=20
    )
    # Alertmanager is a project-wide kind that tenants cannot create.
    kind = serializers.ChoiceField(
        choices=[(kind.value, kind.label) for kind in TENANT_CHANNEL_KINDS]
    )
    secret = serializers.CharField(write_only=True, required=False, max_length=200)
    url = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    class Meta:
        model = Channel
        fields = (
            "id",
            "name",
            "kind",
            "url",
            "email_to",
            "secret",
            "enabled",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")


class ChannelCreatedSerializer(ChannelSerializer):
    """The answer to a create: the channel and, for a webhook, its secret (shown only here)."""

    secret = serializers.CharField(read_only=True, allow_null=True)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["secret"] = instance.secret or None
        return data


class RuleSerializer(StrictModelSerializer):
    channel = serializers.IntegerField(source="channel_id")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=[(e, e) for e in RULE_EVENTS]),
        allow_empty=False,
        max_length=len(RULE_EVENTS),
    )
    min_severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    mode = serializers.ChoiceField(choices=RuleMode.choices, required=False)

    class Meta:
        model = Rule
        fields = (
            "id",
            "channel",
            "events",
            "min_severity",
            "mode",
            "enabled",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")


class DeliverySerializer(serializers.ModelSerializer):
    channel = serializers.IntegerField(source="channel_id", read_only=True)
    rule = serializers.IntegerField(source="rule_id", read_only=True, allow_null=True)
    digest = serializers.IntegerField(source="digest_id", read_only=True, allow_null=True)
    idempotency_key = serializers.SerializerMethodField()
    next_attempt_at = AwareDateTimeField(read_only=True)
    last_attempt_at = AwareDateTimeField(read_only=True, allow_null=True)
    event_at = AwareDateTimeField(read_only=True)
    created_at = AwareDateTimeField(read_only=True)
    sent_at = AwareDateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = Delivery
        fields = (
            "id",
            "channel",
            "rule",
            "event_key",
            "event_type",
            "severity",
            "status",
            "digest",
            "idempotency_key",
            "attempts",
            "max_attempts",
            "next_attempt_at",
            "last_attempt_at",
            "last_error",
            "response_status",
            "response_excerpt",
            "latency_ms",
            "event_at",
            "created_at",
            "sent_at",
            "payload",
        )
        read_only_fields = fields

    def get_idempotency_key(self, delivery: Delivery) -> str:
        """The `webhook-id` header sent with every attempt."""
        return f"msg_{delivery.idempotency_key.hex}"


class DeliveryFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, required=False)
    event_type = serializers.ChoiceField(choices=EventType.choices, required=False)
    channel = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class BudgetThresholdsSerializer(serializers.Serializer):
    budget = serializers.IntegerField(read_only=True)
    thresholds_pct = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=1000),
        allow_empty=False,
        max_length=10,
    )
