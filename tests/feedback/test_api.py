"""Feedback endpoints through the real URLs."""

import uuid
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from feedback.models import PatternFeedback
from tests.factories import RunRecordFactory, utc
from tests.feedback.factories import PatternFeedbackFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/feedback/"
NOW = utc(2026, 3, 2, 12)


def _detail_url(feedback) -> str:
    return f"{URL}{feedback.pk}/"


@pytest.fixture
def mixed_feedback(tenant):
    """Five rows of the tenant across types, severities and acknowledgement."""
    rows = [
        PatternFeedbackFactory(tenant=tenant, detected_at=NOW - timedelta(minutes=1)),
        PatternFeedbackFactory(
            tenant=tenant, detected_at=NOW - timedelta(minutes=2), severity="critical"
        ),
        PatternFeedbackFactory(
            tenant=tenant,
            detected_at=NOW - timedelta(minutes=3),
            pattern_type="cost_spike",
            acknowledged=True,
            acknowledged_at=NOW,
            acknowledged_by="user:ops",
        ),
        PatternFeedbackFactory(
            tenant=tenant, detected_at=NOW - timedelta(minutes=4), pattern_type="cost_spike"
        ),
        PatternFeedbackFactory(
            tenant=tenant, detected_at=NOW - timedelta(minutes=5), severity="info"
        ),
    ]
    return rows


def test_list_counts_the_whole_filtered_set_not_the_page(api_client, mixed_feedback, other_tenant):
    # given: another tenant's rows must not be counted
    PatternFeedbackFactory.create_batch(3, tenant=other_tenant)
    # when
    first = api_client.get(URL, {"page_size": 2})
    second = api_client.get(first.json()["next"])
    # then
    assert first.status_code == second.status_code == 200
    body = second.json()
    assert set(body) == {"next", "previous", "results", "total", "by_type", "by_severity"}
    assert body["total"] == 5
    assert body["by_type"] == {"failure_pattern": 3, "cost_spike": 2}
    assert body["by_severity"] == {"info": 1, "warning": 3, "critical": 1}
    assert [item["id"] for item in body["results"]] == [str(row.pk) for row in mixed_feedback[2:4]]
    assert body["previous"] is not None and body["next"] is not None


def test_list_pages_walk_the_whole_list_both_ways(api_client, mixed_feedback):
    # given: two rows detected at the same instant, ordered by id between themselves
    PatternFeedbackFactory(tenant=mixed_feedback[0].tenant, detected_at=NOW - timedelta(minutes=3))
    # when
    pages = [api_client.get(URL, {"page_size": 2}).json()]
    while pages[-1]["next"]:
        pages.append(api_client.get(pages[-1]["next"]).json())
    back = api_client.get(pages[-1]["previous"]).json()
    # then
    forward = [item["id"] for page in pages for item in page["results"]]
    expected = PatternFeedback.objects.order_by("-detected_at", "id").values_list("id", flat=True)
    assert forward == [str(pk) for pk in expected]
    assert [item["id"] for item in back["results"]] == forward[2:4]


def test_list_filters_apply_to_items_and_counts(api_client, mixed_feedback):
    response = api_client.get(URL, {"pattern_type": "cost_spike", "acknowledged": "false"})
    body = response.json()
    assert body["total"] == 1
    assert body["by_type"] == {"failure_pattern": 0, "cost_spike": 1}
    assert [item["id"] for item in body["results"]] == [str(mixed_feedback[3].pk)]
    response = api_client.get(URL, {"severity": "critical"})
    assert [item["id"] for item in response.json()["results"]] == [str(mixed_feedback[1].pk)]
    response = api_client.get(URL, {"acknowledged": "true"})
    assert [item["id"] for item in response.json()["results"]] == [str(mixed_feedback[2].pk)]


def test_list_item_shape(api_client, tenant):
    # given
    feedback = PatternFeedbackFactory(
        tenant=tenant, description="d" * 300, provenance=["r1", "r2"], detected_at=NOW
    )
    # when
    [item] = api_client.get(URL).json()["results"]
    # then
    assert item == {
        "id": str(feedback.pk),
        "pattern_type": "failure_pattern",
        "severity": "warning",
        "description": "d" * 200,
        "signature": feedback.signature,
        "occurrence_count": 2,
        "detected_at": "2026-03-02T12:00:00Z",
        "acknowledged": False,
        "provenance_count": 2,
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 201}, "page_size"),
        ({"page_size": "x"}, "page_size"),
        ({"limit": 10}, "limit"),
        ({"offset": 10}, "offset"),
        ({"pattern_type": "bogus"}, "pattern_type"),
        ({"severity": "WARNING"}, "severity"),
        ({"acknowledged": "maybe"}, "acknowledged"),
    ],
)
def test_invalid_list_filters_are_400_naming_the_field(api_client, params, field):
    response = api_client.get(URL, params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert [error["field"] for error in body["field_errors"]] == [field]


def test_list_page_size_bounds_are_inclusive(api_client, mixed_feedback):
    assert len(api_client.get(URL, {"page_size": 1}).json()["results"]) == 1
    assert api_client.get(URL, {"page_size": 200}).status_code == 200


def test_list_query_count_is_fixed(api_client, mixed_feedback, django_assert_num_queries):
    api_client.get(URL)  # the first request of a key also records last_used_at
    # auth lookup, counts over the filtered set, one page of items
    with django_assert_num_queries(3):
        response = api_client.get(URL, {"page_size": 200})
    assert len(response.json()["results"]) == 5


def test_list_page_does_not_load_provenance(api_client, tenant):
    PatternFeedbackFactory(tenant=tenant, provenance=[f"run-{n}" for n in range(500)])
    api_client.get(URL)
    with CaptureQueriesContext(connection) as queries:
        assert api_client.get(URL).json()["results"][0]["provenance_count"] == 500
    page_query = queries.captured_queries[-1]["sql"]
    assert '"provenance",' not in page_query and "jsonb_array_length" in page_query


def test_detail_has_every_field(api_client, tenant):
    # given
    feedback = PatternFeedbackFactory(
        tenant=tenant,
        detected_at=NOW,
        acknowledged=True,
        acknowledged_at=NOW + timedelta(minutes=1),
        acknowledged_by="user:ops",
    )
    # when
    response = api_client.get(_detail_url(feedback))
    # then
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": str(feedback.pk),
        "pattern_type": "failure_pattern",
        "severity": "warning",
        "description": feedback.description,
        "signature": feedback.signature,
        "provenance": ["run-a", "run-b", "run-c"],
        "occurrence_count": 3,
        "time_window_minutes": 1440,
        "threshold_used": "threshold=3",
        "metadata": feedback.metadata,
        "detected_at": "2026-03-02T12:00:00Z",
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
        "acknowledged": True,
        "acknowledged_at": "2026-03-02T12:01:00Z",
        "acknowledged_by": "user:ops",
    }
    assert "tenant" not in body


