"""The anomaly endpoints through the API client."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine

from analytics.models import Anomaly, AnomalyStatus, AnomalyType
from tests.analytics.factories import AnomalyFactory, BreachHistoryFactory
from tests.factories import CostRecordFactory, utc

LIST_URL = "/api/v1/anomalies/"
DETECT_URL = "/api/v1/anomalies/detect/"
NOW = utc(2026, 3, 16, 12)

VIEW_KEYS = {
    "id",
    "anomaly_type",
    "severity",
    "status",
    "entity_type",
    "entity_id",
    "anomaly_date",
    "budget_period",
    "current_value_cents",
    "expected_value_cents",
    "deviation_pct",
    "threshold_pct",
    "message",
    "derived_cause",
    "breach_count",
    "snapshot_id",
    "budget_id",
    "metadata",
    "contributors",
    "detected_at",
    "last_detected_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "resolution_notes",
    "feedback_label",
    "feedback_at",
    "feedback_by",
}


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def url(anomaly, verb: str = "") -> str:
    return f"{LIST_URL}{anomaly.pk}/" + (f"{verb}/" if verb else "")


def test_detail_has_the_anomaly_view_shape(tenant, api_client):
    # given an anomaly with contributors
    anomaly = AnomalyFactory(
        tenant=tenant,
        anomaly_date=date(2026, 3, 16),
        detected_at=utc(2026, 3, 16, 12, 0, 0),
        contributors=[{"dimension": "model", "key": "m", "cents": 12.5, "share": 1.0}],
        metadata={"lookback_days": 14},
    )

    response = api_client.get(url(anomaly))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == VIEW_KEYS
    assert body["id"] == anomaly.pk
    assert body["anomaly_date"] == "2026-03-16"
    assert body["detected_at"] == "2026-03-16T12:00:00Z"
    assert body["acknowledged_at"] is None
    assert body["snapshot_id"] is None and body["budget_id"] is None
    assert body["contributors"] == [{"dimension": "model", "key": "m", "cents": 12.5, "share": 1.0}]
    assert body["current_value_cents"] == 150.0
    assert body["deviation_pct"] == 50.0


def test_list_is_newest_first_without_contributors(tenant, api_client):
    older = AnomalyFactory(tenant=tenant, detected_at=utc(2026, 3, 1))
    newer = AnomalyFactory(tenant=tenant, detected_at=utc(2026, 3, 2))

    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]
    assert set(body["results"][0]) == VIEW_KEYS - {"contributors"}


def test_list_filters(tenant, api_client):
    AnomalyFactory(tenant=tenant, detected_at=utc(2026, 3, 1))
    wanted = AnomalyFactory(
        tenant=tenant,
        status=AnomalyStatus.ACKNOWLEDGED,
        severity="MEDIUM",
        anomaly_type=AnomalyType.SUSTAINED_DRIFT,
        detected_at=utc(2026, 3, 5),
    )
    AnomalyFactory(tenant=tenant, entity_type="user", entity_id="u1", detected_at=utc(2026, 3, 9))

    def ids(**params):
        response = api_client.get(LIST_URL, params)
        assert response.status_code == 200, response.json()
        return [item["id"] for item in response.json()["results"]]

    assert ids(status="acknowledged") == [wanted.pk]
    assert ids(severity="MEDIUM") == [wanted.pk]
    assert ids(anomaly_type="SUSTAINED_DRIFT") == [wanted.pk]
    assert len(ids(entity_type="tenant")) == 2
    assert ids(**{"from": "2026-03-02T00:00:00Z", "to": "2026-03-06T00:00:00+00:00"}) == [wanted.pk]
    assert ids(**{"to": "2026-03-05T00:00:00Z"}) != []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "closed"}, "status"),
        ({"severity": "low"}, "severity"),
        ({"anomaly_type": "SPIKE"}, "anomaly_type"),
        ({"entity_type": "team"}, "entity_type"),
        ({"from": "2026-03-01T00:00:00"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        ({"page_size": "500"}, "page_size"),
    ],
)
def test_list_rejects_bad_filters(api_client, params, field):
    response = api_client.get(LIST_URL, params)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert [error["field"] for error in body["field_errors"]] == [field]


def test_naive_datetime_filter_says_timezone_is_required(api_client):
    response = api_client.get(LIST_URL, {"from": "2026-03-01T00:00:00"})

    assert response.json()["field_errors"] == [{"field": "from", "reason": "timezone is required"}]


def test_list_query_count_does_not_grow_with_rows(tenant, api_client, django_assert_num_queries):
    # given a warm key (its last_used_at is fresh, so auth is one query)
    api_client.get(LIST_URL)
    AnomalyFactory.create_batch(5, tenant=tenant)

    # then: authenticate, read one page
    with django_assert_num_queries(2):
        response = api_client.get(LIST_URL)
    assert len(response.json()["results"]) == 5

    AnomalyFactory.create_batch(20, tenant=tenant)
    with django_assert_num_queries(2):
        api_client.get(LIST_URL, {"page_size": "10"})


def test_list_pages_with_a_cursor(tenant, api_client):
    AnomalyFactory.create_batch(3, tenant=tenant)

    first = api_client.get(LIST_URL, {"page_size": "2"}).json()
    second = api_client.get(first["next"]).json()

    assert len(first["results"]) == 2
    assert len(second["results"]) == 1
    assert second["next"] is None


def test_other_tenants_anomalies_are_invisible(tenant, other_tenant, api_client, other_client):
    anomaly = AnomalyFactory(tenant=tenant)

    assert other_client.get(LIST_URL).json()["results"] == []
    for response in (
        other_client.get(url(anomaly)),
        other_client.post(url(anomaly, "acknowledge"), {}, format="json"),
        other_client.post(url(anomaly, "resolve"), {"resolution": "resolved"}, format="json"),
        other_client.post(url(anomaly, "feedback"), {"label": "YES"}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    anomaly.refresh_from_db()
    assert anomaly.status == AnomalyStatus.OPEN
    assert anomaly.feedback_label is None


def test_malformed_id_is_404(api_client):
    assert api_client.get(f"{LIST_URL}abc/").status_code == 404
    assert api_client.get(f"{LIST_URL}99999999999999999999/").status_code == 404


def test_acknowledge_then_again_is_idempotent(tenant, api_key, api_client, frozen):
    anomaly = AnomalyFactory(tenant=tenant)

    first = api_client.post(url(anomaly, "acknowledge"), {}, format="json")
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        second = api_client.post(url(anomaly, "acknowledge"), {}, format="json")

    assert first.status_code == second.status_code == 200
    body = second.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledged_at"] == "2026-03-16T12:00:00Z"
    assert body["acknowledged_by"] == f"api-key:{api_key[0].prefix}"


def test_resolve_with_notes_and_then_conflicts(tenant, api_key, api_client, frozen):
    anomaly = AnomalyFactory(tenant=tenant, status=AnomalyStatus.ACKNOWLEDGED)

    response = api_client.post(
        url(anomaly, "resolve"), {"resolution": "dismissed", "notes": "load test"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "dismissed"
    assert body["resolved_at"] == "2026-03-16T12:00:00Z"
    assert body["resolved_by"] == f"api-key:{api_key[0].prefix}"
    assert body["resolution_notes"] == "load test"

    for verb, payload in (("resolve", {"resolution": "resolved"}), ("acknowledge", {})):
        conflict = api_client.post(url(anomaly, verb), payload, format="json")
        assert conflict.status_code == 409
        assert conflict.json()["error"] == "conflict"
    anomaly.refresh_from_db()
    assert (anomaly.status, anomaly.resolution_notes) == ("dismissed", "load test")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "resolution"),
        ({"resolution": "open"}, "resolution"),
        ({"resolution": "resolved", "notes": "x" * 2001}, "notes"),
        ({"resolution": "resolved", "extra": 1}, "extra"),
    ],
)
def test_resolve_rejects_bad_bodies(tenant, api_client, payload, field):
    anomaly = AnomalyFactory(tenant=tenant)

    response = api_client.post(url(anomaly, "resolve"), payload, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["field_errors"]] == [field]
    anomaly.refresh_from_db()
    assert anomaly.status == AnomalyStatus.OPEN


def test_acknowledge_rejects_unknown_fields(tenant, api_client):
    anomaly = AnomalyFactory(tenant=tenant)

    response = api_client.post(url(anomaly, "acknowledge"), {"force": True}, format="json")

    assert response.status_code == 400
    anomaly.refresh_from_db()
    assert anomaly.status == AnomalyStatus.OPEN


def test_feedback_works_on_any_status_and_overwrites(tenant, api_key, api_client):
    anomaly = AnomalyFactory(tenant=tenant, status=AnomalyStatus.RESOLVED)

    api_client.post(url(anomaly, "feedback"), {"label": "NO"}, format="json")
    response = api_client.post(
        url(anomaly, "feedback"), {"label": "PLANNED_ACTIVITY"}, format="json"
    )

    assert response.status_code == 200
    body = response.json()
    assert body["feedback_label"] == "PLANNED_ACTIVITY"
    assert body["feedback_by"] == f"api-key:{api_key[0].prefix}"
    assert body["status"] == "resolved"


def test_feedback_rejects_unknown_labels(tenant, api_client):
    anomaly = AnomalyFactory(tenant=tenant)

    response = api_client.post(url(anomaly, "feedback"), {"label": "MAYBE"}, format="json")

    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == "label"


def test_detect_runs_detection_for_the_callers_tenant(tenant, other_tenant, api_client, frozen):
    # given a spike for the tenant (baseline 100, today 150, yesterday breached)
    for n in (10, 8, 5):
        CostRecordFactory(
            tenant=tenant, created_at=NOW - timedelta(days=n), cost_cents=Decimal(100)
        )
    CostRecordFactory(tenant=tenant, created_at=NOW - timedelta(hours=2), cost_cents=Decimal(150))
    BreachHistoryFactory(tenant=tenant, breach_date=date(2026, 3, 15))
    CostRecordFactory(tenant=other_tenant, created_at=NOW - timedelta(hours=2))

    response = api_client.post(DETECT_URL, {}, format="json")
    again = api_client.post(DETECT_URL, {"as_of": "2026-03-16"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["detected"], body["created"], body["updated"]) == (1, 1, 0)
    (view,) = body["anomalies"]
    assert set(view) == VIEW_KEYS
    assert view["anomaly_type"] == "ABSOLUTE_SPIKE"
    assert view["breach_count"] == 2
    assert (again.json()["created"], again.json()["updated"]) == (0, 1)
    assert not Anomaly.objects.filter(tenant=other_tenant).exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"as_of": "2026-03-17"}, "as_of"), ({"as_of": "16/03/2026"}, "as_of"), ({"x": 1}, "x")],
)
def test_detect_rejects_bad_input(api_client, frozen, payload, field):
    response = api_client.post(DETECT_URL, payload, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["field_errors"]] == [field]
    assert not Anomaly.objects.exists()


def test_staff_session_without_key_gets_tenant_required(tenant, staff_session_client):
    response = staff_session_client.get(LIST_URL)

    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"


def test_no_credentials_is_401(client):
    response = client.get(LIST_URL)

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_nobody_is_null_and_rule_amounts_are_named_in_cents(tenant, api_client):
    # given: an open anomaly of the spike rule, which stores its baseline unsuffixed
    anomaly = AnomalyFactory(
        tenant=tenant, metadata={"lookback_days": 14, "baseline_daily_avg": 100.0}
    )
    # when
    detail = api_client.get(url(anomaly)).json()
    (listed,) = api_client.get(LIST_URL).json()["results"]
    # then
    for body in (detail, listed):
        assert (body["acknowledged_by"], body["resolved_by"], body["feedback_by"]) == (
            None,
            None,
            None,
        )
        assert body["metadata"] == {"lookback_days": 14, "baseline_daily_avg_cents": 100.0}
