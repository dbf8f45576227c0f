"""The breaker's API: disable, enable and the incident list."""

import pytest
import time_machine

from costsim.models import BREAKER_NAME, BreakerIncident, CircuitBreaker
from tests.costsim.breaker_support import (
    T0,
    breaker_defaults,  # noqa: F401 (autouse fixture)
    breaker_row,
    trip_by_drift,
)
from tests.costsim.safety_factories import BreakerIncidentFactory
from tests.factories import utc

# API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_key_disables_and_enables_through_the_api(staff_key_client):
    # when
    with time_machine.travel(T0, tick=False):
        disabled = staff_key_client.post(
            "/api/v1/costsim/breaker/disable/",
            {"reason": "bad deploy", "ttl_hours": 2},
            format="json",
        )
    enabled = staff_key_client.post(
        "/api/v1/costsim/breaker/enable/", {"reason": "fixed"}, format="json"
    )
    again = staff_key_client.post("/api/v1/costsim/breaker/enable/", {}, format="json")

    # then
    assert disabled.status_code == 200, disabled.json()
    state = disabled.json()
    incident = BreakerIncident.objects.get()
    assert state == {
        "is_open": True,
        "opened_at": "2026-03-02T10:00:00Z",
        "reason": "bad deploy",
        "incident_id": incident.id,
        "consecutive_failures": 0,
        "last_failure_at": None,
        "disabled_until": "2026-03-02T12:00:00Z",
        "disabled_by": state["disabled_by"],
    }
    assert state["disabled_by"].startswith("api-key:")
    assert incident.trigger == "manual"
    assert enabled.status_code == 200
    assert enabled.json()["changed"] is True
    assert enabled.json()["message"] == "re-enabled"
    assert enabled.json()["state"]["is_open"] is False
    assert again.json() == {
        "changed": False,
        "message": "already closed",
        "state": {
            "is_open": False,
            "opened_at": None,
            "reason": None,
            "incident_id": None,
            "consecutive_failures": 0,
            "last_failure_at": None,
            "disabled_until": None,
            "disabled_by": None,
        },
    }


@pytest.mark.django_db
def test_staff_session_needs_csrf_and_is_recorded_as_user(staff_session_client):
    # when without a CSRF token
    refused = staff_session_client.post(
        "/api/v1/costsim/breaker/disable/", {"reason": "x"}, format="json"
    )
    # then
    assert refused.status_code == 403
    assert _row_or_none_disabled() is False

    # when with one
    staff_session_client.get("/admin/")
    token = staff_session_client.cookies["csrftoken"].value
    accepted = staff_session_client.post(
        "/api/v1/costsim/breaker/disable/",
        {"reason": "x"},
        format="json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert accepted.status_code == 200, accepted.json()
    assert accepted.json()["disabled_by"] == "user:operator"


def _row_or_none_disabled() -> bool:
    row = CircuitBreaker.objects.filter(name=BREAKER_NAME).first()
    return bool(row and row.disabled)


@pytest.mark.django_db
def test_non_staff_key_cannot_disable(api_client):
    # when
    response = api_client.post("/api/v1/costsim/breaker/disable/", {"reason": "x"}, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["error"] == "permission_denied"
    assert _row_or_none_disabled() is False


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "reason"),
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": "x", "ttl_hours": 0}, "ttl_hours"),
        ({"reason": "x", "ttl_hours": 720.5}, "ttl_hours"),
        ({"reason": "x", "ttl_hours": "soon"}, "ttl_hours"),
        ({"reason": "x", "until": "tomorrow"}, "until"),
    ],
)
def test_invalid_disable_body_is_a_400_naming_the_field(staff_key_client, body, field):
    # when
    response = staff_key_client.post("/api/v1/costsim/breaker/disable/", body, format="json")
    # then
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert [e["field"] for e in response.json()["field_errors"]] == [field]
    assert BreakerIncident.objects.count() == 0


@pytest.mark.django_db
def test_enable_reason_longer_than_500_is_rejected(staff_key_client):
    # given
    trip_by_drift()
    # when
    response = staff_key_client.post(
        "/api/v1/costsim/breaker/enable/", {"reason": "x" * 501}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == "reason"
    assert breaker_row().disabled is True


@pytest.mark.django_db
def test_incident_list_newest_first_with_total(api_client):
    # given three resolved and two open incidents
    for hour in range(3):
        BreakerIncidentFactory(created_at=utc(2026, 3, 1, hour), resolved=True)
    older = BreakerIncidentFactory(created_at=utc(2026, 3, 2, 1), reason="older")
    newer = BreakerIncidentFactory(created_at=utc(2026, 3, 2, 2), reason="newer")
    # when
    default = api_client.get("/api/v1/costsim/incidents/").json()
    everything = api_client.get(
        "/api/v1/costsim/incidents/", {"include_resolved": "true", "page_size": 2}
    ).json()
    # then
    assert set(default) == {"next", "previous", "results", "total"}
    assert default["total"] == 2
    assert [i["id"] for i in default["results"]] == [newer.id, older.id]
    assert default["results"][0] == {
        "id": newer.id,
        "timestamp": "2026-03-02T02:00:00Z",
        "reason": "newer",
        "severity": "P1",
        "trigger": "drift",
        "drift_score": 0.25,
        "sample_count": 1,
        "details": {},
        "resolved": False,
        "resolved_at": None,
        "resolved_by": None,
        "resolution_notes": None,
        "alert_sent": False,
        "alert_sent_at": None,
    }
    assert everything["total"] == 5
    assert len(everything["results"]) == 2
    rest = api_client.get(everything["next"]).json()
    assert len(rest["results"]) == 2 and rest["next"] is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params",
    [{"page_size": 0}, {"page_size": 201}, {"limit": 10}, {"include_resolved": "maybe"}],
)
def test_incident_list_rejects_bad_query(api_client, params):
    # when
    response = api_client.get("/api/v1/costsim/incidents/", params)
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == next(iter(params))


@pytest.mark.django_db
def test_incident_list_needs_authentication(client):
    # when
    response = client.get("/api/v1/costsim/incidents/")
    # then
    assert response.status_code == 401
