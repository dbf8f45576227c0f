"""Parsing and validation of the batch ingest bodies (`{"records": [...]}`, `{"runs": [...]}`).

DRF serializers cost tens of microseconds per field, which for a 1000-record batch is most
of the request time. These checks are hand-written instead: every problem of the batch is
collected as `records[i].<field>` and the batch is rejected as a whole, exactly like a
serializer would, at a fraction of the cost.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

from analytics.api.errors import PayloadTooLarge
from analytics.api.fields import NOT_ISO_DATETIME, parse_aware_datetime
from analytics.api.parsers import TOO_DEEP
from analytics.models import RunStatus

MAX_BATCH_ITEMS = 1000
# created_at may run ahead of the server clock by this much (client clock skew).
MAX_CLOCK_SKEW = timedelta(minutes=5)
CREATED_AT_TOO_LATE = "must not be later than receipt time + 5 minutes"
# numeric(18, 6): at most 6 decimal places are stored.
MAX_FRACTION_DIGITS = 6
CENT_FRACTION = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)
MAX_BIGINT = 2**63 - 1

# What one item may report. Each is far above anything real (the priciest single LLM calls
# cost a few hundred dollars; the largest context windows hold about 10 million tokens), so
# only unit mistakes and garbage hit them, e.g. micro-dollars sent as cents. Snapshots do not
# depend on them: their columns hold any sum the record columns can produce.
MAX_RECORD_CENTS = 10_000_000  # $100,000 for one LLM call
MAX_RECORD_TOKENS = 1_000_000_000  # input or output tokens of one call
MAX_RUN_CENTS = 100_000_000  # $1,000,000 for one run of many calls
MAX_RUN_TOKENS = 100_000_000_000  # tokens of one run
MAX_RUN_LATENCY_MS = 30 * 24 * 3600 * 1000  # 30 days
MAX_RUN_ATTEMPT = 1_000


class BatchJSONParser(BaseParser):
    """JSON parser for batch bodies: bounded read, exact decimals, no NaN/Infinity.

    The body limit middleware trusts Content-Length; reading at most one byte past the limit
    here keeps the limit even for a request that reaches the view some other way.
    Non-integer numbers become Decimal so `cost_cents` keeps every digit the client sent.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.API_MAX_BODY_BYTES
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(f"Request body exceeds {limit} bytes.")
        try:
            return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        except RecursionError:
            # The validator below never recurses, so only the decoder's own limit matters.
            raise exceptions.ParseError(TOO_DEEP) from None
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid JSON number")


class _Invalid(Exception):
    """One field of one item is invalid; the message is the reason shown to the client."""


# --- field checks: each returns the cleaned value or raises _Invalid -------------------------


def optional_string(max_length: int | None) -> Callable[[Any], str | None]:
    def check(value):
        if value is None:
            return None
        return _string(value, max_length)

    return check


def required_string(max_length: int) -> Callable[[Any], str]:
    def check(value):
        if value is None:
            raise _Invalid("may not be null")
        return _string(value, max_length)

    return check


def _string(value, max_length: int | None) -> str:
    if type(value) is not str:
        raise _Invalid("must be a string")
    if not value:
        raise _Invalid("may not be blank")
    if max_length is not None and len(value) > max_length:
        raise _Invalid(f"must be at most {max_length} characters")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; rejecting here avoids a 500 at insert time.
        raise _Invalid("must not contain NUL characters")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            # JSON allows lone surrogate escapes ("\ud800") that no UTF-8 column can store.
            raise _Invalid("must be valid Unicode text") from None
    return value


def choice(values: tuple[str, ...]) -> Callable[[Any], str]:
    allowed = frozenset(values)
    reason = "must be one of: " + ", ".join(values)

    def check(value):
        if value is None:
            raise _Invalid("may not be null")
        if type(value) is not str or value not in allowed:
            raise _Invalid(reason)
        return value

    return check


def integer(*, minimum: int, maximum: int = MAX_BIGINT, nullable: bool = False):
    def check(value):
        if value is None:
            if nullable:
                return None
            raise _Invalid("may not be null")
        # bool is an int subclass; `true` is not a token count.
        if type(value) is not int:
            raise _Invalid("must be an integer")
        if value < minimum:
            raise _Invalid(f"must be greater than or equal to {minimum}")
        if value > maximum:
            raise _Invalid(f"must be less than or equal to {maximum}")
        return value

    return check


