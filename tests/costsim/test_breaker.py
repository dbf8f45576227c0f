"""The circuit breaker trips: drift reports (from the sandbox and the canary) and schema errors."""

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
    report_drift,
    trip_by_drift,
)

# Drift reports ------------------------------------------------------------------------


@pytest.mark.django_db
def test_spec_example_third_consecutive_failure_trips_with_24h_ttl():
    # given / when two failures, a pass, then three failures
    with time_machine.travel(T0, tick=False):
        assert report_drift(0.25) is None
        assert report_drift(0.25) is None
        assert breaker_row().consecutive_failures == 2
        assert report_drift(0.1) is None
        assert breaker_row().consecutive_failures == 0
        assert report_drift(0.25) is None
        assert report_drift(0.25) is None
        incident = report_drift(0.25)

    # then the third call tripped
    assert incident is not None
    assert incident.severity == "P1"
    assert incident.trigger == "drift"
    assert incident.reason == "Drift exceeded threshold: 0.2500 > 0.2"
    assert incident.drift_score == 0.25
    assert incident.sample_count == 1
    row = breaker_row()
    assert row.disabled is True
    assert row.opened_at == T0
    assert row.disabled_by == "circuit_breaker"
    assert row.disabled_reason == incident.reason
    assert row.disabled_until == T0 + timedelta(hours=24)
    assert row.incident_id == incident.id
    assert row.consecutive_failures == 3
    assert row.last_failure_at == T0


@pytest.mark.django_db
def test_score_equal_to_threshold_is_not_a_failure():
    # given
    report_drift(0.25)
    # when
    report_drift(0.2)
    # then
    assert breaker_row().consecutive_failures == 0


@pytest.mark.django_db
def test_trip_queues_a_disable_alert_in_the_same_transaction(settings):
    # given
    settings.COSTSIM_RUNBOOK_URL = "https://runbooks.example.com/costsim"
    # when
    with time_machine.travel(T0, tick=False):
        incident = trip_by_drift()
    # then
    alert = breaker_alerts().get()
    assert alert.payload["data"]["alert_type"] == "disable"
    assert alert.status == "pending"
    assert alert.payload["data"]["incident_id"] == incident.id
    assert alert.event_key == f"costsim.breaker:tripped:{incident.id}"
    assert alert.next_attempt_at == T0
    assert alert.max_attempts == settings.COSTSIM_ALERT_MAX_ATTEMPTS
    assert alert.payload["data"]["alerts"] == [
        {
            "labels": {
                "alertname": "CostSimV2Disabled",
                "severity": "p1",
                "component": "costsim",
                "circuit_breaker": "costsim_v2",
                "instance": "test-host",
                "incident_id": incident.id,
            },
            "annotations": {
                "summary": "CostSim V2 circuit breaker tripped (P1)",
                "description": (
                    "Reason: Drift exceeded threshold: 0.2500 > 0.2\n"
                    "Drift score: 0.2500\n"
                    "Sample count: 1\n"
                    "Disabled until: 2026-03-03T10:00:00Z"
                ),
                "runbook_url": "https://runbooks.example.com/costsim",
            },
            "startsAt": "2026-03-02T10:00:00Z",
        }
    ]


@pytest.mark.django_db
def test_reports_while_open_change_nothing_and_only_count(django_capture_on_commit_callbacks):
    # given an open breaker
    incident = trip_by_drift()
    before = breaker_row()
    counted = metric_sample("costsim_cb_reports_while_open_total", source="sandbox")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = report_drift(0.9)
        report_drift(0.0)
    # then
    assert result is None
    after = breaker_row()
    assert after.consecutive_failures == before.consecutive_failures
    assert after.incident_id == incident.id
    assert BreakerIncident.objects.count() == 1
    assert breaker_alerts().count() == 1
    assert metric_sample("costsim_cb_reports_while_open_total", source="sandbox") == counted + 2


@pytest.mark.django_db
def test_trip_metrics_are_counted_on_commit(django_capture_on_commit_callbacks):
    # given
    trips = metric_sample("costsim_cb_disabled_total", reason="drift", severity="P1")
    opened = metric_sample("costsim_cb_incidents_total", severity="P1", resolved="false")
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        trip_by_drift()
    # then nothing is counted before the commit
    assert metric_sample("costsim_cb_disabled_total", reason="drift", severity="P1") == trips
    for callback in callbacks:
        callback()
    assert metric_sample("costsim_cb_disabled_total", reason="drift", severity="P1") == trips + 1
    assert (
        metric_sample("costsim_cb_incidents_total", severity="P1", resolved="false") == opened + 1
    )


# Canary feed --------------------------------------------------------------------------


@pytest.mark.django_db
def test_canary_drift_reports_trip_with_trigger_canary():
    # when
    for _ in range(3):
        incident = report_drift(0.9, source="canary")
    # then
    assert incident.trigger == "canary"
    assert incident.severity == "P1"


