"""Input and output shapes of the incident endpoints and of a detection run's result."""

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from analytics.api.actors import ActorField
from analytics.api.anomaly_serializers import AnomalyListSerializer, AnomalySerializer
from analytics.api.fields import AwareDateTimeField, StrictSerializer, SupportedDateField
from analytics.models import AnomalyStatus, EntityType, Incident, IncidentKind, Severity

INCIDENT_LIST_FIELDS = (
    "id",
    "kind",
    "severity",
    "status",
    "entity_type",
    "entity_id",
    "budget_id",
    "started_on",
    "last_seen_on",
    "title",
    "expected_cents",
    "actual_cents",
    "impact_cents",
    "impact_pct",
    "metadata",
    "opened_at",
    "updated_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "resolution_notes",
    "feedback_label",
    "feedback_at",
    "feedback_by",
)


def _members(incident: Incident) -> list:
    """The incident's anomalies, oldest day first.

    A dry run's incidents were rolled back, so they carry their anomalies in `members`.
    """
    members = getattr(incident, "members", None)
    if members is None:
        members = incident.anomalies.all()
    return sorted(members, key=lambda anomaly: (anomaly.anomaly_date, anomaly.pk))


class RootCauseSerializer(serializers.Serializer):
    """One entity's share of the incident's increase, largest first."""

    entity_type = serializers.ChoiceField(choices=EntityType.choices)
    entity_id = serializers.CharField(allow_null=True)
    expected_cents = serializers.FloatField()
    actual_cents = serializers.FloatField()
    delta_cents = serializers.FloatField()
    share = serializers.FloatField()


# costsim's circuit-breaker incidents already own the component names "Incident" and
# "IncidentList" in the OpenAPI schema.
@extend_schema_serializer(component_name="CostIncidentListItem")
class IncidentListSerializer(serializers.ModelSerializer):
    """The list item: the incident without its root causes and anomalies."""

    budget_id = serializers.IntegerField(read_only=True, allow_null=True)
    opened_at = AwareDateTimeField(read_only=True)
    updated_at = AwareDateTimeField(read_only=True)
    acknowledged_at = AwareDateTimeField(read_only=True, allow_null=True)
    resolved_at = AwareDateTimeField(read_only=True, allow_null=True)
    feedback_at = AwareDateTimeField(read_only=True, allow_null=True)
    acknowledged_by = ActorField()
    resolved_by = ActorField()
    feedback_by = ActorField()

    class Meta:
        model = Incident
        fields = INCIDENT_LIST_FIELDS
        read_only_fields = INCIDENT_LIST_FIELDS


@extend_schema_serializer(component_name="CostIncident")
class IncidentSerializer(IncidentListSerializer):
    """The incident view: the list item, its root causes and its anomalies (list shape)."""

    root_causes = RootCauseSerializer(many=True, read_only=True)
    anomalies = serializers.SerializerMethodField()

    class Meta(IncidentListSerializer.Meta):
        fields = (*INCIDENT_LIST_FIELDS, "root_causes", "anomalies")
        read_only_fields = fields

    @extend_schema_field(AnomalyListSerializer(many=True))
    def get_anomalies(self, incident: Incident) -> list[dict]:
        return AnomalyListSerializer(_members(incident), many=True).data


@extend_schema_serializer(component_name="DetectedIncident")
class DetectedIncidentSerializer(IncidentListSerializer):
    """An incident a detection run opened or updated, with the ids of its anomalies."""

    anomaly_ids = serializers.SerializerMethodField()

    class Meta(IncidentListSerializer.Meta):
        fields = (*INCIDENT_LIST_FIELDS, "anomaly_ids")
        read_only_fields = fields

    def get_anomaly_ids(self, incident: Incident) -> list[int]:
        return [anomaly.pk for anomaly in _members(incident)]


class DetectionResultSerializer(serializers.Serializer):
    """What a detection run raised; with `dry_run` none of it was written.

    In a dry run the ids of anomalies and incidents it would have created point at no
    stored row; they only tie the incidents to the anomalies of the same response.
    """

    detected = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    anomalies = AnomalySerializer(many=True)
    incidents = DetectedIncidentSerializer(many=True)
    opened = serializers.IntegerField()
    suppressed = serializers.IntegerField()
    dry_run = serializers.BooleanField()


class IncidentFilterSerializer(serializers.Serializer):
    """Query filters of `GET /incidents/`; `from`/`to` are UTC days of `last_seen_on`."""

    status = serializers.ChoiceField(choices=AnomalyStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    kind = serializers.ChoiceField(choices=IncidentKind.choices, required=False)

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword, so it cannot be declared as a class attribute.
        fields["from"] = SupportedDateField(required=False)
        fields["to"] = SupportedDateField(required=False)
        return fields

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"from": ["must be before 'to'"]})
        return attrs


class IncidentCloseInputSerializer(StrictSerializer):
    """The body of resolve and dismiss."""

    notes = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, trim_whitespace=False, default=""
    )
