"""Provenance rows: the only code that creates them, the backfill, the export and the prune.

Rows are append-only: nothing here updates one, and only the
retention prune deletes them.
"""

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from analytics.datetimes import format_datetime, parse_aware_datetime
from analytics.hashing import canonical_json, sha256_text_hex, short_hash
from analytics.models import Tenant
from analytics.prepared import (
    PreparedStatement,
    ensure_prepared,
    prepared_statement,
    session_prepared_unknown,
)
from analytics.selectors.tenancy import API_KEY_GENERATION_SQL
from analytics.services.locks import LockId, leader_lock
from analytics.validators import (
    REQUIRED,
    Field,
    FieldInvalid,
    Fields,
    check_object,
    is_number,
    json_object,
    optional_string,
)
from costsim import metrics
from costsim.models import BREAKER_NAME, Provenance, ProvenanceSource, Variant, Verdict
from costsim.selectors import (
    BreakerSnapshot,
    circuit_breaker_snapshot_sql,
    provenance_existing_keys,
    provenance_existing_rows,
    provenance_export_rows,
    tenants_by_slug,
)
from costsim.services.breaker import STEADY_SQL
from costsim.services.drift import Comparison
from costsim.services.estimators import V1Result, V2Result

logger = logging.getLogger(__name__)

INPUT_HASH_LENGTH = 16
_HEX_DIGITS = frozenset("0123456789abcdef")
BACKFILL_KEYS = frozenset({"tenant", "cost", "run_id", "input", "input_hash"})
# Money columns are named with their unit in the export. The backfill reads these names and
# also the bare column names, which export files written before the rename carry.
EXPORT_MONEY_NAMES = {
    "v1_cost": "v1_cost_cents",
    "v2_cost": "v2_cost_cents",
    "cost_delta": "cost_delta_cents",
}
# A backfill line with `variant_slug` is an exported row (provenance_export) and is restored
# as it was: its source, versions, payloads, costs and created_at. `id` and `tenant_id` are
# read and ignored: they belong to the exporting database, the tenant is found by its slug.
RESTORE_REQUIRED_KEYS = (
    "tenant",
    "variant_slug",
    "source",
    "model_version",
    "adapter_version",
    "commit_sha",
    "input_hash",
    "created_at",
)
RESTORE_KEYS = frozenset(
    {
        *RESTORE_REQUIRED_KEYS,
        "id",
        "tenant_id",
        "run_id",
        "input_json",
        "output_json",
        "output_hash",
        "drift_score",
        "verdict",
        "v2_status",
        "runtime_ms",
        *EXPORT_MONEY_NAMES,
        *EXPORT_MONEY_NAMES.values(),
    }
)
# v1_cost is a PostgreSQL integer column.
MAX_COST_CENTS = 2**31 - 1
# Rows deleted per prune transaction: a retention backlog is removed in short
# transactions instead of one that holds millions of row locks and its WAL at once.
PRUNE_CHUNK_SIZE = 10_000
# Full clean skips the tenant: the caller holds the instance, and checking it would cost
# one SELECT per row.
_CLEAN_EXCLUDE = ("tenant",)


@dataclass(frozen=True)
class ProvenanceEntry:
    """One V2 comparison to record (the arguments of provenance_record)."""

    tenant: Tenant
    run_id: str | None
    source: str
    input_json: dict[str, Any]
    v1_result: V1Result | None
    v2_result: V2Result | None
    comparison: Comparison | None


@dataclass
class BackfillResult:
    inserted: int = 0  # with dry_run: the rows that would be inserted
    skipped: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0  # non-blank lines read so far


def non_finite_number_path(value: Any, path: str = "") -> str | None:
    """Return the path of the first NaN or infinite number, or None.

    JSON has no such numbers, so jsonb refuses them; Python's decoder still reads `1e400`
    as infinity. Paths look like `plan[0].params.timeout`.
    """
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict):
        for key, item in value.items():
            found = non_finite_number_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = non_finite_number_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


