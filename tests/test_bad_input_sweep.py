"""Acceptance sweep: no bad input makes any API endpoint answer 5xx.

Every operation of the OpenAPI schema is enumerated at collection time, so an endpoint added
later is swept without touching this file. Each operation gets every class of bad input where
it applies: in each query parameter, each body field (nested ones too), each path parameter,
and in the body as a whole. The sweep asserts that no response is 5xx, that every 4xx is the
standard JSON error body, and that a 400 for a date or datetime field names that field.
"""

import contextlib
import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from django.db import transaction
from django.urls import Resolver404, get_resolver, resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from analytics.models import ApiKey
from costsim.services.datasets import dataset_views
from tests.analytics.factories import (
    AnomalyFactory,
    CostSnapshotFactory,
    IncidentFactory,
    PlannedActivityFactory,
)
from tests.factories import (
    ApiKeyFactory,
    BudgetFactory,
    CostRecordFactory,
    FeatureTagFactory,
    RunRecordFactory,
    TenantFactory,
)
from tests.feedback.factories import PatternFeedbackFactory
from tests.predictions.factories import PredictionFactory

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [
    (method.upper(), path, operation)
    for path, item in SCHEMA["paths"].items()
    for method, operation in item.items()
]

# --- the classes of bad input --------------------------------------------------------------
# Values are JSON texts for bodies (so NaN and 1e400 can be written) and strings for queries.

FAR_DATETIMES = (
    "0001-01-01T00:00:00+01:00",  # astimezone(UTC) would leave datetime's range
    "9999-12-31T23:59:59-01:00",
    "0001-01-01",
    "9999-12-31",
    "1999-12-31T23:59:59Z",  # representable, but outside the supported range
    "2100-01-01T00:00:00Z",
)
FAR_DATES = ("0001-01-01", "9999-12-31", "1999-12-31", "2100-01-01")
NUL_TEXT = "a\x00b"
QUERY_VALUES = ("99999999999999999999", "-1", "1e400", "NaN", "0001-01-01T00:00:00+01:00")
NUMBER_BODY_VALUES = ("1e400", "-1e400", "NaN", "Infinity", "99999999999999999999", "-1")
# Text PostgreSQL cannot store (a NUL, a lone surrogate) must be refused by name.
UNSTORABLE_TEXT = (json.dumps(NUL_TEXT), '"\\ud800"')
# Free-form objects (simulation params): every bad number and text below one key.
OBJECT_BODY_VALUES = tuple(
    f'{{"x": {value}}}' for value in ("1e400", "-1e400", "NaN", json.dumps(NUL_TEXT), '"\\ud800"')
)
# Already percent-encoded: a NUL, a number past bigint, and bytes that are not UTF-8.
PATH_VALUES = ("a%00b", "99999999999999999999", "-1", "%ED%A0%80", "%FF")
CURSOR_VALUES = ("garbage", "%%%", "cD0yMDI2")
DEEP_BODIES = (
    "[" * 100_000,  # the C scanner's recursion limit
    "{" + '"a":{' * 5_000,  # unterminated, deep enough to matter
    json.dumps({"plan": [{"skill": "a", "params": {}}]}).replace("{}", "[" * 500 + "]" * 500),
    "[" * 500 + "]" * 500,  # well-formed, under the recursion limit, over the depth limit
)
# Whole bodies that are not what any endpoint takes: bytes that are not UTF-8, a lone
# surrogate, bare NaN and infinity, null, nothing.
ODD_BODIES = (b"\xff\xfe{", b'"\\ud800"', b"NaN", b"1e400", b"null", b"")
STATUS_OK = range(200, 500)


@dataclass(frozen=True)
class Case:
    kind: str
    where: str  # "query", "body", "path"
    field: str | None  # the name a 400 must report, when it must report one
    url: str
    body: str | bytes | None
    strict: bool  # True: the answer must be a 400 (naming `field`, if there is one)


def _field_errors(response) -> list[str]:
    return [item["field"] for item in response.json().get("field_errors", [])]


def _names(errors: list[str], field: str) -> bool:
    return any(
        name == field or name.startswith((f"{field}.", f"{field}[")) or field.startswith(name + ".")
        for name in errors
    )


def _is_date_like(name: str, schema: dict) -> str | None:
    fmt = schema.get("format")
    if fmt in ("date", "date-time"):
        return fmt
    if schema.get("type") == "string" and name in ("from", "to", "as_of"):
        return "date-time"
    return None