@pytest.mark.django_db
def test_failed_canary_with_low_kl_counts_as_a_drift_report_of_one():
    # given two sandbox failures
    report_drift(0.25)
    report_drift(0.25)
    # when a canary fails although its KL is only 0.05
    incident = svc.breaker_report_canary(
        status="fail", kl_divergence=0.05, total_samples=40, details={"source": "canary"}
    )
    # then it is the third failure, scored 1.0 over the canary's samples
    assert incident.drift_score == 1.0
    assert incident.sample_count == 40
    assert incident.trigger == "canary"
    assert incident.reason == "Drift exceeded threshold: 1.0000 > 0.2"


@pytest.mark.django_db
def test_passed_canary_resets_the_failure_streak_of_a_closed_breaker():
    # given
    report_drift(0.25)
    report_drift(0.25)
    # when
    result = svc.breaker_report_canary(
        status="pass", kl_divergence=0.01, total_samples=10, details={}
    )
    # then
    assert result is None
    assert breaker_row().consecutive_failures == 0


@pytest.mark.django_db
def test_passed_canary_leaves_an_open_breaker_alone():
    # given
    trip_by_drift()
    # when
    svc.breaker_report_canary(status="pass", kl_divergence=0.0, total_samples=10, details={})
    # then
    row = breaker_row()
    assert row.disabled is True
    assert row.consecutive_failures == 3


@pytest.mark.django_db
def test_an_error_canary_without_a_kl_scores_one():
    # given two sandbox failures
    report_drift(0.25)
    report_drift(0.25)
    # when a canary could evaluate none of enough samples
    incident = svc.breaker_report_canary(
        status="error", kl_divergence=None, total_samples=100, details={}
    )
    # then
    assert incident.drift_score == 1.0
    assert incident.sample_count == 100


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["insufficient_data", "skipped"])
def test_a_canary_that_decided_nothing_leaves_the_breaker_as_it_was(
    status, django_assert_num_queries
):
    # given two sandbox failures
    report_drift(0.25)
    report_drift(0.25)
    before = breaker_row()
    # when
    with django_assert_num_queries(0):
        result = svc.breaker_report_canary(
            status=status, kl_divergence=None, total_samples=1, details={}
        )
    # then neither reset nor counted
    assert result is None
    after = breaker_row()
    assert after.consecutive_failures == 2
    assert (after.last_failure_at, after.updated_at) == (before.last_failure_at, before.updated_at)


# Schema errors ------------------------------------------------------------------------


@pytest.mark.django_db
def test_fifth_consecutive_schema_error_trips_p3():
    # when
    results = [svc.breaker_report_schema_error(details={"error_type": "x"}) for _ in range(5)]
    # then
    assert results[:4] == [None] * 4
    incident = results[4]
    assert incident.severity == "P3"
    assert incident.trigger == "schema_error"
    assert incident.drift_score == 1.0
    assert incident.sample_count == 5
    assert incident.reason == "Schema error threshold exceeded: 5 >= 5"
    assert incident.details == {"error_type": "x"}
    assert breaker_row().disabled is True


@pytest.mark.django_db
def test_v2_success_resets_the_schema_error_streak():
    # given
    for _ in range(4):
        svc.breaker_report_schema_error(details={})
    # when
    svc.breaker_report_success()
    svc.breaker_report_schema_error(details={})
    # then
    assert breaker_row().consecutive_schema_errors == 1
    assert breaker_row().disabled is False


@pytest.mark.django_db
def test_schema_errors_while_open_are_ignored():
    # given
    trip_by_drift()
    # when
    assert svc.breaker_report_schema_error(details={}) is None
    # then
    assert breaker_row().consecutive_schema_errors == 0
    assert BreakerIncident.objects.count() == 1


# Sandbox traffic ----------------------------------------------------------------------


@pytest.mark.django_db
def test_sandbox_traffic_trips_the_breaker_and_is_then_shed(api_client, settings):
    # given shadow mode and a plan V1 and V2 price 10 vs 5 cents (drift 0.3)
    settings.COSTSIM_V2_SANDBOX = True
    body = {"plan": [{"skill": "mystery"}], "budget_cents": 100}
    # when
    responses = [
        api_client.post("/api/v1/costsim/simulate/", body, format="json").json() for _ in range(4)
    ]
    # then the third report trips, the fourth request does not run V2 at all
    assert [r["v2_error"] for r in responses] == [
        None,
        None,
        "Circuit breaker tripped: Drift exceeded threshold: 0.3000 > 0.2",
        "V2 disabled by circuit breaker",
    ]
    assert responses[3]["v2"] is None
    assert responses[3]["v1"]["estimated_cost_cents"] == 10
    incident = BreakerIncident.objects.get()
    assert incident.details["source"] == "sandbox"
    assert incident.details["verdict"] == "major_drift"
