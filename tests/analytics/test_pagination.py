"""The one list envelope and its cursor pages, across every list endpoint."""

import base64
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from analytics.models import BudgetType, CostRecord
from analytics.services.reservations import budget_reserve
from notifications.models import Delivery
from tests.analytics.factories import (
    AnomalyFactory,
    CostSnapshotFactory,
    IncidentFactory,
    PlannedActivityFactory,
)
from tests.costsim.factories import ProvenanceFactory
from tests.costsim.safety_factories import BreakerIncidentFactory, CanaryReportFactory
from tests.factories import (
    BudgetFactory,
    ChannelFactory,
    CostRecordFactory,
    FeatureTagFactory,
    ModelPriceOverrideFactory,
    RuleFactory,
    RunRecordFactory,
    utc,
)
from tests.feedback.factories import PatternFeedbackFactory
from tests.predictions.factories import PredictionFactory

pytestmark = pytest.mark.django_db

COST_RECORDS = "/api/v1/cost-records/"
T0 = utc(2026, 3, 2, 10)


def _three_snapshots(tenant):
    for hours in range(3):
        CostSnapshotFactory(tenant=tenant, period_start=T0 - timedelta(hours=hours))


def _three_budgets(tenant):
    BudgetFactory(tenant=tenant)
    BudgetFactory(tenant=tenant, budget_type=BudgetType.FEATURE, entity_id="chat")
    BudgetFactory(tenant=tenant, budget_type=BudgetType.USER, entity_id="u-1")


def _three_subject_predictions(tenant):
    # Still valid: the list hides expired predictions.
    now = timezone.now()
    for hours in range(3):
        PredictionFactory(tenant=tenant, subject_id="w", created_at=now - timedelta(hours=hours))


# Every list endpoint, with what puts three rows in it (the datasets are a fixed five).
def _three_deliveries(tenant) -> None:
    channel = ChannelFactory(tenant=tenant)
    for n in range(3):
        Delivery.objects.create(
            tenant=tenant, channel=channel, event_key=f"e{n}", event_type="test", payload={}
        )


LISTS = {
    "/api/v1/cost-records/": lambda t: CostRecordFactory.create_batch(3, tenant=t),
    "/api/v1/runs/": lambda t: RunRecordFactory.create_batch(3, tenant=t),
    "/api/v1/feature-tags/": lambda t: FeatureTagFactory.create_batch(3, tenant=t),
    "/api/v1/model-prices/": lambda t: [
        ModelPriceOverrideFactory(tenant=t, model=f"model-{n}") for n in range(3)
    ],
    "/api/v1/budgets/": _three_budgets,
    "/api/v1/snapshots/": _three_snapshots,
    "/api/v1/budgets/reservations/": lambda t: [
        budget_reserve(tenant=t, amount_cents=10, ttl_seconds=600, request_id=f"req-{n}")
        for n in range(3)
    ],
    "/api/v1/anomalies/": lambda t: AnomalyFactory.create_batch(3, tenant=t),
    "/api/v1/incidents/": lambda t: IncidentFactory.create_batch(3, tenant=t),
    "/api/v1/planned-activities/": lambda t: PlannedActivityFactory.create_batch(3, tenant=t),
    "/api/v1/costsim/provenance/": lambda t: ProvenanceFactory.create_batch(3, tenant=t),
    "/api/v1/costsim/incidents/": lambda t: BreakerIncidentFactory.create_batch(3),
    "/api/v1/costsim/canary/reports/": lambda t: CanaryReportFactory.create_batch(3),
    "/api/v1/costsim/datasets/": lambda t: None,
    "/api/v1/feedback/": lambda t: PatternFeedbackFactory.create_batch(3, tenant=t),
    "/api/v1/predictions/": lambda t: PredictionFactory.create_batch(3, tenant=t),
    "/api/v1/predictions/subject/worker/w/": _three_subject_predictions,
    "/api/v1/notification-channels/": lambda t: ChannelFactory.create_batch(3, tenant=t),
    "/api/v1/notification-rules/": lambda t: RuleFactory.create_batch(
        3, channel=ChannelFactory(tenant=t)
    ),
    "/api/v1/notification-deliveries/": _three_deliveries,
}
EXTRA_KEYS = {
    "/api/v1/costsim/incidents/": {"total"},
    "/api/v1/costsim/canary/reports/": {"total"},
    "/api/v1/feedback/": {"total", "by_type", "by_severity"},
    "/api/v1/predictions/": {"total", "by_type", "by_subject_type"},
    "/api/v1/predictions/subject/worker/w/": {"total", "subject_type", "subject_id"},
}


