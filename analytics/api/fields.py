"""Serializer fields and base classes that enforce the API conventions.

Every date and datetime the API accepts goes through the parsers here, which bound it to
SUPPORTED_START..SUPPORTED_END. Python's datetime only spans years 1..9999, so an offset
conversion (`0001-01-01T00:00:00+01:00`) or a window computed from an edge value (baselines
look back 56 days, forecasts and budget periods look ahead, month arithmetic) would raise
OverflowError far from the input. Bounding at the edge turns that into a 400 naming the field.
"""

import re
from datetime import UTC, date, datetime, time

from django.db import models
from django.utils.dateparse import parse_datetime
from rest_framework import serializers

TIMEZONE_REQUIRED = "timezone is required"
NOT_ISO_DATETIME = "must be an ISO-8601 datetime"
NOT_ISO_DATE = "must be an ISO-8601 date (YYYY-MM-DD)"

# The supported range, [2000-01-01, 2100-01-01) UTC. Decades away from datetime's limits in
# both directions, so no window the services derive from a value can leave them, while no
# real cost record, run or plan falls outside it.
SUPPORTED_START = datetime(2000, 1, 1, tzinfo=UTC)
SUPPORTED_END = datetime(2100, 1, 1, tzinfo=UTC)
FIRST_SUPPORTED_DAY = SUPPORTED_START.date()
LAST_SUPPORTED_DAY = date(2099, 12, 31)
OUT_OF_RANGE = "must be between 2000-01-01 and 2099-12-31 (UTC)"

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def supported_datetime(value: datetime) -> datetime:
    """`value` in UTC; raise ValueError(OUT_OF_RANGE) outside the supported range.

    `value` must be aware. Converting an edge value to UTC can itself overflow, which is the
    same error.
    """
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError(OUT_OF_RANGE) from None
    if not SUPPORTED_START <= value < SUPPORTED_END:
        raise ValueError(OUT_OF_RANGE)
    return value


def supported_date(value: date) -> date:
    """`value` itself; raise ValueError(OUT_OF_RANGE) outside the supported range."""
    if not FIRST_SUPPORTED_DAY <= value <= LAST_SUPPORTED_DAY:
        raise ValueError(OUT_OF_RANGE)
    return value


def parse_supported_date(raw: str) -> date:
    """Parse `YYYY-MM-DD` inside the supported range; raise ValueError with the reason."""
    text = raw.strip() if isinstance(raw, str) else ""
    if not _DATE_ONLY.fullmatch(text):
        raise ValueError(NOT_ISO_DATE)
    try:
        value = date.fromisoformat(text)
    except ValueError:
        raise ValueError(NOT_ISO_DATE) from None
    return supported_date(value)


def parse_aware_datetime(raw: str, *, allow_date: bool = False) -> datetime:
    """Parse ISO-8601 with an offset into UTC; raise ValueError with the reason otherwise.

    With `allow_date`, a date alone (`2026-11-01`) is midnight UTC of that day: filters and
    windows take days as well as instants. The result lies in the supported range.
    """
    text = raw.strip() if isinstance(raw, str) else None
    if allow_date and text is not None and _DATE_ONLY.fullmatch(text):
        return datetime.combine(parse_supported_date(text), time.min, tzinfo=UTC)
    try:
        value = parse_datetime(text) if text is not None else None
    except ValueError:
        value = None
    if value is None:
        raise ValueError(NOT_ISO_DATETIME)
    if value.tzinfo is None:
        raise ValueError(TIMEZONE_REQUIRED)
    return supported_datetime(value)


def format_datetime(value: datetime | None) -> str | None:
    """UTC ISO-8601 with a `Z` suffix; microseconds only when non-zero."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


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
