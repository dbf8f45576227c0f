"""Dates and datetimes as the whole project reads and writes them.

Every date and datetime the service accepts is bounded to SUPPORTED_START..SUPPORTED_END.
Python's datetime only spans years 1..9999, so an offset conversion
(`0001-01-01T00:00:00+01:00`) or a window computed from an edge value (baselines look back 56
days, forecasts and budget periods look ahead, month arithmetic) would raise OverflowError far
from the input. Bounding at the edge turns that into a ValueError with the reason, which the
API answers as a 400 naming the field. Output is UTC ISO-8601 with a `Z` suffix.

No Django REST framework here: services, commands and the API all import these.
"""

import re
from datetime import UTC, date, datetime, time

from django.utils.dateparse import parse_datetime

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