# complexity: one walk over a JSON value, inline because every simulated plan goes through it
def unstorable_text_path(value: Any, path: str = "") -> str | None:
    """Return the path of the first string PostgreSQL cannot store, or None.

    jsonb and text reject NUL characters and unpaired surrogates (both reachable through
    JSON escapes); dict keys count too. Paths look like `plan[0].params.prompt`.
    """
    if isinstance(value, str):
        if "\x00" in value:
            return path
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            if unstorable_text_path(key, child) is not None:
                return child
            found = unstorable_text_path(item, child)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_text_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def provenance_input_json(
    *, plan: Any, budget_cents: int, allowed_skills: Sequence[str] | None
) -> dict[str, Any]:
    """Return the input_json of a comparison.

    `plan` must be the plan exactly as received, without defaults filled in, so that a
    client can recompute input_hash from its own request. allowed_skills is included only
    when the request carried a list (an empty list included).
    """
    value: dict[str, Any] = {"plan": plan, "budget_cents": budget_cents}
    if allowed_skills is not None:
        value["allowed_skills"] = list(allowed_skills)
    return value


# complexity: one conditional per column that a missing V1, V2 or comparison leaves null
def _entry_values(
    entry: ProvenanceEntry,
    *,
    v2_output: dict[str, Any] | None = None,
    input_text: str | None = None,
) -> dict[str, Any]:
    """Return the column values (by field name, tenant excluded) of one comparison's row.

    `input_text` is canonical_json(entry.input_json) when the caller has it already.
    """
    if input_text is None:
        input_text = canonical_json(entry.input_json)
    v1, v2, comparison = entry.v1_result, entry.v2_result, entry.comparison
    if v2_output is None and v2 is not None:
        v2_output = v2.to_dict()
    v1_cost = v1.estimated_cost_cents if v1 is not None else None
    v2_cost = v2.estimated_cost_cents if v2 is not None else None
    return {
        "run_id": entry.run_id,
        "variant_slug": Variant.V2.value,
        "source": entry.source,
        "model_version": settings.COSTSIM_MODEL_VERSION,
        "adapter_version": settings.COSTSIM_ADAPTER_VERSION,
        "commit_sha": settings.GIT_COMMIT_SHA,
        "input_json": entry.input_json,
        # short_hash of input_json, from the canonical text already at hand.
        "input_hash": sha256_text_hex(input_text)[:INPUT_HASH_LENGTH],
        "output_json": v2_output,
        "output_hash": v2.output_hash if v2 is not None else "",
        "v1_cost": v1_cost,
        "v2_cost": v2_cost,
        "cost_delta": (v2_cost - v1_cost if v1_cost is not None and v2_cost is not None else None),
        "drift_score": comparison.drift_score if comparison is not None else None,
        "verdict": comparison.verdict if comparison is not None else None,
        "v2_status": v2.status if v2 is not None else None,
        "runtime_ms": v2.runtime_ms if v2 is not None else None,
        "created_at": timezone.now(),
    }


def _entry_row(entry: ProvenanceEntry) -> Provenance:
    row = Provenance(tenant=entry.tenant, **_entry_values(entry))
    row.full_clean(exclude=_CLEAN_EXCLUDE, validate_unique=False, validate_constraints=False)
    return row


# Column order of the hand-written INSERT: the tenant, then every other concrete field
# but the generated id.
_VALUE_FIELDS = (
    "run_id",
    "variant_slug",
    "source",
    "model_version",
    "adapter_version",
    "commit_sha",
    "input_json",
    "input_hash",
    "output_json",
    "output_hash",
    "v1_cost",
    "v2_cost",
    "cost_delta",
    "drift_score",
    "verdict",
    "v2_status",
    "runtime_ms",
    "created_at",
)
_INSERT_FIELDS = ("tenant", *_VALUE_FIELDS)
_JSON_FIELDS = frozenset({"input_json", "output_json"})


@cache
def _insert_sql() -> str:
    opts = Provenance._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in _INSERT_FIELDS)
    values = ", ".join("%s::jsonb" if name in _JSON_FIELDS else "%s" for name in _INSERT_FIELDS)
    return (
        f"INSERT INTO {quote(opts.db_table)} ({columns}) VALUES ({values}) "
        f"RETURNING {quote(opts.pk.column)}"
    )


