"""Field validators of the hand-written body parsers: ingest batches, simulation bodies and
provenance backfill lines.

Each check takes a decoded JSON value and returns it cleaned or raises `FieldInvalid` with
the reason shown to the client. `check_object` runs a table of `Field`s over one JSON object
and collects every problem by path (`records[3].model`, `plan[0].params.timeout`), so a
parser reports all of a body's problems at once, as a serializer would, at a fraction of
the cost. No DRF here: services parse with these too.

Every check carries `spec`, its bounds as data, for the schema-only serializers' test.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from analytics.datetimes import NOT_ISO_DATETIME, parse_aware_datetime

MAX_BIGINT = 2**63 - 1
# numeric(18, 6): at most 6 decimal places are stored.
MAX_FRACTION_DIGITS = 6
CENT_FRACTION = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)

REQUIRED = "is required"
UNKNOWN_FIELD = "unknown field"
NOT_NULL = "may not be null"
NOT_INTEGER = "must be an integer"
NOT_OBJECT = "must be an object"

Check = Callable[[Any], Any]


class FieldInvalid(Exception):
    """One field is invalid.

    `message` is the reason for the field itself; `nested` holds reasons for parts of it,
    keyed by the path suffix (`[2]`, `.timeout`, `[0].skill`).
    """

    def __init__(self, message: str | None = None, nested: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.message = message
        self.nested = nested or {}

    def reasons(self, path: str) -> dict[str, list[str]]:
        """The reasons by full path, for a field at `path`."""
        found = {path: [self.message]} if self.message is not None else {}
        found.update((f"{path}{suffix}", reasons) for suffix, reasons in self.nested.items())
        return found


def is_integer(value: Any) -> bool:
    # bool is an int subclass; `true` is not an integer in JSON.
    return type(value) is int


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _with_spec(check: Check, **spec: Any) -> Check:
    check.spec = spec  # type: ignore[attr-defined]
    return check


def described(**spec: Any) -> Callable[[Check], Check]:
    """Decorate a hand-written check with its bounds as data (`type`, `nullable`, ...)."""
    return lambda check: _with_spec(check, **spec)


def optional_string(max_length: int | None, *, message: str | None = None) -> Check:
    """A string or null; `message`, when given, is the reason of every failure."""

    def check(value):
        if value is None:
            return None
        return _string(value, max_length, message)

    return _with_spec(check, type="string", max_length=max_length, nullable=True)


def required_string(max_length: int) -> Check:
    def check(value):
        if value is None:
            raise FieldInvalid(NOT_NULL)
        return _string(value, max_length, None)

    return _with_spec(check, type="string", max_length=max_length, nullable=False)


def _string(value, max_length: int | None, message: str | None) -> str:
    if type(value) is not str:
        raise FieldInvalid(message or "must be a string")
    if not value:
        raise FieldInvalid(message or "may not be blank")
    if max_length is not None and len(value) > max_length:
        raise FieldInvalid(message or f"must be at most {max_length} characters")
    return _storable(value, message)


def _storable(value: str, message: str | None) -> str:
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; rejecting here avoids a 500 at insert time.
        raise FieldInvalid(message or "must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            # JSON allows lone surrogate escapes ("\ud800") that no UTF-8 column can store.
            raise FieldInvalid(message or "must be valid Unicode text") from None
    return value


def choice(values: tuple[str, ...]) -> Check:
    allowed = frozenset(values)
    reason = "must be one of: " + ", ".join(values)

    def check(value):
        if value is None:
            raise FieldInvalid(NOT_NULL)
        if type(value) is not str or value not in allowed:
            raise FieldInvalid(reason)
        return value

    return _with_spec(check, type="choice", choices=tuple(values), nullable=False)


def integer(
    *,
    minimum: int,
    maximum: int | None = MAX_BIGINT,
    nullable: bool = False,
    message: str | None = None,
    null_message: str = NOT_NULL,
    range_message: str | None = None,
) -> Check:
    """An integer in [minimum, maximum] (no upper bound when maximum is None).

    `message` replaces the reason of every failure, `range_message` that of a value out of
    range, `null_message` that of a null where none is allowed.
    """

    def check(value):
        if value is None:
            if nullable:
                return None
            raise FieldInvalid(message or null_message)
        if type(value) is not int:
            raise FieldInvalid(message or NOT_INTEGER)
        if value < minimum:
            raise FieldInvalid(
                message or range_message or f"must be greater than or equal to {minimum}"
            )
        if maximum is not None and value > maximum:
            raise FieldInvalid(
                message or range_message or f"must be less than or equal to {maximum}"
            )
        return value

    return _with_spec(check, type="integer", minimum=minimum, maximum=maximum, nullable=nullable)


def boolean(*, nullable: bool = False) -> Check:
    def check(value):
        if value is None:
            if nullable:
                return None
            raise FieldInvalid(NOT_NULL)
        if type(value) is not bool:
            raise FieldInvalid("must be a boolean")
        return value

    return _with_spec(check, type="boolean", nullable=nullable)


def json_object(*, nullable: bool = False) -> Check:
    def check(value):
        if value is None and nullable:
            return None
        if type(value) is not dict:
            raise FieldInvalid(NOT_OBJECT)
        return value

    return _with_spec(check, type="object", nullable=nullable)


def cents(*, maximum: int, nullable: bool = False) -> Check:
    """A decimal in [0, maximum] with at most 6 significant fractional digits.

    Trailing zeros do not count (`1.5000000` is 1.5); numeric strings are accepted so that
    clients can send money without a float round trip.
    """

    def check(value):
        if value is None:
            if nullable:
                return None
            raise FieldInvalid(NOT_NULL)
        number = _decimal(value)
        if number < 0:
            raise FieldInvalid("must be greater than or equal to 0")
        if number > maximum:
            raise FieldInvalid(f"must be less than or equal to {maximum}")
        if number.as_tuple().exponent < -MAX_FRACTION_DIGITS:
            # Compare values, not digit counts: only non-zero digits past the 6th place are
            # precision the column would silently round away.
            truncated = number.quantize(CENT_FRACTION, rounding=ROUND_DOWN)
            if truncated != number:
                raise FieldInvalid(f"must have at most {MAX_FRACTION_DIGITS} decimal places")
            return truncated
        return number

    return _with_spec(check, type="decimal", minimum=0, maximum=maximum, nullable=nullable)


def _decimal(value: Any) -> Decimal:
    value_type = type(value)
    if value_type is int:
        number = Decimal(value)
    elif value_type is Decimal:
        number = value
    elif value_type is str:
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise FieldInvalid("must be a number") from None
    else:
        raise FieldInvalid("must be a number")
    if not number.is_finite():
        raise FieldInvalid("must be a number")
    return number


def aware_datetime(*, nullable: bool = False) -> Check:
    def check(value):
        if value is None:
            if nullable:
                return None
            raise FieldInvalid(NOT_NULL)
        if type(value) is not str:
            raise FieldInvalid(NOT_ISO_DATETIME)
        try:
            return parse_aware_datetime(value)
        except ValueError as exc:
            raise FieldInvalid(str(exc)) from None

    return _with_spec(check, type="datetime", nullable=nullable)


@dataclass(frozen=True)
class Field:
    name: str
    check: Check
    required: bool = False
    # Used when the field is absent and defaults are filled; a callable is called for a
    # fresh value (a new dict per object).
    default: Any = None
    spec: dict[str, Any] = field(init=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "spec", getattr(self.check, "spec", {}))


class Fields(tuple):
    """A table of fields, with the set of their names (checked once per object)."""

    names: frozenset[str]

    def __new__(cls, *fields: Field) -> "Fields":
        table = super().__new__(cls, fields)
        table.names = frozenset(spec.name for spec in fields)
        return table


# complexity: the per-field loop of every ingested record (1000 a batch), kept in one frame
def check_object(
    item: dict,
    fields: Fields,
    *,
    path: str = "",
    fill_defaults: bool = True,
    unknown: bool = True,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Run `fields` over one JSON object: (cleaned values by name, reasons by path).

    Keys outside `fields` are "unknown field" errors unless `unknown` is False. An absent
    field is "is required" when required, else its default when `fill_defaults`, else left
    out. Paths are `<path>.<name>`, or `<name>` at the top.
    """
    prefix = f"{path}." if path else ""
    errors: dict[str, list[str]] = {}
    if unknown and not fields.names.issuperset(item):
        errors.update(
            (f"{prefix}{name}", [UNKNOWN_FIELD]) for name in item if name not in fields.names
        )
    row: dict[str, Any] = {}
    for spec in fields:
        name = spec.name
        if name in item:
            try:
                row[name] = spec.check(item[name])
            except FieldInvalid as exc:
                errors.update(exc.reasons(f"{prefix}{name}"))
        elif spec.required:
            errors[f"{prefix}{name}"] = [REQUIRED]
        elif fill_defaults:
            default = spec.default
            row[name] = default() if callable(default) else default
    return row, errors
