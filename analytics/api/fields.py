"""Serializer fields and base classes that enforce the API conventions (SPEC.md §3)."""

from datetime import UTC, datetime

from django.db import models
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

TIMEZONE_REQUIRED = "timezone is required"
NOT_ISO_DATETIME = "must be an ISO-8601 datetime"


def parse_aware_datetime(raw: str) -> datetime:
    """Parse ISO-8601 with an offset; raise ValueError with the spec's reason otherwise."""
    try:
        value = parse_datetime(raw.strip()) if isinstance(raw, str) else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(NOT_ISO_DATETIME)
    if value.tzinfo is None:
        raise ValueError(TIMEZONE_REQUIRED)
    return value.astimezone(UTC)


def format_datetime(value: datetime | None) -> str | None:
    """UTC ISO-8601 with a `Z` suffix; microseconds only when non-zero."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


class AwareDateTimeField(serializers.DateTimeField):
    """Rejects naive datetimes ("timezone is required") instead of assuming a zone."""

    def to_internal_value(self, value):
        if isinstance(value, datetime):
            if value.tzinfo is None:
                self.fail("naive")
            return value.astimezone(UTC)
        try:
            return parse_aware_datetime(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return format_datetime(value)

    default_error_messages = {"naive": TIMEZONE_REQUIRED}


class StrictSerializer(serializers.Serializer):
    """A serializer that answers 400 for body fields it does not know."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)


class StrictModelSerializer(serializers.ModelSerializer):
    """A model serializer that answers 400 for unknown or read-only body fields."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        # Every model DateTimeField renders as UTC with a Z suffix and rejects naive input.
        models.DateTimeField: AwareDateTimeField,
    }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)


class TimeWindowFilterSerializer(serializers.Serializer):
    """Query filters `from`/`to`: aware datetimes of a half-open `[from, to)` window."""

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword, so it cannot be declared as a class attribute.
        fields["from"] = AwareDateTimeField(required=False)
        fields["to"] = AwareDateTimeField(required=False)
        return fields

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"from": ["must be before 'to'"]})
        return attrs