def _json_param(value: Any) -> str | None:
    # What JSONField would send (json.dumps, default options); NULL stays SQL NULL.
    return None if value is None else json.dumps(value)


def _value_params(values: dict[str, Any], *, input_text: str) -> list[Any]:
    """The parameters of the hand-written INSERTs, in `_VALUE_FIELDS` order.

    input_json is sent as `input_text`, its canonical text (the one input_hash digests), so
    the document is serialised once. jsonb keeps the value, not the text (key order and
    spacing are not stored), so the row holds what JSONField's own text would give.
    """
    return [
        input_text
        if name == "input_json"
        else _json_param(values[name])
        if name in _JSON_FIELDS
        else values[name]
        for name in _VALUE_FIELDS
    ]


def _entry_params(
    entry: ProvenanceEntry, *, v2_output: dict[str, Any] | None
) -> tuple[dict[str, Any], list[Any]]:
    """The row values of `entry` and the hand-written INSERTs' parameters for them, its
    input serialised once for both the hash and the parameter."""
    input_text = canonical_json(entry.input_json)
    values = _entry_values(entry, v2_output=v2_output, input_text=input_text)
    return values, _value_params(values, input_text=input_text)


def _count_written(rows: Iterable[Provenance]) -> None:
    for row in rows:
        metrics.provenance_logs_total.labels(tenant=row.tenant.slug, source=row.source).inc()


def provenance_record(
    *,
    tenant: Tenant,
    run_id: str | None,
    source: str,
    input_json: dict[str, Any],
    v1_result: V1Result | None,
    v2_result: V2Result | None,
    comparison: Comparison | None,
    v2_output: dict[str, Any] | None = None,
) -> Provenance:
    """Write the provenance row of one V2 comparison (variant `v2`) and return it.

    input_json is stored as given and hashed (first 16 hex of its SHA-256); the versions
    and commit come from configuration. `v2_output` is `v2_result.to_dict()` when the
    caller has already built it. Counts the row in
    costsim_v2_provenance_logs_total{tenant, source}.

    This runs on every shadowed simulation, so it is one hand-written INSERT ... RETURNING
    id: a transaction of its own under autocommit (it joins the caller's transaction
    inside atomic()), with no BEGIN/COMMIT round trips, no ORM compilation and no
    full_clean(). The values come from the validated request body, the estimators and
    settings; the column types and lengths are still enforced by PostgreSQL, so a value
    that does not fit (a misconfigured version string) fails the INSERT instead.
    """
    values, value_params = _entry_params(
        ProvenanceEntry(
            tenant=tenant,
            run_id=run_id,
            source=source,
            input_json=input_json,
            v1_result=v1_result,
            v2_result=v2_result,
            comparison=comparison,
        ),
        v2_output=v2_output,
    )
    params = [tenant.pk, *value_params]
    with connection.cursor() as cursor:
        cursor.execute(_insert_sql(), params)
        (pk,) = cursor.fetchone()
    row = Provenance(pk=pk, tenant=tenant, **values)
    row._state.adding = False
    row._state.db = connection.alias
    _count_written([row])
    return row


@dataclass(frozen=True)
class SteadyWrite:
    """What the statement of provenance_record_if_steady saw and did."""

    row_id: int | None  # the new row's id; None when nothing was written
    breaker: BreakerSnapshot | None  # the breaker row in the statement's snapshot; None: no row
    key_generation: int | None  # the API key generation then; None when there was no breaker row


def _base_type(field) -> str:
    db_type = field.rel_db_type(connection) if field.is_relation else field.db_type(connection)
    return re.sub(r"\(\d+\)$", "", db_type)


# The parameters of the steady statement that carry the row's values, in _INSERT_FIELDS order.
_STEADY_VALUE_PARAMS = tuple(f"v{index}" for index in range(len(_INSERT_FIELDS)))


