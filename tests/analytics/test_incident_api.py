"""The incident endpoints, and detection's incidents and dry run, through the API client."""

from datetime import date, timedelta

import pytest
import time_machine

from analytics.models import (
    Anomaly,
    AnomalyStatus,
    AnomalyType,
    BreachHistory,
    DriftTracking,
    Incident,
    IncidentKind,
)
from tests.analytics.factories import AnomalyFactory, IncidentFactory, outlier_history
from tests.factories import utc

LIST_URL = "/api/v1/incidents/"
DETECT_URL = "/api/v1/anomalies/detect/"
NOW = utc(2026, 3, 16, 12)
SPIKE_DAY = date(2026, 3, 2)
DAY_AFTER = utc(2026, 3, 3, 10)

LIST_KEYS = {
    "id",
    "kind",
    "severity",
    "status",
    "entity_type",
    "entity_id",
    "budget_id",
    "started_on",
    "last_seen_on",
    "title",
    "expected_cents",
    "actual_cents",
    "impact_cents",
    "impact_pct",
    "metadata",
    "opened_at",
    "updated_at",
    "acknowledged_at",
    "acknowledged_by",
    "resolved_at",
    "resolved_by",
    "resolution_notes",
    "feedback_label",
    "feedback_at",
    "feedback_by",
}
VIEW_KEYS = LIST_KEYS | {"root_causes", "anomalies"}
ANOMALY_LIST_KEYS = {
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
ROOT_CAUSES = [
    {
        "entity_type": "feature",
        "entity_id": "search",
        "expected_cents": 5000.0,
        "actual_cents": 12500.0,
        "delta_cents": 7500.0,
        "share": 0.75,
    },
    {
        "entity_type": "user",
        "entity_id": "u7",
        "expected_cents": 1000.0,
        "actual_cents": 3500.0,
        "delta_cents": 2500.0,
        "share": 0.25,
    },
]


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def url(incident, verb: str = "") -> str:
    return f"{LIST_URL}{incident.pk}/" + (f"{verb}/" if verb else "")


def incident_with_anomalies(tenant, **fields):
    """An incident over 2 and 3 March with one anomaly per day."""
    incident = IncidentFactory(
        tenant=tenant, started_on=date(2026, 3, 2), last_seen_on=date(2026, 3, 3), **fields
    )
    for day in (date(2026, 3, 3), date(2026, 3, 2)):
        AnomalyFactory(tenant=tenant, incident=incident, anomaly_date=day)
    return incident


def row_counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Anomaly, Incident, BreachHistory, DriftTracking)
    }


# --- Reads -------------------------------------------------------------------------------


def test_detail_has_root_causes_and_its_anomalies_oldest_first(tenant, api_client):
    # given an incident with two anomalies, and an anomaly of no incident
    incident = incident_with_anomalies(tenant, root_causes=ROOT_CAUSES)
    AnomalyFactory(tenant=tenant, anomaly_date=date(2026, 3, 2), entity_type="user", entity_id="x")

    # when
    response = api_client.get(url(incident))

    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == VIEW_KEYS
    assert body["id"] == incident.pk
    assert (body["started_on"], body["last_seen_on"]) == ("2026-03-02", "2026-03-03")
    assert (body["expected_cents"], body["actual_cents"], body["impact_cents"]) == (
        20000.0,
        30000.0,
        10000.0,
    )
    assert body["impact_pct"] == 50.0
    assert body["acknowledged_at"] is None and body["budget_id"] is None
    assert body["root_causes"] == ROOT_CAUSES
    assert [a["anomaly_date"] for a in body["anomalies"]] == ["2026-03-02", "2026-03-03"]
    assert {a["id"] for a in body["anomalies"]} == set(
        incident.anomalies.values_list("pk", flat=True)
    )
    assert set(body["anomalies"][0]) == ANOMALY_LIST_KEYS


def test_list_is_most_recently_seen_first_without_details(tenant, api_client):
    # given
    older = IncidentFactory(tenant=tenant, started_on=date(2026, 3, 1))
    newer = IncidentFactory(tenant=tenant, started_on=date(2026, 3, 5))

    # when
    response = api_client.get(LIST_URL)

    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"next", "previous", "results"}
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]
    assert set(body["results"][0]) == LIST_KEYS


