"""Input and output shapes of the detection settings and planned activity endpoints."""

from rest_framework import serializers

from analytics.api.actors import ActorField
from analytics.api.fields import AwareDateTimeField, StrictModelSerializer
from analytics.models import DetectionSettings, PlannedActivity
from analytics.models.incidents import validate_monitored_dimensions
from analytics.selectors.incidents import DIMENSIONS, SETTING_NAMES


class DetectionSettingValuesSerializer(serializers.ModelSerializer):
    """One value for every setting: the effective ones, or the project defaults.

    Null exists only in storage, where it means "the default", so no value here is null.
    """

    monitored_dimensions = serializers.ListField(
        child=serializers.ChoiceField(choices=DIMENSIONS), read_only=True
    )

    class Meta:
        model = DetectionSettings
        fields = SETTING_NAMES
        read_only_fields = fields
        extra_kwargs = {name: {"allow_null": False} for name in SETTING_NAMES}


class DetectionSettingsSerializer(DetectionSettingValuesSerializer):
    """The tenant's effective settings, the project defaults and the names it overrides."""

    defaults = DetectionSettingValuesSerializer(read_only=True)
    overridden = serializers.ListField(
        child=serializers.ChoiceField(choices=SETTING_NAMES), read_only=True
    )
    updated_at = AwareDateTimeField(read_only=True, allow_null=True)
    updated_by = ActorField()

    class Meta(DetectionSettingValuesSerializer.Meta):
        fields = (*SETTING_NAMES, "defaults", "overridden", "updated_at", "updated_by")
        read_only_fields = fields


class DetectionSettingsInputSerializer(StrictModelSerializer):
    """Settings to store; null (or, on PUT, leaving a setting out) means the project default.

    The ranges come from the model's validators.
    """

    # Checked as a whole by the model's validator, so an error names this field, not an index.
    monitored_dimensions = serializers.ListField(
        child=serializers.CharField(),
        allow_empty=True,
        required=False,
        allow_null=True,
        validators=[validate_monitored_dimensions],
        help_text=f"distinct values among {', '.join(DIMENSIONS)}; [] monitors the tenant only",
    )

    class Meta:
        model = DetectionSettings
        fields = SETTING_NAMES


class PlannedActivitySerializer(serializers.ModelSerializer):
    created_at = AwareDateTimeField(read_only=True)
    created_by = ActorField()

    class Meta:
        model = PlannedActivity
        fields = (
            "id",
            "starts_on",
            "ends_on",
            "entity_type",
            "entity_id",
            "expected_factor",
            "note",
            "created_at",
            "created_by",
        )
        read_only_fields = fields


class PlannedActivityInputSerializer(StrictModelSerializer):
    """A plan to create, or (partial) the fields of one to change."""

    class Meta:
        model = PlannedActivity
        fields = ("starts_on", "ends_on", "entity_type", "entity_id", "expected_factor", "note")
        extra_kwargs = {
            "entity_id": {"allow_blank": False},
            "expected_factor": {
                "help_text": "Expected spend in the window is multiplied by this factor."
            },
        }