@cache
def _steady_insert() -> PreparedStatement:
    """The statement of provenance_record_if_steady, prepared once per database session:
    parsing and planning it cost PostgreSQL four times what executing it does."""
    opts = Provenance._meta
    quote = connection.ops.quote_name
    columns = ", ".join(quote(opts.get_field(name).column) for name in _INSERT_FIELDS)
    # INSERT ... SELECT gives its parameters no column types (VALUES would), so each is
    # declared with its column's type without a length: a cast to varchar(n) would cut a
    # long value silently, the assignment to the column refuses it as provenance_record's
    # does.
    types = {
        param: _base_type(opts.get_field(name))
        for param, name in zip(_STEADY_VALUE_PARAMS, _INSERT_FIELDS, strict=True)
    }
    values = ", ".join(f"%({param})s" for param in _STEADY_VALUE_PARAMS)
    pk = quote(opts.pk.column)
    sql = (
        f"WITH breaker AS ({circuit_breaker_snapshot_sql('%(breaker)s')}), "
        f"written AS (INSERT INTO {quote(opts.db_table)} ({columns}) SELECT {values} "
        f"FROM breaker WHERE {STEADY_SQL} "
        f"AND (%(generation)s IS NULL OR ({API_KEY_GENERATION_SQL}) = %(generation)s) "
        f"RETURNING {pk}) "
        f"SELECT ({API_KEY_GENERATION_SQL}), breaker.*, (SELECT {pk} FROM written) FROM breaker"
    )
    return prepared_statement(
        "costsim_provenance_steady", sql, {**types, "breaker": "text", "generation": "bigint"}
    )


def provenance_record_if_steady(
    *,
    tenant: Tenant,
    run_id: str | None,
    source: str,
    input_json: dict[str, Any],
    v1_result: V1Result,
    v2_result: V2Result,
    comparison: Comparison,
    v2_output: dict[str, Any] | None = None,
    key_generation: int | None = None,
) -> SteadyWrite:
    """Write the row of provenance_record only while the breaker is steady; one statement
    (prepared once per database session, analytics/prepared.py).

    The statement reads the breaker row and the API key generation and inserts the row only
    when the breaker is closed with no streak (breaker.STEADY_SQL) and, when
    `key_generation` is given, the generation still equals it. Reads and write share one
    snapshot, so a written row is exactly as if the breaker had been checked at that moment
    and both reports of a steady breaker had been made, which change nothing. Nothing is
    written otherwise, and the result says what the statement saw, for the caller to take
    the long way. The row is committed with the statement (autocommit) before any answer
    reports it, like provenance_record's.
    """
    _, value_params = _entry_params(
        ProvenanceEntry(
            tenant=tenant,
            run_id=run_id,
            source=source,
            input_json=input_json,
            v1_result=v1_result,
            v2_result=v2_result,
            comparison=comparison,
        ),
        v2_output=v2_output,
    )
    statement = _steady_insert()
    params = dict(zip(_STEADY_VALUE_PARAMS, [tenant.pk, *value_params], strict=True))
    params.update(breaker=BREAKER_NAME, generation=key_generation)
    with connection.cursor() as cursor:
        try:
            ensure_prepared(cursor, statement)
            cursor.execute(statement.execute, params)
        except Exception:
            session_prepared_unknown()
            raise
        row = cursor.fetchone()
    if row is None:
        return SteadyWrite(row_id=None, breaker=None, key_generation=None)
    written = SteadyWrite(
        row_id=row[-1], breaker=BreakerSnapshot(*row[1:-1]), key_generation=row[0]
    )
    if written.row_id is not None:
        metrics.provenance_logs_total.labels(tenant=tenant.slug, source=source).inc()
    return written


@transaction.atomic
def provenance_record_many(*, entries: Sequence[ProvenanceEntry]) -> list[Provenance]:
    """Write several comparisons with one INSERT; return the rows with their ids.

    All or nothing: a row that fails validation raises before anything is written.
    """
    rows = [_entry_row(entry) for entry in entries]
    if not rows:
        return []
    # PostgreSQL returns the generated ids from the bulk INSERT, so every row has its pk.
    created = Provenance.objects.bulk_create(rows)
    _count_written(created)
    return created


# Backfill ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _BackfillLine:
    line_no: int
    slug: str
    cost: int
    run_id: str | None
    input_json: dict[str, Any]
    input_hash: str


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


@dataclass(frozen=True)
class _RestoreLine:
    """An exported row to write back as it was (`values` by field name, tenant excluded)."""

    line_no: int
    slug: str
    values: dict[str, Any]