def test_list_filters(tenant, api_client):
    # given
    IncidentFactory(tenant=tenant, started_on=date(2026, 3, 1))  # seen on 2 March
    wanted = IncidentFactory(
        tenant=tenant,
        status=AnomalyStatus.ACKNOWLEDGED,
        severity="MEDIUM",
        kind=IncidentKind.DRIFT,
        started_on=date(2026, 3, 4),  # seen on 5 March
    )
    IncidentFactory(tenant=tenant, started_on=date(2026, 3, 8))  # seen on 9 March

    def ids(**params):
        response = api_client.get(LIST_URL, params)
        assert response.status_code == 200, response.json()
        return [item["id"] for item in response.json()["results"]]

    # then
    assert ids(status="acknowledged") == [wanted.pk]
    assert ids(severity="MEDIUM") == [wanted.pk]
    assert ids(kind="drift") == [wanted.pk]
    assert ids(**{"from": "2026-03-05", "to": "2026-03-06"}) == [wanted.pk]
    assert len(ids(**{"from": "2026-03-03"})) == 2
    assert len(ids(to="2026-03-05")) == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "closed"}, "status"),
        ({"severity": "low"}, "severity"),
        ({"kind": "SPIKE"}, "kind"),
        ({"from": "2026-03-01T00:00:00Z"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-03-02", "to": "2026-03-02"}, "from"),
        ({"page_size": "500"}, "page_size"),
    ],
)
def test_list_rejects_bad_filters(api_client, params, field):
    # when
    response = api_client.get(LIST_URL, params)

    # then
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert [error["field"] for error in body["field_errors"]] == [field]


def test_list_query_count_does_not_grow_with_rows(tenant, api_client, django_assert_num_queries):
    # given a warm key (its last_used_at is fresh, so auth is one query)
    api_client.get(LIST_URL)
    IncidentFactory.create_batch(5, tenant=tenant)

    # then: authenticate, read one page
    with django_assert_num_queries(2):
        response = api_client.get(LIST_URL)
    assert len(response.json()["results"]) == 5

    IncidentFactory.create_batch(20, tenant=tenant)
    with django_assert_num_queries(2):
        api_client.get(LIST_URL, {"page_size": "10"})


def test_list_pages_with_a_cursor(tenant, api_client):
    # given
    IncidentFactory.create_batch(3, tenant=tenant)

    # when
    first = api_client.get(LIST_URL, {"page_size": "2"}).json()
    second = api_client.get(first["next"]).json()

    # then
    assert len(first["results"]) == 2
    assert len(second["results"]) == 1
    assert second["next"] is None
    assert {item["id"] for item in first["results"] + second["results"]} == set(
        Incident.objects.values_list("pk", flat=True)
    )