def boolean(*, nullable: bool = False):
    def check(value):
        if value is None:
            if nullable:
                return None
            raise _Invalid("may not be null")
        if type(value) is not bool:
            raise _Invalid("must be a boolean")
        return value

    return check


def cents(*, maximum: int, nullable: bool = False):
    """A decimal in [0, maximum] with at most 6 significant fractional digits.

    Trailing zeros do not count (`1.5000000` is 1.5); numeric strings are accepted so that
    clients can send money without a float round trip.
    """

    def check(value):
        if value is None:
            if nullable:
                return None
            raise _Invalid("may not be null")
        value_type = type(value)
        if value_type is int:
            number = Decimal(value)
        elif value_type is Decimal:
            number = value
        elif value_type is str:
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                raise _Invalid("must be a number") from None
        else:
            raise _Invalid("must be a number")
        if not number.is_finite():
            raise _Invalid("must be a number")
        if number < 0:
            raise _Invalid("must be greater than or equal to 0")
        if number > maximum:
            raise _Invalid(f"must be less than or equal to {maximum}")
        if number.as_tuple().exponent < -MAX_FRACTION_DIGITS:
            # Compare values, not digit counts: only non-zero digits past the 6th place are
            # precision the column would silently round away.
            truncated = number.quantize(CENT_FRACTION, rounding=ROUND_DOWN)
            if truncated != number:
                raise _Invalid(f"must have at most {MAX_FRACTION_DIGITS} decimal places")
            return truncated
        return number

    return check


def aware_datetime(*, nullable: bool = False):
    def check(value):
        if value is None:
            if nullable:
                return None
            raise _Invalid("may not be null")
        if type(value) is not str:
            raise _Invalid(NOT_ISO_DATETIME)
        try:
            return parse_aware_datetime(value)
        except ValueError as exc:
            raise _Invalid(str(exc)) from None

    return check


# --- batch validation -------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    check: Callable[[Any], Any]
    required: bool = False
    # Used when the field is absent and defaults are filled (cost records); a callable gets
    # the receipt time.
    default: Any = None


COST_RECORD_FIELDS = (
    Field("idempotency_key", optional_string(64)),
    Field("user_id", optional_string(64)),
    Field("feature_tag", optional_string(128)),
    Field("request_id", optional_string(64)),
    Field("workflow_id", optional_string(64)),
    Field("run_id", optional_string(64)),
    Field("skill_id", optional_string(64)),
    Field("model", required_string(64), required=True),
    Field("provider", optional_string(64)),
    Field("input_tokens", integer(minimum=0, maximum=MAX_RECORD_TOKENS), default=0),
    Field("output_tokens", integer(minimum=0, maximum=MAX_RECORD_TOKENS), default=0),
    Field("cache_read_tokens", integer(minimum=0, maximum=MAX_RECORD_TOKENS), default=0),
    Field("cache_write_tokens", integer(minimum=0, maximum=MAX_RECORD_TOKENS), default=0),
    # Absent or null: priced by the ingest service from the model and the token counts.
    Field("cost_cents", cents(maximum=MAX_RECORD_CENTS, nullable=True)),
    Field("is_retry", boolean(), default=False),
    # Absent: the receipt time, filled in by the ingest service, which also tells an absent
    # created_at from a sent one when it compares payloads.
    Field("created_at", aware_datetime()),
)

RUN_FIELDS = (
    Field("id", required_string(64), required=True),
    Field("worker_id", required_string(64), required=True),
    Field("status", choice(tuple(RunStatus.values)), required=True),
    Field("success", boolean(nullable=True)),
    Field("error", optional_string(None)),
    Field("total_tokens", integer(minimum=0, maximum=MAX_RUN_TOKENS, nullable=True)),
    Field("total_latency_ms", integer(minimum=0, maximum=MAX_RUN_LATENCY_MS, nullable=True)),
    Field("cost_cents", cents(maximum=MAX_RUN_CENTS, nullable=True)),
    Field("is_retry", boolean()),
    Field("attempt", integer(minimum=1, maximum=MAX_RUN_ATTEMPT)),
    Field("parent_run_id", optional_string(64)),
    Field("created_at", aware_datetime()),
    Field("started_at", aware_datetime(nullable=True)),
    Field("completed_at", aware_datetime(nullable=True)),
)


