"""Serializer fields and base classes that enforce the API conventions.

Every date and datetime the API accepts goes through the parsers of `analytics/datetimes.py`
(re-exported here), which bound it to SUPPORTED_START..SUPPORTED_END; the fields below turn
their ValueError into a 400 naming the field.
"""

from datetime import date, datetime

from django.db import models
from rest_framework import serializers

from analytics.datetimes import (  # noqa: F401 - re-exported for the API's modules
    FIRST_SUPPORTED_DAY,
    LAST_SUPPORTED_DAY,
    NOT_ISO_DATE,
    NOT_ISO_DATETIME,
    OUT_OF_RANGE,
    SUPPORTED_END,
    SUPPORTED_START,
    TIMEZONE_REQUIRED,
    format_datetime,
    parse_aware_datetime,
    parse_supported_date,
    supported_date,
    supported_datetime,
)


class AwareDateTimeField(serializers.DateTimeField):
    """Rejects naive datetimes ("timezone is required") instead of assuming a zone, and
    values outside the supported range.

    `allow_date=True` (filters and windows) also takes a date alone as midnight UTC.
    """

    def __init__(self, *args, allow_date: bool = False, **kwargs):
        self.allow_date = allow_date
        super().__init__(*args, **kwargs)

    def to_internal_value(self, value):
        try:
            if isinstance(value, datetime):
                if value.tzinfo is None:
                    self.fail("naive")
                return supported_datetime(value)
            return parse_aware_datetime(value, allow_date=self.allow_date)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def to_representation(self, value):
        return format_datetime(value)

    default_error_messages = {"naive": TIMEZONE_REQUIRED}


class SupportedDateField(serializers.DateField):
    """An ISO-8601 date (YYYY-MM-DD) inside the supported range."""

    def to_internal_value(self, value):
        try:
            if isinstance(value, datetime):
                raise ValueError(NOT_ISO_DATE)
            if isinstance(value, date):
                return supported_date(value)
            return parse_supported_date(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None


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
        # Every model DateTimeField renders as UTC with a Z suffix and rejects naive input;
        # dates and datetimes are bounded to the supported range.
        models.DateTimeField: AwareDateTimeField,
        models.DateField: SupportedDateField,
    }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({key: ["unknown field"] for key in unknown})
        return super().to_internal_value(data)


class TimeWindowFilterSerializer(serializers.Serializer):
    """Query filters `from`/`to`: aware datetimes (or days, as midnight UTC) of a half-open
    `[from, to)` window."""

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword, so it cannot be declared as a class attribute.
        fields["from"] = AwareDateTimeField(required=False, allow_date=True)
        fields["to"] = AwareDateTimeField(required=False, allow_date=True)
        return fields

    def validate(self, attrs):
        start, end = attrs.get("from"), attrs.get("to")
        if start is not None and end is not None and start >= end:
            raise serializers.ValidationError({"from": ["must be before 'to'"]})
        return attrs