def test_other_tenants_incident_is_invisible(tenant, other_tenant, api_client, other_client):
    # given an incident of `tenant`
    incident = incident_with_anomalies(tenant)

    # then the other tenant neither lists nor touches it
    assert other_client.get(LIST_URL).json()["results"] == []
    for response in (
        other_client.get(url(incident)),
        other_client.post(url(incident, "acknowledge"), {}, format="json"),
        other_client.post(url(incident, "resolve"), {}, format="json"),
        other_client.post(url(incident, "dismiss"), {}, format="json"),
        other_client.post(url(incident, "feedback"), {"label": "NO"}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    incident.refresh_from_db()
    assert (incident.status, incident.feedback_label) == (AnomalyStatus.OPEN, None)
    assert set(incident.anomalies.values_list("status", flat=True)) == {AnomalyStatus.OPEN}


def test_malformed_id_is_404(api_client):
    assert api_client.get(f"{LIST_URL}abc/").status_code == 404
    assert api_client.get(f"{LIST_URL}99999999999999999999/").status_code == 404


# --- Verbs -------------------------------------------------------------------------------


def test_acknowledge_moves_the_incident_and_its_anomalies(tenant, api_key, api_client, frozen):
    # given an open incident with two open anomalies
    incident = incident_with_anomalies(tenant)
    actor = f"api-key:{api_key[0].prefix}"

    # when it is acknowledged twice, an hour apart
    first = api_client.post(url(incident, "acknowledge"), {}, format="json")
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        second = api_client.post(url(incident, "acknowledge"), {}, format="json")

    # then the first one counts and the answer shows the anomalies moved too
    assert first.status_code == second.status_code == 200
    body = second.json()
    assert set(body) == VIEW_KEYS
    assert body["status"] == "acknowledged"
    assert body["acknowledged_at"] == "2026-03-16T12:00:00Z"
    assert body["acknowledged_by"] == actor
    assert {(a["status"], a["acknowledged_by"]) for a in body["anomalies"]} == {
        ("acknowledged", actor)
    }
    assert set(incident.anomalies.values_list("status", flat=True)) == {"acknowledged"}


@pytest.mark.parametrize(("verb", "status"), [("resolve", "resolved"), ("dismiss", "dismissed")])
def test_closing_moves_the_incident_and_its_anomalies(
    tenant, api_key, api_client, frozen, verb, status
):
    # given an acknowledged incident
    incident = incident_with_anomalies(tenant, status=AnomalyStatus.ACKNOWLEDGED)

    # when
    response = api_client.post(url(incident, verb), {"notes": "known load test"}, format="json")

    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == status
    assert body["resolved_at"] == "2026-03-16T12:00:00Z"
    assert body["resolved_by"] == f"api-key:{api_key[0].prefix}"
    assert body["resolution_notes"] == "known load test"
    assert {(a["status"], a["resolution_notes"]) for a in body["anomalies"]} == {
        (status, "known load test")
    }
    assert set(incident.anomalies.values_list("status", flat=True)) == {status}


def test_closing_without_a_body_leaves_empty_notes(tenant, api_client):
    incident = IncidentFactory(tenant=tenant)

    response = api_client.post(url(incident, "resolve"), {}, format="json")

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["resolution_notes"]) == ("resolved", "")


@pytest.mark.parametrize("closed", [AnomalyStatus.RESOLVED, AnomalyStatus.DISMISSED])
@pytest.mark.parametrize("verb", ["acknowledge", "resolve", "dismiss"])
def test_verbs_on_a_closed_incident_conflict(tenant, api_client, closed, verb):
    # given a closed incident
    incident = IncidentFactory(tenant=tenant, status=closed, resolution_notes="done")

    # when
    response = api_client.post(url(incident, verb), {}, format="json")

    # then
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "conflict"
    assert body["field_errors"] == [{"field": "status", "reason": f"incident is {closed}"}]
    incident.refresh_from_db()
    assert (incident.status, incident.resolution_notes) == (closed, "done")


@pytest.mark.parametrize(
    ("verb", "payload", "field"),
    [
        ("resolve", {"notes": "x" * 2001}, "notes"),
        ("resolve", {"resolution": "dismissed"}, "resolution"),
        ("dismiss", {"notes": 5, "extra": 1}, "extra"),
        ("acknowledge", {"force": True}, "force"),
    ],
)
def test_verbs_reject_bad_bodies(tenant, api_client, verb, payload, field):
    incident = incident_with_anomalies(tenant)

    response = api_client.post(url(incident, verb), payload, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["field_errors"]] == [field]
    incident.refresh_from_db()
    assert incident.status == AnomalyStatus.OPEN


def test_feedback_labels_the_incident_and_its_anomalies_on_any_status(tenant, api_key, api_client):
    # given a resolved incident
    incident = incident_with_anomalies(tenant, status=AnomalyStatus.RESOLVED)

    # when it is labelled twice
    api_client.post(url(incident, "feedback"), {"label": "YES"}, format="json")
    response = api_client.post(url(incident, "feedback"), {"label": "NO"}, format="json")

    # then the last label wins, on the incident and its anomalies
    assert response.status_code == 200
    body = response.json()
    assert body["feedback_label"] == "NO"
    assert body["feedback_by"] == f"api-key:{api_key[0].prefix}"
    assert body["status"] == "resolved"
    assert {a["feedback_label"] for a in body["anomalies"]} == {"NO"}
    assert set(incident.anomalies.values_list("feedback_label", flat=True)) == {"NO"}


@pytest.mark.parametrize(("payload", "field"), [({"label": "MAYBE"}, "label"), ({}, "label")])
def test_feedback_rejects_bad_labels(tenant, api_client, payload, field):
    incident = IncidentFactory(tenant=tenant)

    response = api_client.post(url(incident, "feedback"), payload, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["field_errors"]] == [field]
    incident.refresh_from_db()
    assert incident.feedback_label is None


# --- Detection ---------------------------------------------------------------------------


def test_detect_opens_an_incident_with_its_anomalies(tenant, api_client):
    # given a month of steady spend and a day at three times the usual
    outlier_history(tenant, SPIKE_DAY)

    # when detection runs the day after
    with time_machine.travel(DAY_AFTER, tick=False):
        response = api_client.post(DETECT_URL, {}, format="json")

    # then the outliers are grouped into one incident the API can show
    assert response.status_code == 200
    body = response.json()
    assert (body["opened"], body["suppressed"], body["dry_run"]) == (1, 0, False)
    (detected,) = body["incidents"]
    assert set(detected) == LIST_KEYS | {"anomaly_ids"}
    assert detected["kind"] == "outlier"
    assert (detected["started_on"], detected["last_seen_on"]) == ("2026-03-02", "2026-03-02")
    assert sorted(detected["anomaly_ids"]) == sorted(a["id"] for a in body["anomalies"])
    assert {a["anomaly_type"] for a in body["anomalies"]} == {AnomalyType.STATISTICAL_OUTLIER}

    listed = api_client.get(LIST_URL).json()["results"]
    assert [item["id"] for item in listed] == [detected["id"]]
    detail = api_client.get(f"{LIST_URL}{detected['id']}/").json()
    assert sorted(a["id"] for a in detail["anomalies"]) == sorted(detected["anomaly_ids"])
    assert detail["impact_cents"] > 0
    assert {(c["entity_type"], c["entity_id"]) for c in detail["root_causes"]} == {
        ("model", "gpt-4o-mini"),
        ("user", "u1"),
    }


def test_detect_dry_run_writes_nothing_but_answers_what_would_be_raised(tenant, api_client):
    # given the outlier day, and the same spike again today (spike and drift rules keep state)
    outlier_history(tenant, SPIKE_DAY)
    outlier_history(tenant, SPIKE_DAY + timedelta(days=1), days=0)
    before = row_counts()

    # when
    with time_machine.travel(DAY_AFTER, tick=False):
        dry = api_client.post(DETECT_URL, {"dry_run": True}, format="json")

    # then nothing was written
    assert dry.status_code == 200
    assert row_counts() == before
    body = dry.json()
    assert body["dry_run"] is True
    assert (body["detected"], body["created"], body["opened"]) == (3, 3, 1)
    (incident,) = body["incidents"]
    assert sorted(incident["anomaly_ids"]) == sorted(a["id"] for a in body["anomalies"])

    # and a real run then raises the same and writes every kind of row
    with time_machine.travel(DAY_AFTER, tick=False):
        real = api_client.post(DETECT_URL, {"dry_run": False}, format="json").json()
    after = row_counts()
    assert all(after[name] > before[name] for name in before), after
    assert (real["detected"], real["created"], real["opened"], real["dry_run"]) == (
        3,
        3,
        1,
        False,
    )
    (stored,) = real["incidents"]
    fields = ("kind", "severity", "title", "impact_cents", "started_on", "last_seen_on")
    assert {name: stored[name] for name in fields} == {name: incident[name] for name in fields}


@pytest.mark.parametrize("value", ["maybe", None, 2])
def test_detect_rejects_a_non_boolean_dry_run(api_client, frozen, value):
    response = api_client.post(DETECT_URL, {"dry_run": value}, format="json")

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["field_errors"]] == ["dry_run"]


def test_no_credentials_is_401(client):
    response = client.get(LIST_URL)

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_nobody_is_null_until_an_operator_acts(tenant, api_client):
    # given
    incident = IncidentFactory(tenant=tenant)
    AnomalyFactory(tenant=tenant, incident=incident)
    # when
    detail = api_client.get(url(incident)).json()
    (listed,) = api_client.get(LIST_URL).json()["results"]
    # then
    for body in (detail, listed):
        assert (body["acknowledged_by"], body["resolved_by"], body["feedback_by"]) == (
            None,
            None,
            None,
        )
    assert detail["anomalies"][0]["acknowledged_by"] is None