def _backfill_parse(line_no: int, text: str | bytes) -> _BackfillLine | _RestoreLine | str:
    """Return the parsed line, or the reason it is rejected."""
    try:
        # Bytes are decoded as UTF-8 here; a decoding error is a ValueError like bad JSON.
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        return f"invalid JSON: {exc}"
    if not isinstance(data, dict):
        return "must be a JSON object"
    bad_text = unstorable_text_path(data)
    if bad_text is not None:
        return f"{bad_text}: contains a NUL character or an unpaired surrogate"
    if "variant_slug" in data:
        return _restore_parse(line_no, data)
    return _estimate_parse(line_no, data)


def _estimate_parse(line_no: int, data: dict[str, Any]) -> _BackfillLine | str:
    """Return a V1 estimate line ready to write, or the reasons it is rejected."""
    problems: list[str] = []
    unknown = sorted(data.keys() - BACKFILL_KEYS)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)}")
    row, errors = check_object(data, BACKFILL_FIELDS, unknown=False)
    problems += [f"{name}: {reason}" for name, reasons in errors.items() for reason in reasons]
    if data.get("input") is None and data.get("input_hash") is None:
        problems.append("input or input_hash is required")
    if problems:
        return "; ".join(problems)
    input_json = row["input"]
    return _BackfillLine(
        line_no=line_no,
        slug=row["tenant"],
        cost=row["cost"],
        run_id=row["run_id"],
        input_json=input_json if input_json is not None else {},
        input_hash=row["input_hash"] or short_hash(input_json, INPUT_HASH_LENGTH),
    )


def _tenant_slug(value: Any) -> str:
    if value is None:
        raise FieldInvalid(REQUIRED)
    if not isinstance(value, str) or not value:
        raise FieldInvalid("must be a tenant slug")
    return value


def _v1_cost(value: Any) -> int:
    if value is None:
        raise FieldInvalid(REQUIRED)
    if not is_number(value) or value < 0:
        raise FieldInvalid("must be a number >= 0")
    if value != int(value):
        # V1 estimates are whole cents; a fraction means the line is not a V1 estimate.
        raise FieldInvalid("must be a whole number of cents")
    if value > MAX_COST_CENTS:
        raise FieldInvalid(f"must be at most {MAX_COST_CENTS}")
    return int(value)


def _input_hash(value: Any) -> str | None:
    if value is None:
        return None
    # Stored lower-case, as short_hash produces it, so the duplicate check matches.
    if not isinstance(value, str) or not _is_hex16(value.lower()):
        raise FieldInvalid("must be 16 hex characters")
    return value.lower()


BACKFILL_FIELDS = Fields(
    Field("tenant", _tenant_slug, required=True),
    Field("cost", _v1_cost, required=True),
    Field("run_id", optional_string(64, message="must be a string of 1 to 64 characters")),
    Field("input", json_object(nullable=True)),
    Field("input_hash", _input_hash),
)


def _restore_parse(line_no: int, data: dict[str, Any]) -> _RestoreLine | str:
    """Return an exported row ready to restore, or the reasons it is rejected.

    Types, choices, ranges and the timestamp are checked here; lengths by the model's
    full_clean when the row is built.
    """
    problems = _restore_shape_problems(data)
    values: dict[str, Any] = {}
    for part in (_restore_texts, _restore_payloads, _restore_numbers, _restore_created_at):
        problems += part(data, values)
    if problems:
        return "; ".join(problems)
    for column in (*EXPORT_MONEY_NAMES, "runtime_ms"):
        if values[column] is not None:
            values[column] = int(values[column])
    return _RestoreLine(line_no=line_no, slug=data["tenant"], values=values)


def _restore_shape_problems(data: dict[str, Any]) -> list[str]:
    """Unknown and missing keys, non-finite numbers anywhere, and the tenant slug."""
    problems: list[str] = []
    unknown = sorted(data.keys() - RESTORE_KEYS)
    if unknown:
        problems.append(f"unknown field(s): {', '.join(unknown)}")
    problems.extend(f"{key}: is required" for key in RESTORE_REQUIRED_KEYS if data.get(key) is None)
    # Python reads `1e400` as infinity, which neither jsonb nor the export can hold.
    bad_number = non_finite_number_path(data)
    if bad_number is not None:
        problems.append(f"{bad_number}: must be a finite number")
    slug = data.get("tenant")
    if slug is not None and (not isinstance(slug, str) or not slug):
        problems.append("tenant: must be a tenant slug")
    return problems