def make_cursor(document) -> str:
    """A client-made cursor: base64url of any JSON document, as the API encodes its own."""
    text = json.dumps(document).encode()
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def _key(item: dict):
    return item.get("id", item.get("run_id"))


def _field_errors(response) -> list[str]:
    return [error["field"] for error in response.json()["field_errors"]]


def test_every_list_endpoint_is_in_the_table():
    """A list added later must join LISTS, so every test below covers it."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    paged = {
        path
        for path, item in schema["paths"].items()
        if any(p["name"] == "cursor" for p in item.get("get", {}).get("parameters", []))
    }
    listed = {
        path.replace("subject/worker/w/", "subject/{subject_type}/{subject_id}/") for path in LISTS
    }
    assert paged == listed


def test_the_schema_documents_one_envelope_and_no_offsets():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        operation = item.get("get")
        if operation is None:
            continue
        names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
        assert not names & {"limit", "offset"}, path
        content = operation["responses"].get("200", {}).get("content", {})
        body = content.get("application/json", {}).get("schema", {})
        assert body.get("type") != "array", f"{path} answers a bare array"
        if "$ref" in body:
            body = components[body["$ref"].rsplit("/", 1)[1]]
        if "results" in body.get("properties", {}):
            assert {"next", "previous", "results"} <= set(body["required"]), path
            assert {"cursor", "page_size"} <= names, path
            page_size = next(p for p in operation["parameters"] if p["name"] == "page_size")
            assert (page_size["schema"]["minimum"], page_size["schema"]["maximum"]) == (1, 200)


@pytest.mark.parametrize("url", list(LISTS))
def test_every_list_walks_forward_and_back_through_the_same_pages(url, tenant, staff_key_client):
    # given
    LISTS[url](tenant)
    # when
    pages = [staff_key_client.get(url, {"page_size": 2})]
    while pages[-1].json()["next"]:
        pages.append(staff_key_client.get(pages[-1].json()["next"]))
    back = [pages[-1]]
    while back[-1].json()["previous"]:
        back.append(staff_key_client.get(back[-1].json()["previous"]))
    # then
    assert all(page.status_code == 200 for page in pages + back)
    first = pages[0].json()
    assert set(first) == {"next", "previous", "results"} | EXTRA_KEYS.get(url, set())
    assert first["previous"] is None
    forward = [[_key(item) for item in page.json()["results"]] for page in pages]
    backward = [[_key(item) for item in page.json()["results"]] for page in reversed(back)]
    assert len(pages) >= 2 and all(len(ids) == 2 for ids in forward[:-1])
    assert backward == forward
    flat = [key for ids in forward for key in ids]
    assert len(flat) == len(set(flat))


@pytest.mark.parametrize("url", list(LISTS))
def test_a_later_page_costs_the_queries_of_the_first(url, tenant, staff_key_client):
    # given
    LISTS[url](tenant)
    first = staff_key_client.get(url, {"page_size": 1})  # also records the key's last use
    # when
    with CaptureQueriesContext(connection) as on_first:
        staff_key_client.get(url, {"page_size": 1})
    with CaptureQueriesContext(connection) as on_second:
        second = staff_key_client.get(first.json()["next"])
    # then
    assert second.status_code == 200
    assert len(on_second.captured_queries) == len(on_first.captured_queries)


BAD_PAGING = [
    ({"cursor": "garbage"}, "cursor"),
    ({"cursor": "a\x00b"}, "cursor"),
    ({"cursor": "cD0yMDI2"}, "cursor"),  # another paginator's "p=2026"
    ({"cursor": make_cursor({"r": 0, "p": ["a\x00b"] * 3})}, "cursor"),
    ({"page_size": "ten"}, "page_size"),
    ({"page_size": "0"}, "page_size"),
    ({"page_size": "201"}, "page_size"),
    ({"page_size": "1e3"}, "page_size"),
    ({"limit": "10"}, "limit"),
    ({"offset": "10"}, "offset"),
    ({"offset": str(2**63)}, "offset"),
]


@pytest.mark.parametrize("url", list(LISTS))
def test_bad_paging_input_is_a_400_naming_the_parameter(url, staff_key_client):
    for params, field in BAD_PAGING:
        # when
        response = staff_key_client.get(url, params)
        # then
        assert response.status_code == 400, (params, response.content)
        assert response.json()["error"] == "validation_error"
        assert _field_errors(response) == [field], params


@pytest.mark.parametrize(
    "position",
    [
        ["yesterday", 1],  # not a datetime
        ["2026-03-02T10:00:00", 1],  # naive
        ["2026-13-02T10:00:00Z", 1],  # no such month
        ["0001-01-01T00:00:00+01:00", 1],  # leaves datetime's range in UTC
        ["2026-03-02T10:00:00\x00Z", 1],  # NUL
        ["2026-03-02T10:00:00Z", "7"],  # a text where the id is an integer
        ["2026-03-02T10:00:00Z", 1.5],
        ["2026-03-02T10:00:00Z", True],
        ["2026-03-02T10:00:00Z", 2**63],  # beyond bigint
        ["2026-03-02T10:00:00Z", None],
        [20260302, 1],
        ["2026-03-02T10:00:00Z"],  # one value per ordering field
        ["2026-03-02T10:00:00Z", 1, 2],
        "2026-03-02T10:00:00Z",
    ],
)
def test_a_client_made_position_of_the_wrong_kind_is_a_400(position, api_client):
    # when
    response = api_client.get(COST_RECORDS, {"cursor": make_cursor({"r": 0, "p": position})})
    # then
    assert response.status_code == 400
    assert _field_errors(response) == ["cursor"]


@pytest.mark.parametrize(
    ("url", "position"),
    [
        ("/api/v1/incidents/", ["2026-02-30", 1]),  # a date field
        ("/api/v1/feature-tags/", ["chat\x00", 1]),  # a text field
        ("/api/v1/feature-tags/", ["\ud800", 1]),  # an unpaired surrogate
        ("/api/v1/feedback/", ["2026-03-02T10:00:00Z", "not-a-uuid"]),
        ("/api/v1/costsim/datasets/", [7]),  # the datasets are ordered by a text id
    ],
)
def test_positions_are_checked_against_each_lists_ordering(url, position, api_client):
    response = api_client.get(url, {"cursor": make_cursor({"r": 0, "p": position})})
    assert response.status_code == 400
    assert _field_errors(response) == ["cursor"]


@pytest.mark.parametrize(
    "document",
    [
        {"r": 2, "p": None},
        {"r": True, "p": None},
        {"r": 0},
        {"r": 0, "p": None, "x": 1},
        [0, None],
        "p=2026",
    ],
)
def test_a_malformed_cursor_document_is_a_400(document, api_client):
    response = api_client.get(COST_RECORDS, {"cursor": make_cursor(document)})
    assert response.status_code == 400
    assert _field_errors(response) == ["cursor"]


def test_an_oversized_or_deeply_nested_cursor_is_a_400(api_client):
    for encoded in ("A" * 5000, make_cursor({"r": 0, "p": [[[[[[[[[[1]]]]]]]]]]})):
        response = api_client.get(COST_RECORDS, {"cursor": encoded})
        assert response.status_code == 400
        assert _field_errors(response) == ["cursor"]


def test_every_bad_paging_parameter_is_named_at_once(api_client):
    response = api_client.get(
        COST_RECORDS, {"cursor": "x", "page_size": "-1", "limit": "5", "offset": "5"}
    )
    assert response.status_code == 400
    assert sorted(_field_errors(response)) == ["cursor", "limit", "offset", "page_size"]


def test_a_valid_client_made_position_reads_from_there(api_client, tenant):
    # given
    rows = [CostRecordFactory(tenant=tenant, created_at=T0 - timedelta(hours=n)) for n in range(3)]
    position = ["2026-03-02T09:30:00+00:00", 0]
    # when
    response = api_client.get(COST_RECORDS, {"cursor": make_cursor({"r": 0, "p": position})})
    # then: rows strictly after the position, newest first
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["results"]] == [rows[1].id, rows[2].id]


def test_rows_sharing_a_timestamp_are_paged_by_id_without_gaps(api_client, tenant):
    # given: one batch of seven records written at the same instant, and one older
    CostRecordFactory.create_batch(7, tenant=tenant, created_at=T0)
    CostRecordFactory(tenant=tenant, created_at=T0 - timedelta(seconds=1))
    # when
    seen, url = [], COST_RECORDS + "?page_size=3"
    while url:
        body = api_client.get(url).json()
        seen += [item["id"] for item in body["results"]]
        url = body["next"]
    # then
    expected = list(CostRecord.objects.order_by("-created_at", "-id").values_list("id", flat=True))
    assert seen == expected


def test_rows_added_between_pages_are_neither_repeated_nor_skipped(api_client, tenant):
    # given
    old = [CostRecordFactory(tenant=tenant, created_at=T0 - timedelta(hours=n)) for n in range(4)]
    first = api_client.get(COST_RECORDS, {"page_size": 2}).json()
    # when: a newer record arrives before the client asks for the next page
    CostRecordFactory(tenant=tenant, created_at=T0 + timedelta(hours=1))
    second = api_client.get(first["next"]).json()
    # then
    assert [item["id"] for item in second["results"]] == [old[2].id, old[3].id]


def test_a_page_whose_rows_were_deleted_links_back_to_the_rest(api_client, tenant):
    # given: the client holds the link to the second page, then its rows are deleted
    rows = [CostRecordFactory(tenant=tenant, created_at=T0 - timedelta(hours=n)) for n in range(4)]
    first = api_client.get(COST_RECORDS, {"page_size": 2}).json()
    CostRecord.objects.filter(pk__in=[rows[2].pk, rows[3].pk]).delete()
    # when
    empty = api_client.get(first["next"]).json()
    # then: nothing follows; previous is the last page of what is left
    assert (empty["results"], empty["next"]) == ([], None)
    last = api_client.get(empty["previous"]).json()
    assert [item["id"] for item in last["results"]] == [rows[0].id, rows[1].id]
    assert (last["previous"], last["next"]) == (None, None)


def test_a_previous_page_whose_rows_were_deleted_links_to_the_first_page(api_client, tenant):
    # given
    rows = [CostRecordFactory(tenant=tenant, created_at=T0 - timedelta(hours=n)) for n in range(4)]
    second = api_client.get(api_client.get(COST_RECORDS, {"page_size": 2}).json()["next"]).json()
    CostRecord.objects.filter(pk__in=[rows[0].pk, rows[1].pk]).delete()
    # when
    empty = api_client.get(second["previous"]).json()
    # then
    assert (empty["results"], empty["previous"]) == ([], None)
    first = api_client.get(empty["next"]).json()
    assert [item["id"] for item in first["results"]] == [rows[2].id, rows[3].id]


def test_the_links_keep_the_filters_and_the_page_size(api_client, tenant):
    # given
    for n in range(3):
        CostRecordFactory(tenant=tenant, model="a", created_at=T0 - timedelta(hours=n))
    CostRecordFactory(tenant=tenant, model="b", created_at=T0 - timedelta(minutes=30))
    # when
    first = api_client.get(COST_RECORDS, {"model": "a", "page_size": 2}).json()
    second = api_client.get(first["next"]).json()
    # then
    assert "model=a" in first["next"] and "page_size=2" in first["next"]
    assert len(first["results"]) == 2 and len(second["results"]) == 1
    assert {item["model"] for item in first["results"] + second["results"]} == {"a"}