def _resolve_ref(schema: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        return SCHEMA["components"]["schemas"][ref.rsplit("/", 1)[1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve_ref(schema["allOf"][0])
    return schema


def _body_leaves(schema: dict, path: str = ""):
    """(field path, builder(value_json) -> body_json, date format, leaf type) for each field."""
    schema = _resolve_ref(schema)
    kind = schema.get("type")
    if "oneOf" in schema or "anyOf" in schema:
        kind = None
    if kind == "object" and schema.get("properties"):
        for name, child in schema["properties"].items():
            if _resolve_ref(child).get("readOnly"):
                continue
            child_path = f"{path}.{name}" if path else name
            for leaf_path, build, fmt, leaf_kind in _body_leaves(child, child_path):
                yield (
                    leaf_path,
                    (lambda value, build=build, name=name: f'{{"{name}": {build(value)}}}'),
                    fmt,
                    leaf_kind,
                )
        return
    if kind == "array":
        for leaf_path, build, fmt, leaf_kind in _body_leaves(schema.get("items", {}), f"{path}[0]"):
            yield leaf_path, (lambda value, build=build: f"[{build(value)}]"), fmt, leaf_kind
        return
    name = path.rsplit(".", 1)[-1]
    yield path, (lambda value: value), _is_date_like(name, schema), kind or "any"


def _body_values(fmt: str | None, kind: str) -> tuple[tuple[str, bool], ...]:
    """(JSON value, must-be-named) pairs for one leaf."""
    if fmt == "date-time":
        return tuple((json.dumps(value), True) for value in FAR_DATETIMES)
    if fmt == "date":
        return tuple((json.dumps(value), True) for value in FAR_DATES)
    if kind in ("number", "integer"):
        return tuple((value, False) for value in NUMBER_BODY_VALUES)
    if kind == "object":
        return tuple((value, False) for value in OBJECT_BODY_VALUES + NUMBER_BODY_VALUES[:1])
    return tuple((value, True) for value in UNSTORABLE_TEXT) + (
        (json.dumps(FAR_DATETIMES[0]), False),
        (NUMBER_BODY_VALUES[0], False),
    )


def _query_values(name: str, schema: dict) -> tuple[tuple[str, bool], ...]:
    """(value, must-be-named) pairs for one query parameter; a NUL is refused by name in all."""
    fmt = _is_date_like(name, schema)
    if fmt == "date-time":
        values = tuple((value, True) for value in FAR_DATETIMES)
    elif fmt == "date":
        values = tuple((value, True) for value in FAR_DATES)
    elif name == "cursor":
        values = tuple((value, False) for value in CURSOR_VALUES)
    else:
        values = tuple((value, False) for value in QUERY_VALUES)
    return ((NUL_TEXT, True), *values)


def _url(path: str, path_values: dict[str, str], query: dict[str, str] | None = None) -> str:
    url = path
    for name, value in path_values.items():
        url = url.replace(f"{{{name}}}", str(value))
    if query:
        url += "?" + urlencode(query)
    return url


def build_cases(method: str, path: str, operation: dict, path_values: dict) -> list[Case]:
    cases: list[Case] = []
    resolvable = all(value is not None for value in path_values.values())
    valid_path = {
        name: quote(str(value), safe="") if value is not None else "1"
        for name, value in path_values.items()
    }
    parameters = operation.get("parameters", [])
    query_params = [p for p in parameters if p["in"] == "query"]

    for param in query_params:
        name, schema = param["name"], param.get("schema", {})
        for value, must_name in _query_values(name, schema):
            cases.append(
                Case(
                    "query",
                    "query",
                    name,
                    _url(path, valid_path, {name: value}),
                    None,
                    must_name and resolvable,
                )
            )
    # Date-only bounds are UTC midnights wherever a window is accepted.
    names = {p["name"] for p in query_params}
    if {"from", "to"} <= names:
        both = {"from": "2026-11-01", "to": "2026-11-02"}
        cases.append(Case("date-only", "query", None, _url(path, valid_path, both), None, False))

    for param in (p for p in parameters if p["in"] == "path"):
        for value in PATH_VALUES:
            values = {**valid_path, param["name"]: value}
            cases.append(Case("path", "path", param["name"], _url(path, values), None, False))

    content = operation.get("requestBody", {}).get("content", {})
    if method in ("POST", "PUT", "PATCH"):
        url = _url(path, valid_path)
        for body in DEEP_BODIES:
            cases.append(Case("deep-json", "body", None, url, body, resolvable))
        for body in ODD_BODIES:
            cases.append(Case("odd-body", "body", None, url, body, False))
        schema = content.get("application/json", {}).get("schema")
        if schema:
            for field, build, fmt, kind in _body_leaves(schema):
                for value, must_name in _body_values(fmt, kind):
                    strict = must_name and resolvable
                    cases.append(Case("body", "body", field, url, build(value), strict))
    return cases


@pytest.fixture
def sweep_client(db):
    tenant = TenantFactory(slug="sweep")
    raw = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=tenant, raw_key=raw, is_staff=True)
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw}")
    prediction = PredictionFactory(tenant=tenant)
    client.path_values = {
        "anomalies": AnomalyFactory(tenant=tenant).pk,
        "budgets": BudgetFactory(tenant=tenant).pk,
        "cost-records": CostRecordFactory(tenant=tenant).pk,
        "feature-tags": FeatureTagFactory(tenant=tenant).pk,
        "incidents": IncidentFactory(tenant=tenant).pk,
        "planned-activities": PlannedActivityFactory(tenant=tenant).pk,
        "snapshots": CostSnapshotFactory(tenant=tenant).pk,
        "runs": RunRecordFactory(tenant=tenant).run_id,
        "feedback": PatternFeedbackFactory(tenant=tenant).pk,
        "predictions": prediction.pk,
        "datasets": dataset_views()[0]["id"],
        "subject_type": prediction.subject_type,
        "subject_id": prediction.subject_id,
    }
    return client


def _path_values(path: str, known: dict) -> dict:
    """An existing object for each path parameter, or None when the sweep knows none."""
    segments = path.removeprefix("/api/v1/").split("/")
    values = {}
    for index, segment in enumerate(segments):
        if segment.startswith("{"):
            name = segment.strip("{}")
            resource = segments[index - 1] if index else ""
            values[name] = known.get(name, known.get(resource))
    return values


def _check(case: Case, response) -> str | None:
    where = f"{case.kind} {case.field or ''} {case.url[:120]!r} body={(case.body or '')[:60]!r}"
    if response.status_code >= 500:
        return f"{response.status_code} for {where}"
    if response.status_code not in STATUS_OK:
        return f"unexpected {response.status_code} for {where}"
    if case.kind == "date-only" and response.status_code != 200:
        return f"date-only window refused ({response.content[:200]!r}) for {where}"
    if case.kind == "path" and "%00" in case.url and response.status_code not in (400, 404):
        return f"NUL path answered {response.status_code} for {where}"
    if response.status_code >= 400:
        if not response["Content-Type"].startswith("application/json"):
            return f"non-JSON {response.status_code} for {where}"
        body = response.json()
        if set(body) != {"error", "message", "field_errors"}:
            return f"non-standard error body {body!r} for {where}"
    if case.strict:
        if response.status_code != 400:
            return f"expected 400, got {response.status_code} for {where}"
        if case.field and not (
            response.json()["error"] == "validation_error"
            and _names(_field_errors(response), case.field)
        ):
            return f"400 does not name {case.field}: {response.json()} for {where}"
    return None


@pytest.mark.parametrize(
    ("method", "path", "operation"),
    OPERATIONS,
    ids=[f"{method} {path}" for method, path, _ in OPERATIONS],
)
def test_bad_input_never_answers_5xx(sweep_client, method, path, operation):
    # given
    cases = build_cases(method, path, operation, _path_values(path, sweep_client.path_values))

    # when
    failures = []
    for case in cases:
        # Each case from the same state, and a database error in one cannot poison the next.
        savepoint = transaction.savepoint()
        response = sweep_client.generic(
            method, case.url, data=case.body or "", content_type="application/json"
        )
        transaction.savepoint_rollback(savepoint)
        failure = _check(case, response)
        if failure:
            failures.append(failure)

    # then
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def _routes(patterns, prefix=""):
    for pattern in patterns:
        if hasattr(pattern, "url_patterns"):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.callback


def _view_class(callback):
    return getattr(callback, "cls", callback)


# /api/ routes the schema does not describe (health, readiness, the schema and its docs), and
# URLs no route matches; they get the query classes and must still answer JSON errors.
OUTSIDE_SCHEMA = [
    "/" + route
    for route, _ in _routes(get_resolver().url_patterns)
    if route.startswith("api/") and not route.startswith("api/v1/")
] + ["/api/v1/", "/api/v1/no-such-thing/", "/api/v1/runs/a/b/c/", "/api/nope"]


def test_sweep_covers_every_api_view():
    """Every view routed under /api/v1/ is in the schema, so the sweep reaches it."""
    swept = set()
    for _, path, _ in OPERATIONS:
        concrete = path.replace("{subject_type}", "worker")
        concrete = concrete.replace("{", "").replace("}", "")
        with contextlib.suppress(Resolver404):
            swept.add(_view_class(resolve(concrete).func))

    routed = {
        _view_class(callback)
        for route, callback in _routes(get_resolver().url_patterns)
        if route.startswith("api/v1/")
    }
    assert routed - swept == set()


@pytest.mark.parametrize("url", OUTSIDE_SCHEMA)
def test_routes_outside_the_schema_never_answer_5xx(sweep_client, url):
    failures = []
    for value in QUERY_VALUES:
        case = Case("query", "query", "x", f"{url}?{urlencode({'x': value})}", None, False)
        # One GET besides NUL: a GET of /api/schema/ builds the whole schema (slow).
        methods = ("GET", "POST") if value in QUERY_VALUES[:2] else ("POST",)
        for method in methods:
            response = sweep_client.generic(method, case.url, "[" * 1000, "application/json")
            if url == "/api/ready/" and response.status_code == 503:
                continue  # the probe's own body: which dependency is down
            failure = _check(case, response)
            if failure:
                failures.append(f"{method}: {failure}")

    assert not failures, "\n".join(failures)


def test_sweep_sends_every_class():
    """A guard on the sweep itself: it is not silently empty for any class."""
    known = dict.fromkeys(("id", "dataset_id", "subject_type", "subject_id"), 1)
    cases = [
        case
        for method, path, operation in OPERATIONS
        for case in build_cases(method, path, operation, _path_values(path, known))
    ]
    kinds = {case.kind for case in cases}
    assert kinds == {"query", "date-only", "path", "deep-json", "odd-body", "body"}
    assert any(case.strict and case.where == "body" for case in cases)
    assert any(case.strict and case.where == "query" for case in cases)