_RESTORE_TEXTS = (
    "variant_slug",
    "source",
    "model_version",
    "adapter_version",
    "commit_sha",
    "run_id",
    "output_hash",
    "verdict",
    "v2_status",
)
# Not left to full_clean: it skips the choices of non-editable fields.
_RESTORE_CHOICES = (
    ("variant_slug", Variant.values),
    ("source", ProvenanceSource.values),
    ("verdict", Verdict.values),
)


def _restore_texts(data: dict[str, Any], values: dict[str, Any]) -> list[str]:
    problems = []
    for name in _RESTORE_TEXTS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            problems.append(f"{name}: must be a string")
        values[name] = value
    values["output_hash"] = values["output_hash"] or ""
    problems.extend(
        f"{name}: must be one of {', '.join(choices)}"
        for name, choices in _RESTORE_CHOICES
        if isinstance(values[name], str) and values[name] not in choices
    )
    return problems


def _restore_payloads(data: dict[str, Any], values: dict[str, Any]) -> list[str]:
    problems = []
    try:
        values["input_hash"] = _input_hash(data.get("input_hash"))
    except FieldInvalid as exc:
        problems.append(f"input_hash: {exc.message}")
        values["input_hash"] = None
    for name, default in (("input_json", {}), ("output_json", None)):
        value = data.get(name)
        if value is not None and not isinstance(value, dict):
            problems.append(f"{name}: must be an object")
        values[name] = value if value is not None else default
    return problems


def _restore_numbers(data: dict[str, Any], values: dict[str, Any]) -> list[str]:
    problems = []
    for column, name in EXPORT_MONEY_NAMES.items():
        if column in data and name in data:
            problems.append(f"{name}: given twice (also as {column})")
            continue
        key = name if name in data else column
        minimum = -MAX_COST_CENTS if column == "cost_delta" else 0
        problem = _whole_number_problem(data.get(key), minimum=minimum, unit="cents")
        if problem is not None:
            problems.append(f"{key}: {problem}")
        values[column] = data.get(key)
    problem = _whole_number_problem(data.get("runtime_ms"), minimum=0, unit="milliseconds")
    if problem is not None:
        problems.append(f"runtime_ms: {problem}")
    values["runtime_ms"] = data.get("runtime_ms")
    drift_score = data.get("drift_score")
    if drift_score is not None and not is_number(drift_score):
        problems.append("drift_score: must be a number")
    values["drift_score"] = drift_score
    return problems


def _restore_created_at(data: dict[str, Any], values: dict[str, Any]) -> list[str]:
    created_at = data.get("created_at")
    if created_at is None:
        return []
    try:
        values["created_at"] = parse_aware_datetime(created_at)
    except ValueError as exc:
        return [f"created_at: {exc}"]
    return []