def test_stats_cover_all_of_the_tenants_feedback(api_client, mixed_feedback, other_tenant):
    PatternFeedbackFactory(tenant=other_tenant)
    response = api_client.get(f"{URL}stats/")
    assert response.status_code == 200
    assert response.json() == {
        "total": 5,
        "acknowledged": 1,
        "unacknowledged": 4,
        "by_type": {"failure_pattern": 3, "cost_spike": 2},
        "by_severity": {"info": 1, "warning": 3, "critical": 1},
    }


def test_acknowledge_records_the_key_as_actor(api_client, api_key, tenant):
    # given
    feedback = PatternFeedbackFactory(tenant=tenant)
    # when
    with time_machine.travel(NOW, tick=False):
        response = api_client.post(f"{_detail_url(feedback)}acknowledge/", {}, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["acknowledged"] is True
    assert body["acknowledged_at"] == "2026-03-02T12:00:00Z"
    assert body["acknowledged_by"] == f"api-key:{api_key[0].prefix}"


def test_acknowledging_again_is_200_and_changes_nothing(api_client, tenant):
    feedback = PatternFeedbackFactory(
        tenant=tenant, acknowledged=True, acknowledged_at=NOW, acknowledged_by="user:ops"
    )
    response = api_client.post(f"{_detail_url(feedback)}acknowledge/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["acknowledged_by"] == "user:ops"
    assert response.json()["acknowledged_at"] == "2026-03-02T12:00:00Z"


def test_acknowledge_rejects_unknown_body_fields_and_writes_nothing(api_client, tenant):
    feedback = PatternFeedbackFactory(tenant=tenant)
    response = api_client.post(
        f"{_detail_url(feedback)}acknowledge/", {"actor": "me"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field_errors"] == [{"field": "actor", "reason": "unknown field"}]
    feedback.refresh_from_db()
    assert feedback.acknowledged is False


def test_acknowledge_needs_json(api_client, tenant):
    feedback = PatternFeedbackFactory(tenant=tenant)
    response = api_client.post(
        f"{_detail_url(feedback)}acknowledge/", "x=1", content_type="text/plain"
    )
    assert response.status_code == 415


@time_machine.travel(NOW, tick=False)
def test_detect_runs_detection_for_the_callers_tenant(api_client, tenant, other_tenant):
    # given
    for index in range(3):
        RunRecordFactory(
            tenant=tenant, status="failed", error=f"HTTP 503 from upstream (attempt {index})"
        )
        RunRecordFactory(
            tenant=other_tenant, status="failed", error="HTTP 503 from upstream (attempt 1)"
        )
    # when
    response = api_client.post(f"{URL}detect/", {}, format="json")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "failure_patterns": 1,
        "cost_spikes": 0,
        "feedback_created": 1,
        "feedback_updated": 0,
    }
    assert PatternFeedback.objects.get().tenant == tenant
    assert PatternFeedback.objects.get().signature == "f7da4002d70dd952"


def test_detect_rejects_unknown_body_fields(api_client, tenant):
    response = api_client.post(f"{URL}detect/", {"force": True}, format="json")
    assert response.status_code == 400


@pytest.mark.parametrize("suffix", ["", "acknowledge/"])
def test_another_tenants_feedback_is_404(api_client, other_tenant, suffix):
    # given
    theirs = PatternFeedbackFactory(tenant=other_tenant)
    # when
    method = api_client.post if suffix else api_client.get
    response = method(f"{_detail_url(theirs)}{suffix}", {}, format="json")
    # then
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    theirs.refresh_from_db()
    assert theirs.acknowledged is False


@pytest.mark.parametrize("feedback_id", ["not-a-uuid", str(uuid.uuid4())])
def test_malformed_or_unknown_id_is_404(api_client, feedback_id):
    assert api_client.get(f"{URL}{feedback_id}/").status_code == 404
    assert api_client.post(f"{URL}{feedback_id}/acknowledge/", {}, format="json").status_code == 404


def test_other_tenant_sees_nothing_of_ours(other_client, mixed_feedback):
    body = other_client.get(URL).json()
    assert body["total"] == 0 and body["results"] == []
    assert other_client.get(f"{URL}stats/").json()["total"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", ""),
        ("get", "stats/"),
        ("post", "detect/"),
    ],
)
def test_endpoints_need_a_tenant_key(staff_session_client, client, method, path):
    assert getattr(client, method)(f"{URL}{path}").status_code == 401
    response = getattr(staff_session_client, method)(f"{URL}{path}")
    assert response.status_code == 403
