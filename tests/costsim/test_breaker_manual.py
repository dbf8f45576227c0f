"""Manual disable and enable of the circuit breaker, and its incidents."""

from datetime import timedelta

import pytest
import time_machine

from costsim.models import BreakerIncident
from costsim.services import breaker as svc
from tests.costsim.breaker_support import (
    T0,
    breaker_alerts,
    breaker_defaults,  # noqa: F401 (autouse fixture)
    breaker_row,
    metric_sample,
    trip_by_drift,
)
from tests.costsim.safety_factories import BreakerIncidentFactory

# Manual disable and enable ------------------------------------------------------------


@pytest.mark.django_db
def test_manual_disable_without_ttl_stays_open_until_enabled():
    # given
    with time_machine.travel(T0, tick=False):
        svc.breaker_disable(reason="Investigating pricing change", actor="user:ops")
    # when a year passes
    with time_machine.travel(T0 + timedelta(days=365), tick=False):
        disabled = svc.breaker_is_disabled()
    # then
    assert disabled is True
    row = breaker_row()
    assert row.disabled_until is None
    assert row.disabled_by == "user:ops"
    incident = row.incident
    assert incident.severity == "P2"
    assert incident.trigger == "manual"
    assert incident.reason == "Investigating pricing change"
    assert incident.drift_score == 0.0
    assert incident.sample_count == 0
    assert incident.details == {"manual_disable": True}
    alert = breaker_alerts().get()
    assert alert.payload["data"]["alerts"][0]["labels"]["severity"] == "p2"
    assert alert.payload["data"]["alerts"][0]["annotations"]["description"].endswith(
        "Disabled until: manual reset required"
    )


@pytest.mark.django_db
def test_manual_disable_with_ttl_sets_disabled_until():
    # when
    with time_machine.travel(T0, tick=False):
        svc.breaker_disable(reason="maintenance", actor="user:ops", ttl_hours=1.5)
    # then
    assert breaker_row().disabled_until == T0 + timedelta(hours=1, minutes=30)


@pytest.mark.django_db
def test_disable_on_an_open_breaker_overwrites_without_a_new_incident():
    # given an automatic trip with a 24 h TTL
    incident = trip_by_drift()
    # when
    svc.breaker_disable(reason="keep it off", actor="api-key:ck_abc")
    # then
    row = breaker_row()
    assert row.disabled_reason == "keep it off"
    assert row.disabled_by == "api-key:ck_abc"
    assert row.disabled_until is None
    assert row.incident_id == incident.id
    assert BreakerIncident.objects.count() == 1
    assert breaker_alerts().count() == 1


@pytest.mark.django_db
def test_enable_on_a_closed_breaker_changes_nothing():
    # when
    result = svc.breaker_enable(reason=None, actor="user:ops")
    # then
    assert result.changed is False
    assert result.message == "already closed"
    assert breaker_alerts().count() == 0


@pytest.mark.django_db
def test_enable_closes_resolves_and_queues_an_enable_alert(django_capture_on_commit_callbacks):
    # given
    incident = trip_by_drift()
    enabled = metric_sample("costsim_cb_enabled_total", reason="manual")
    resolved = metric_sample("costsim_cb_incidents_total", severity="P1", resolved="true")
    # when
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        result = svc.breaker_enable(reason=None, actor="user:ops")
    # then
    assert result.changed is True
    assert result.message == "re-enabled"
    row = breaker_row()
    assert row.disabled is False
    assert row.opened_at is None
    assert row.disabled_until is None
    assert row.disabled_reason == ""
    assert row.incident is None
    assert row.consecutive_failures == 0
    assert row.consecutive_schema_errors == 0
    incident.refresh_from_db()
    assert incident.resolved is True
    assert incident.resolved_at == T0
    assert incident.resolved_by == "user:ops"
    assert incident.resolution_notes == "Manual reset"
    alert = breaker_alerts().get(payload__data__alert_type="enable")
    assert alert.payload["data"]["incident_id"] == incident.id
    assert alert.payload["data"]["alerts"] == [
        {
            "labels": {
                "alertname": "CostSimV2Reenabled",
                "severity": "info",
                "component": "costsim",
                "circuit_breaker": "costsim_v2",
                "instance": "test-host",
            },
            "annotations": {
                "summary": "CostSim V2 circuit breaker re-enabled",
                "description": "Re-enabled by: user:ops\nReason: Not specified",
            },
            "startsAt": "2026-03-02T10:00:00Z",
            "endsAt": "2026-03-02T10:00:00Z",
        }
    ]
    assert metric_sample("costsim_cb_enabled_total", reason="manual") == enabled + 1
    assert (
        metric_sample("costsim_cb_incidents_total", severity="P1", resolved="true") == resolved + 1
    )


@pytest.mark.django_db
def test_enable_reason_becomes_the_resolution_notes():
    # given
    incident = trip_by_drift()
    # when
    svc.breaker_enable(reason="Pricing table fixed", actor="user:ops")
    # then
    incident.refresh_from_db()
    assert incident.resolution_notes == "Pricing table fixed"
    alert = breaker_alerts().get(payload__data__alert_type="enable")
    description = alert.payload["data"]["alerts"][0]["annotations"]["description"]
    assert description.endswith("Reason: Pricing table fixed")


# Incidents ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_incident_resolve_leaves_the_open_breakers_incident_alone():
    # given an old unresolved incident and the open breaker's own one
    old = BreakerIncidentFactory(created_at=T0)
    current = trip_by_drift()
    # when
    count = svc.incident_resolve(
        incident_ids=[old.id, current.id], actor="user:ops", notes="cleanup"
    )
    # then
    assert count == 1
    old.refresh_from_db()
    current.refresh_from_db()
    assert (old.resolved, old.resolved_by, old.resolution_notes) == (True, "user:ops", "cleanup")
    assert current.resolved is False