def _whole_number_problem(value: Any, *, minimum: int, unit: str) -> str | None:
    """Why `value` is neither null nor a whole number in [minimum, MAX_COST_CENTS], or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a whole number of {unit}"
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return f"must be a whole number of {unit}"
    if not minimum <= value <= MAX_COST_CENTS:
        return f"must be between {minimum} and {MAX_COST_CENTS} {unit}"
    return None


def _is_hex16(value: str) -> bool:
    return len(value) == INPUT_HASH_LENGTH and set(value) <= _HEX_DIGITS


def _backfill_row(line: _BackfillLine, tenant: Tenant) -> Provenance:
    row = Provenance(
        tenant=tenant,
        run_id=line.run_id,
        variant_slug=Variant.V1,
        source=ProvenanceSource.BACKFILL,
        model_version=settings.COSTSIM_MODEL_VERSION,
        adapter_version=settings.COSTSIM_ADAPTER_VERSION,
        commit_sha=settings.GIT_COMMIT_SHA,
        input_json=line.input_json,
        input_hash=line.input_hash,
        v1_cost=line.cost,
        created_at=timezone.now(),
    )
    row.full_clean(exclude=_CLEAN_EXCLUDE, validate_unique=False, validate_constraints=False)
    return row


def _restore_row(line: _RestoreLine, tenant: Tenant) -> Provenance:
    row = Provenance(tenant=tenant, **line.values)
    row.full_clean(exclude=_CLEAN_EXCLUDE, validate_unique=False, validate_constraints=False)
    return row


class _Backfill:
    """State of one backfill run: tenants resolved so far and keys seen in the file."""

    def __init__(self, *, dry_run: bool):
        self.dry_run = dry_run
        self.result = BackfillResult()
        self.tenants: dict[str, Tenant | None] = {}
        # (tenant_id, input_hash) of every row kept, and (tenant_id, input_hash, created_at) of
        # every exported row restored.
        self.seen: set[tuple] = set()

    def run_batch(self, batch: list[tuple[int, str | bytes]]) -> None:
        candidates = self._candidates(self._parse(batch))
        if self.dry_run:
            self._keep_new(candidates)
        else:
            self._insert(candidates)

    def _parse(self, batch: list[tuple[int, str | bytes]]) -> list[_BackfillLine | _RestoreLine]:
        """The lines that parse; the others become errors."""
        parsed: list[_BackfillLine | _RestoreLine] = []
        for line_no, text in batch:
            outcome = _backfill_parse(line_no, text)
            if isinstance(outcome, str):
                self.result.errors.append((line_no, outcome))
            else:
                parsed.append(outcome)
        return parsed

    def _candidates(
        self, parsed: list[_BackfillLine | _RestoreLine]
    ) -> list[tuple[_BackfillLine | _RestoreLine, Provenance]]:
        """Each line of a known tenant with its validated row; the others become errors."""
        unresolved = {line.slug for line in parsed} - self.tenants.keys()
        if unresolved:
            found = tenants_by_slug(slugs=unresolved)
            self.tenants.update({slug: found.get(slug) for slug in unresolved})

        candidates: list[tuple[_BackfillLine | _RestoreLine, Provenance]] = []
        for line in parsed:
            tenant = self.tenants[line.slug]
            if tenant is None:
                self.result.errors.append((line.line_no, f"tenant: unknown tenant '{line.slug}'"))
                continue
            build = _restore_row if isinstance(line, _RestoreLine) else _backfill_row
            try:
                candidates.append((line, build(line, tenant)))
            except ValidationError as exc:
                reasons = "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.message_dict.items())
                self.result.errors.append((line.line_no, reasons))
        return candidates

    @transaction.atomic
    def _insert(self, candidates: list[tuple[_BackfillLine | _RestoreLine, Provenance]]) -> None:
        # Serialise batches of concurrent backfills: the duplicate check below and the
        # insert must see every row another import committed before this batch.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [int(LockId.PROVENANCE_BACKFILL)])
        rows = self._keep_new(candidates)
        if rows:
            Provenance.objects.bulk_create(rows)
            _count_written(rows)

    def _keep_new(
        self, candidates: list[tuple[_BackfillLine | _RestoreLine, Provenance]]
    ) -> list[Provenance]:
        """Count duplicates as skipped and return the rows to insert, in line order.

        A V1 baseline is a duplicate when its tenant has any row with its input_hash; a
        restored row when its tenant has a row with its input_hash and created_at, that is
        the same row (the same plan is compared many times, at different instants).
        """
        keyed: list[tuple[tuple, Provenance]] = []
        baseline_keys: set[tuple[int, str]] = set()
        restored_keys: set[tuple[int, str, datetime]] = set()
        for line, row in candidates:
            if isinstance(line, _RestoreLine):
                restored_key = (row.tenant_id, row.input_hash, row.created_at)
                restored_keys.add(restored_key)
                keyed.append((restored_key, row))
            else:
                baseline_key = (row.tenant_id, row.input_hash)
                baseline_keys.add(baseline_key)
                keyed.append((baseline_key, row))
        existing = provenance_existing_keys(keys=baseline_keys - self.seen)
        existing |= provenance_existing_rows(keys=restored_keys - self.seen)
        rows = []
        for key, row in keyed:
            if key in self.seen or key in existing:
                self.result.skipped += 1
                continue
            # A restored row also makes later baselines of its hash duplicates.
            self.seen.update({key, (row.tenant_id, row.input_hash)})
            rows.append(row)
        self.result.inserted += len(rows)
        return rows


def provenance_backfill(
    *,
    lines: Iterable[str | bytes],
    batch_size: int = 100,
    dry_run: bool = False,
    progress: Callable[[BackfillResult], None] | None = None,
) -> BackfillResult:
    """Import V1 baseline provenance, or restore exported rows, from JSONL lines.

    Each non-blank line (text, or UTF-8 bytes) is either a V1 baseline, `{tenant, cost,
    run_id?, input?, input_hash?}`, or a row as provenance_export writes it (it has
    `variant_slug`), which is written back with its own source, versions, payloads, costs
    and created_at. A baseline whose (tenant, input_hash) already has a row, and an exported
    row whose (tenant, input_hash, created_at) does, in the database or earlier in the
    input, is skipped; a bad line is reported with its 1-based number and the others continue.
    Per batch: one tenant query for new slugs, one duplicate query, one bulk INSERT, each
    batch in its own transaction, so an interrupted import keeps its finished batches and
    re-running it skips them. `progress` is called after every batch. With dry_run nothing
    is written and the counts are the same.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    backfill = _Backfill(dry_run=dry_run)
    batch: list[tuple[int, str | bytes]] = []
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        backfill.result.lines += 1
        batch.append((line_no, text))
        if len(batch) >= batch_size:
            backfill.run_batch(batch)
            batch = []
            if progress is not None:
                progress(backfill.result)
    if batch:
        backfill.run_batch(batch)
        if progress is not None:
            progress(backfill.result)
    backfill.result.errors.sort()
    return backfill.result