def _batch_items(data, collection: str) -> list:
    """The item list of `{"<collection>": [...]}`; 413 above MAX_BATCH_ITEMS, 400 when empty."""
    if not isinstance(data, dict):
        raise exceptions.ValidationError(
            {"non_field_errors": [f'body must be a JSON object {{"{collection}": [...]}}']}
        )
    unknown = sorted(key for key in data if key != collection)
    errors = {key: ["unknown field"] for key in unknown}
    items = data.get(collection)
    if collection not in data:
        errors[collection] = ["is required"]
    elif not isinstance(items, list):
        errors[collection] = ["must be a list"]
    elif len(items) > MAX_BATCH_ITEMS:
        raise PayloadTooLarge(
            f"A batch holds at most {MAX_BATCH_ITEMS} {collection}; got {len(items)}."
        )
    elif not items:
        errors[collection] = [f"must contain at least 1 item (at most {MAX_BATCH_ITEMS})"]
    if errors:
        raise exceptions.ValidationError(errors)
    return items


def _validate_items(
    items: list,
    fields: tuple[Field, ...],
    *,
    collection: str,
    received_at: datetime,
    fill_defaults: bool,
) -> tuple[list[dict], dict[str, list[str]]]:
    known = {field.name for field in fields}
    latest_created_at = received_at + MAX_CLOCK_SKEW
    rows: list[dict] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        if type(item) is not dict:
            errors[f"{collection}[{index}]"] = ["must be an object"]
            rows.append({})
            continue
        row = {}
        for name in item:
            if name not in known:
                errors[f"{collection}[{index}].{name}"] = ["unknown field"]
        for field in fields:
            name = field.name
            if name in item:
                try:
                    row[name] = field.check(item[name])
                except _Invalid as exc:
                    errors[f"{collection}[{index}].{name}"] = [str(exc)]
            elif field.required:
                errors[f"{collection}[{index}].{name}"] = ["is required"]
            elif fill_defaults:
                default = field.default
                row[name] = default(received_at) if callable(default) else default
        created_at = row.get("created_at")
        if created_at is not None and created_at > latest_created_at:
            errors[f"{collection}[{index}].created_at"] = [CREATED_AT_TOO_LATE]
        rows.append(row)
    return rows, errors


COST_OR_TOKENS_REQUIRED = "is required unless input_tokens or output_tokens are sent"
CACHE_EXCEEDS_INPUT = (
    "cache_read_tokens + cache_write_tokens must not exceed input_tokens "
    "(input_tokens counts cached tokens too)"
)


def validate_cost_record_batch(data, *, received_at: datetime) -> list[dict]:
    """Cleaned cost records (every column filled, defaults applied; `created_at` None when
    absent, `cost_cents` None when the service is to price the record) or a ValidationError
    listing every problem of the batch; PayloadTooLarge above 1000 records."""
    items = _batch_items(data, "records")
    rows, errors = _validate_items(
        items, COST_RECORD_FIELDS, collection="records", received_at=received_at, fill_defaults=True
    )
    for index, (item, row) in enumerate(zip(items, rows, strict=True)):
        if type(item) is not dict:
            continue
        if (
            row.get("cost_cents") is None
            and "input_tokens" not in item
            and "output_tokens" not in item
        ):
            errors.setdefault(f"records[{index}].cost_cents", [COST_OR_TOKENS_REQUIRED])
        cached = row.get("cache_read_tokens"), row.get("cache_write_tokens")
        total = row.get("input_tokens")
        if (
            None not in (*cached, total)
            and cached[0] + cached[1] > total
            and f"records[{index}].input_tokens" not in errors
        ):
            name = "cache_read_tokens" if "cache_read_tokens" in item else "cache_write_tokens"
            errors.setdefault(f"records[{index}].{name}", [CACHE_EXCEEDS_INPUT])
    if errors:
        raise exceptions.ValidationError(errors)
    return rows


def validate_run_batch(data, *, received_at: datetime) -> list[dict]:
    """Cleaned runs holding only the fields the client sent (absent fields keep stored
    values on update). The client's `id` is returned as `run_id`. A run id repeated in the
    batch is an error on the later index."""
    items = _batch_items(data, "runs")
    rows, errors = _validate_items(
        items, RUN_FIELDS, collection="runs", received_at=received_at, fill_defaults=False
    )
    first_index: dict[str, int] = {}
    for index, row in enumerate(rows):
        run_id = row.pop("id", None)
        if run_id is None:
            continue
        row["run_id"] = run_id
        if run_id in first_index:
            errors.setdefault(f"runs[{index}].id", []).append(
                f"duplicate id in batch (first at runs[{first_index[run_id]}])"
            )
        else:
            first_index[run_id] = index
    if errors:
        raise exceptions.ValidationError(errors)
    return rows
