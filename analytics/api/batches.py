"""Parsing and validation of the batch ingest bodies (`{"records": [...]}`, `{"runs": [...]}`).

DRF serializers cost tens of microseconds per field, which for a 1000-record batch is most
of the request time. The field checks are the hand-written ones of `analytics/validators.py`
instead: every problem of the batch is collected as `records[i].<field>` and the batch is
rejected as a whole, exactly like a serializer would, at a fraction of the cost.
"""

import json
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser

from analytics.api.errors import PayloadTooLarge
from analytics.api.parsers import TOO_DEEP
from analytics.models import RunStatus
from analytics.validators import (
    Field,
    Fields,
    aware_datetime,
    boolean,
    cents,
    check_object,
    choice,
    integer,
    optional_string,
    required_string,
)

MAX_BATCH_ITEMS = 1000
# created_at may run ahead of the server clock by this much (client clock skew).
MAX_CLOCK_SKEW = timedelta(minutes=5)
CREATED_AT_TOO_LATE = "must not be later than receipt time + 5 minutes"

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


COST_RECORD_FIELDS = Fields(
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

RUN_FIELDS = Fields(
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
    latest_created_at = received_at + MAX_CLOCK_SKEW
    rows: list[dict] = []
    errors: dict[str, list[str]] = {}
    for index, item in enumerate(items):
        path = f"{collection}[{index}]"
        if type(item) is not dict:
            errors[path] = ["must be an object"]
            rows.append({})
            continue
        row, item_errors = check_object(item, fields, path=path, fill_defaults=fill_defaults)
        errors.update(item_errors)
        created_at = row.get("created_at")
        if created_at is not None and created_at > latest_created_at:
            errors[f"{path}.created_at"] = [CREATED_AT_TOO_LATE]
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
        if type(item) is dict:
            _cost_record_rules(f"records[{index}]", item, row, errors)
    if errors:
        raise exceptions.ValidationError(errors)
    return rows


def _cost_record_rules(path: str, item: dict, row: dict, errors: dict[str, list[str]]) -> None:
    """The rules across fields of one record; a field already in error is not judged again."""
    if row.get("cost_cents") is None and "input_tokens" not in item and "output_tokens" not in item:
        errors.setdefault(f"{path}.cost_cents", [COST_OR_TOKENS_REQUIRED])
    cached = row.get("cache_read_tokens"), row.get("cache_write_tokens")
    total = row.get("input_tokens")
    if (
        None not in (*cached, total)
        and cached[0] + cached[1] > total
        and f"{path}.input_tokens" not in errors
    ):
        name = "cache_read_tokens" if "cache_read_tokens" in item else "cache_write_tokens"
        errors.setdefault(f"{path}.{name}", [CACHE_EXCEEDS_INPUT])


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