# Export and prune -------------------------------------------------------------------


def provenance_export(
    *,
    tenant: Tenant | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    chunk_size: int = 2000,
) -> Iterator[dict[str, Any]]:
    """Yield every column of each provenance row, ordered by id, as JSON-ready dicts.

    Rows stream from a server-side cursor, so memory does not grow with the table.
    created_at is ISO-8601 UTC with a Z; `tenant` is the slug, `tenant_id` the key; the
    money columns are named with their unit (EXPORT_MONEY_NAMES). provenance_backfill
    restores these dicts as they are.
    """
    rows = provenance_export_rows(tenant=tenant, start=start, end=end)
    for row in rows.iterator(chunk_size=chunk_size):
        slug = row.pop("tenant__slug")
        row["created_at"] = format_datetime(row["created_at"])
        head = {"id": row.pop("id"), "tenant_id": row.pop("tenant_id"), "tenant": slug}
        yield head | {EXPORT_MONEY_NAMES.get(name, name): value for name, value in row.items()}


def provenance_prune(*, days: int, dry_run: bool = False) -> int | None:
    """Delete provenance created more than `days` days ago; return the count.

    Runs under advisory lock 7003 and returns None, touching nothing, when another
    process holds it (the lock is re-entrant, so a job that already holds it may call
    this). Deletes in chunks of PRUNE_CHUNK_SIZE, each its own transaction; with dry_run
    it only counts.
    """
    if days < 0:
        raise ValueError("days must not be negative")
    cutoff = timezone.now() - timedelta(days=days)
    with leader_lock(LockId.PROVENANCE_PRUNE) as acquired:
        if not acquired:
            return None
        # Naming every variant lets the (variant_slug, created_at) index serve the range.
        expired = Provenance.objects.filter(variant_slug__in=Variant.values, created_at__lt=cutoff)
        if dry_run:
            return expired.count()
        deleted = 0
        while True:
            chunk = expired.order_by("id").values("id")[:PRUNE_CHUNK_SIZE]
            count, _ = Provenance.objects.filter(id__in=chunk).delete()
            deleted += count
            if count < PRUNE_CHUNK_SIZE:
                break
        logger.info("Pruned %d provenance rows created before %s", deleted, cutoff.isoformat())
        return deleted
