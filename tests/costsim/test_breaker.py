"""Circuit breaker state machine, its API and its scrape-time gauges."""

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY

from config.database import database_url_from_settings
from costsim.collectors import STATE_COLLECTOR
from costsim.models import BREAKER_NAME, BreakerIncident, CircuitBreaker
from costsim.selectors import BreakerSnapshot
from costsim.services import breaker as svc
from notifications.models import Delivery
from tests.costsim.safety_factories import AlertDeliveryFactory, BreakerIncidentFactory
from tests.factories import utc

T0 = utc(2026, 3, 2, 10)
PROJECT_DIR = Path(__file__).resolve().parents[2]


def _alerts():
    """The breaker's Alertmanager alerts: deliveries of the notifications outbox."""
    return Delivery.objects.filter(channel__kind="alertmanager")


def _row() -> CircuitBreaker:
    return CircuitBreaker.objects.select_related("incident").get(name=BREAKER_NAME)


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _drift(score: float, source: str = "sandbox"):
    return svc.breaker_report_drift(
        score=score, sample_count=1, details={"source": source}, source=source
    )


def _trip_by_drift(score: float = 0.25):
    _drift(score)
    _drift(score)
    return _drift(score)


@pytest.fixture(autouse=True)
def _defaults(settings):
    settings.COSTSIM_DRIFT_THRESHOLD = 0.2
    settings.COSTSIM_FAILURE_THRESHOLD = 3
    settings.COSTSIM_SCHEMA_ERROR_THRESHOLD = 5
    settings.COSTSIM_AUTO_RECOVER = True
    settings.COSTSIM_DISABLE_TTL_HOURS = 24
    settings.INSTANCE_ID = "test-host"
    settings.COSTSIM_RUNBOOK_URL = ""


# Drift reports ------------------------------------------------------------------------


@pytest.mark.django_db
def test_spec_example_third_consecutive_failure_trips_with_24h_ttl():
    # given / when two failures, a pass, then three failures
    with time_machine.travel(T0, tick=False):
        assert _drift(0.25) is None
        assert _drift(0.25) is None
        assert _row().consecutive_failures == 2
        assert _drift(0.1) is None
        assert _row().consecutive_failures == 0
        assert _drift(0.25) is None
        assert _drift(0.25) is None
        incident = _drift(0.25)

    # then the third call tripped
    assert incident is not None
    assert incident.severity == "P1"
    assert incident.trigger == "drift"
    assert incident.reason == "Drift exceeded threshold: 0.2500 > 0.2"
    assert incident.drift_score == 0.25
    assert incident.sample_count == 1
    row = _row()
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
    _drift(0.25)
    # when
    _drift(0.2)
    # then
    assert _row().consecutive_failures == 0


@pytest.mark.django_db
def test_trip_queues_a_disable_alert_in_the_same_transaction(settings):
    # given
    settings.COSTSIM_RUNBOOK_URL = "https://runbooks.example.com/costsim"
    # when
    with time_machine.travel(T0, tick=False):
        incident = _trip_by_drift()
    # then
    alert = _alerts().get()
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
    incident = _trip_by_drift()
    before = _row()
    counted = _sample("costsim_cb_reports_while_open_total", source="sandbox")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = _drift(0.9)
        _drift(0.0)
    # then
    assert result is None
    after = _row()
    assert after.consecutive_failures == before.consecutive_failures
    assert after.incident_id == incident.id
    assert BreakerIncident.objects.count() == 1
    assert _alerts().count() == 1
    assert _sample("costsim_cb_reports_while_open_total", source="sandbox") == counted + 2


@pytest.mark.django_db
def test_trip_metrics_are_counted_on_commit(django_capture_on_commit_callbacks):
    # given
    trips = _sample("costsim_cb_disabled_total", reason="drift", severity="P1")
    opened = _sample("costsim_cb_incidents_total", severity="P1", resolved="false")
    # when
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        _trip_by_drift()
    # then nothing is counted before the commit
    assert _sample("costsim_cb_disabled_total", reason="drift", severity="P1") == trips
    for callback in callbacks:
        callback()
    assert _sample("costsim_cb_disabled_total", reason="drift", severity="P1") == trips + 1
    assert _sample("costsim_cb_incidents_total", severity="P1", resolved="false") == opened + 1


# Canary feed --------------------------------------------------------------------------


@pytest.mark.django_db
def test_canary_drift_reports_trip_with_trigger_canary():
    # when
    for _ in range(3):
        incident = _drift(0.9, source="canary")
    # then
    assert incident.trigger == "canary"
    assert incident.severity == "P1"


@pytest.mark.django_db
def test_failed_canary_with_low_kl_counts_as_a_drift_report_of_one():
    # given two sandbox failures
    _drift(0.25)
    _drift(0.25)
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
    _drift(0.25)
    _drift(0.25)
    # when
    result = svc.breaker_report_canary(
        status="pass", kl_divergence=0.01, total_samples=10, details={}
    )
    # then
    assert result is None
    assert _row().consecutive_failures == 0


@pytest.mark.django_db
def test_passed_canary_leaves_an_open_breaker_alone():
    # given
    _trip_by_drift()
    # when
    svc.breaker_report_canary(status="pass", kl_divergence=0.0, total_samples=10, details={})
    # then
    row = _row()
    assert row.disabled is True
    assert row.consecutive_failures == 3


@pytest.mark.django_db
def test_an_error_canary_without_a_kl_scores_one():
    # given two sandbox failures
    _drift(0.25)
    _drift(0.25)
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
    _drift(0.25)
    _drift(0.25)
    before = _row()
    # when
    with django_assert_num_queries(0):
        result = svc.breaker_report_canary(
            status=status, kl_divergence=None, total_samples=1, details={}
        )
    # then neither reset nor counted
    assert result is None
    after = _row()
    assert after.consecutive_failures == 2
    assert (after.last_failure_at, after.updated_at) == (before.last_failure_at, before.updated_at)


# Reports that cannot change anything --------------------------------------------------


def _locking(queries) -> list[str]:
    return [q["sql"] for q in queries if "FOR UPDATE" in q["sql"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "report",
    [
        lambda: _drift(0.2),
        lambda: svc.breaker_report_success(),
        lambda: svc.breaker_report_canary(
            status="pass", kl_divergence=0.0, total_samples=10, details={}
        ),
    ],
    ids=["drift_within_threshold", "success", "passed_canary"],
)
def test_a_report_that_changes_nothing_is_one_unlocked_read(report):
    # given a closed breaker with no streaks
    svc.breaker_get()
    before = _row().updated_at
    # when
    with CaptureQueriesContext(connection) as queries:
        report()
    # then
    assert len(queries) == 1
    assert _locking(queries) == []
    assert _row().updated_at == before


@pytest.mark.django_db
def test_reports_with_the_checks_reading_send_no_query():
    # given
    seen = svc.breaker_check()
    # when
    with CaptureQueriesContext(connection) as queries:
        svc.breaker_report_success(seen=seen)
        result = svc.breaker_report_drift(score=0.1, sample_count=1, details={}, seen=seen)
    # then
    assert result is None
    assert len(queries) == 0


@pytest.mark.django_db
def test_a_reading_with_a_streak_sends_the_reports_through_the_lock():
    # given streaks of both kinds, as the check read them
    _drift(0.25)
    svc.breaker_report_schema_error(details={})
    seen = svc.breaker_check()
    # when
    with CaptureQueriesContext(connection) as queries:
        svc.breaker_report_success(seen=seen)
        svc.breaker_report_drift(score=0.1, sample_count=1, details={}, seen=seen)
    # then
    assert len(_locking(queries)) == 2
    row = _row()
    assert (row.consecutive_failures, row.consecutive_schema_errors) == (0, 0)


@pytest.mark.django_db
def test_a_failure_always_takes_the_lock():
    # given
    seen = svc.breaker_check()
    # when
    with CaptureQueriesContext(connection) as queries:
        svc.breaker_report_drift(score=0.21, sample_count=1, details={}, seen=seen)
    # then
    assert len(_locking(queries)) == 1
    assert _row().consecutive_failures == 1


@pytest.mark.django_db
def test_a_drift_on_an_open_breaker_is_counted_without_a_lock(django_capture_on_commit_callbacks):
    # given
    _trip_by_drift()
    counted = _sample("costsim_cb_reports_while_open_total", source="canary")
    # when
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = _drift(0.9, source="canary")
    # then
    assert result is None
    assert _locking(queries) == []
    assert _sample("costsim_cb_reports_while_open_total", source="canary") == counted + 1


@pytest.mark.django_db
def test_check_returns_the_state_after_an_auto_recovery():
    # given a trip at T0 with a 24 h TTL, and a schema-error streak before it
    with time_machine.travel(T0, tick=False):
        svc.breaker_report_schema_error(details={})
        _trip_by_drift()
    # when
    with time_machine.travel(T0 + timedelta(hours=25), tick=False):
        seen = svc.breaker_check()
    # then
    assert seen == BreakerSnapshot(
        disabled=False, disabled_until=None, consecutive_failures=0, consecutive_schema_errors=0
    )
    assert _row().disabled is False


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
    assert _row().disabled is True


@pytest.mark.django_db
def test_v2_success_resets_the_schema_error_streak():
    # given
    for _ in range(4):
        svc.breaker_report_schema_error(details={})
    # when
    svc.breaker_report_success()
    svc.breaker_report_schema_error(details={})
    # then
    assert _row().consecutive_schema_errors == 1
    assert _row().disabled is False


@pytest.mark.django_db
def test_schema_errors_while_open_are_ignored():
    # given
    _trip_by_drift()
    # when
    assert svc.breaker_report_schema_error(details={}) is None
    # then
    assert _row().consecutive_schema_errors == 0
    assert BreakerIncident.objects.count() == 1


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
    row = _row()
    assert row.disabled_until is None
    assert row.disabled_by == "user:ops"
    incident = row.incident
    assert incident.severity == "P2"
    assert incident.trigger == "manual"
    assert incident.reason == "Investigating pricing change"
    assert incident.drift_score == 0.0
    assert incident.sample_count == 0
    assert incident.details == {"manual_disable": True}
    alert = _alerts().get()
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
    assert _row().disabled_until == T0 + timedelta(hours=1, minutes=30)


@pytest.mark.django_db
def test_disable_on_an_open_breaker_overwrites_without_a_new_incident():
    # given an automatic trip with a 24 h TTL
    incident = _trip_by_drift()
    # when
    svc.breaker_disable(reason="keep it off", actor="api-key:ck_abc")
    # then
    row = _row()
    assert row.disabled_reason == "keep it off"
    assert row.disabled_by == "api-key:ck_abc"
    assert row.disabled_until is None
    assert row.incident_id == incident.id
    assert BreakerIncident.objects.count() == 1
    assert _alerts().count() == 1


@pytest.mark.django_db
def test_enable_on_a_closed_breaker_changes_nothing():
    # when
    result = svc.breaker_enable(reason=None, actor="user:ops")
    # then
    assert result.changed is False
    assert result.message == "already closed"
    assert _alerts().count() == 0


@pytest.mark.django_db
def test_enable_closes_resolves_and_queues_an_enable_alert(django_capture_on_commit_callbacks):
    # given
    incident = _trip_by_drift()
    enabled = _sample("costsim_cb_enabled_total", reason="manual")
    resolved = _sample("costsim_cb_incidents_total", severity="P1", resolved="true")
    # when
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        result = svc.breaker_enable(reason=None, actor="user:ops")
    # then
    assert result.changed is True
    assert result.message == "re-enabled"
    row = _row()
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
    alert = _alerts().get(payload__data__alert_type="enable")
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
    assert _sample("costsim_cb_enabled_total", reason="manual") == enabled + 1
    assert _sample("costsim_cb_incidents_total", severity="P1", resolved="true") == resolved + 1


@pytest.mark.django_db
def test_enable_reason_becomes_the_resolution_notes():
    # given
    incident = _trip_by_drift()
    # when
    svc.breaker_enable(reason="Pricing table fixed", actor="user:ops")
    # then
    incident.refresh_from_db()
    assert incident.resolution_notes == "Pricing table fixed"
    alert = _alerts().get(payload__data__alert_type="enable")
    description = alert.payload["data"]["alerts"][0]["annotations"]["description"]
    assert description.endswith("Reason: Pricing table fixed")


# Check and auto-recovery --------------------------------------------------------------


@pytest.mark.django_db
def test_check_auto_recovers_once_the_ttl_has_passed(django_capture_on_commit_callbacks):
    # given a trip at T0 with a 24 h TTL
    with time_machine.travel(T0, tick=False):
        incident = _trip_by_drift()
    recoveries = _sample("costsim_cb_auto_recovery_total")
    enabled = _sample("costsim_cb_enabled_total", reason="auto_recovery")
    # when
    with time_machine.travel(T0 + timedelta(hours=23, minutes=59), tick=False):
        before_ttl = svc.breaker_is_disabled()
    with (
        time_machine.travel(T0 + timedelta(hours=24), tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        at_ttl = svc.breaker_is_disabled()
    # then
    assert before_ttl is True
    assert at_ttl is False
    assert _row().disabled is False
    incident.refresh_from_db()
    assert incident.resolved_by == "system-auto-recover"
    assert incident.resolution_notes == "Auto-recovered after TTL expired"
    assert incident.resolved_at == T0 + timedelta(hours=24)
    alert = _alerts().get(payload__data__alert_type="enable")
    assert alert.payload["data"]["alerts"][0]["annotations"]["description"] == (
        "Re-enabled by: system-auto-recover\nReason: Auto-recovered after TTL expired"
    )
    assert _sample("costsim_cb_auto_recovery_total") == recoveries + 1
    assert _sample("costsim_cb_enabled_total", reason="auto_recovery") == enabled + 1


@pytest.mark.django_db
def test_auto_recovery_off_keeps_an_expired_breaker_open(settings):
    # given
    settings.COSTSIM_AUTO_RECOVER = False
    with time_machine.travel(T0, tick=False):
        _trip_by_drift()
    # when
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        disabled = svc.breaker_is_disabled()
    # then
    assert disabled is True
    assert _row().disabled is True


@pytest.mark.django_db
def test_zero_ttl_setting_makes_automatic_trips_manual_reset(settings):
    # given
    settings.COSTSIM_DISABLE_TTL_HOURS = 0
    # when
    _trip_by_drift()
    # then
    assert _row().disabled_until is None
    with time_machine.travel(timezone.now() + timedelta(days=30), tick=False):
        assert svc.breaker_is_disabled() is True


@pytest.mark.django_db
def test_auto_recover_does_not_repeat_a_close_made_meanwhile():
    # given an expired breaker that someone else closes first
    with time_machine.travel(T0, tick=False):
        _trip_by_drift()
    svc.breaker_enable(reason="by hand", actor="user:ops")
    # when the recovery of a process that saw the old row runs
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        result = svc.breaker_auto_recover()
    # then
    assert result is None
    assert _alerts().filter(payload__data__alert_type="enable").count() == 1


@pytest.mark.django_db
def test_missing_breaker_row_is_recreated_closed():
    # given a flushed table (transactional tests truncate it)
    CircuitBreaker.objects.all().delete()
    # when
    disabled = svc.breaker_is_disabled()
    # then
    assert disabled is False
    assert CircuitBreaker.objects.filter(name=BREAKER_NAME).count() == 1


# Incidents ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_incident_resolve_leaves_the_open_breakers_incident_alone():
    # given an old unresolved incident and the open breaker's own one
    old = BreakerIncidentFactory(created_at=T0)
    current = _trip_by_drift()
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


# Concurrency and restarts -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_drift_reports_create_exactly_one_incident():
    # given
    svc.breaker_get()
    barrier = threading.Barrier(20)
    incidents = []
    errors = []

    def report():
        try:
            barrier.wait(timeout=10)
            incident = _drift(0.9)
            if incident is not None:
                incidents.append(incident.id)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=report) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    # then
    assert errors == []
    assert len(incidents) == 1
    assert BreakerIncident.objects.count() == 1
    assert _alerts().count() == 1
    row = _row()
    assert row.disabled is True
    assert row.incident_id == incidents[0]
    # the three reports that led to the trip counted; the other 17 found it open
    assert row.consecutive_failures == 3


_CHECK_SCRIPT = """
import datetime, os, sys
import django
django.setup()
import time_machine
from costsim.services.breaker import breaker_is_disabled
for moment in sys.argv[1:]:
    with time_machine.travel(datetime.datetime.fromisoformat(moment), tick=False):
        print("disabled" if breaker_is_disabled() else "enabled")
"""


def _check_in_new_process(*moments) -> list[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.test_settings",
        # Also right for the embedded server, whose host is a Unix socket directory.
        "DATABASE_URL": database_url_from_settings(connection.settings_dict),
        "COSTSIM_AUTO_RECOVER": "true",
        "COSTSIM_DISABLE_TTL_HOURS": "24",
    }
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_SCRIPT, *(m.isoformat() for m in moments)],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.django_db(transaction=True)
def test_ttl_auto_recovery_survives_a_process_restart():
    # given a trip committed by this process, which then goes away
    incident = _trip_by_drift()
    opened_at = _row().opened_at
    connection.close()

    # when a fresh process checks the breaker before and after the TTL
    checks = _check_in_new_process(
        opened_at + timedelta(hours=1), opened_at + timedelta(hours=24, seconds=1)
    )

    # then the state came from the database, and the recovery was persisted there
    assert checks == ["disabled", "enabled"]
    row = _row()
    assert row.disabled is False
    incident.refresh_from_db()
    assert incident.resolved is True
    assert incident.resolved_by == "system-auto-recover"
    assert _alerts().filter(payload__data__alert_type="enable").count() == 1


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


# Scrape-time gauges -------------------------------------------------------------------


def _gauges() -> dict:
    values = {}
    for family in STATE_COLLECTOR.collect():
        for sample in family.samples:
            values[sample.name] = (sample.value, sample.labels)
    return values


@pytest.mark.django_db
def test_gauges_read_the_database_without_side_effects(settings):
    # given an automatic trip, one pending alert more, and an expired TTL
    with time_machine.travel(T0, tick=False):
        _trip_by_drift()
    AlertDeliveryFactory()
    # when
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        open_gauges = _gauges()
    with time_machine.travel(T0 + timedelta(hours=25), tick=False):
        expired_gauges = _gauges()
    # then
    assert open_gauges["costsim_v2_circuit_breaker_state"][0] == 1
    assert open_gauges["costsim_cb_consecutive_failures"][0] == 3
    assert open_gauges["costsim_cb_alert_queue_depth"][0] == 2
    assert open_gauges["costsim_v2_version_info"] == (
        1,
        {
            "model_version": settings.COSTSIM_MODEL_VERSION,
            "adapter_version": settings.COSTSIM_ADAPTER_VERSION,
        },
    )
    # no canary report yet: the distances are absent, not 0
    assert "costsim_v2_kl_divergence" not in open_gauges
    # past the TTL the gauge reads 0, but the scrape did not close the breaker
    assert expired_gauges["costsim_v2_circuit_breaker_state"][0] == 0
    assert _row().disabled is True


@pytest.mark.django_db
def test_metrics_endpoint_shows_the_breaker_state(client):
    # given
    _trip_by_drift()
    # when
    body = client.get("/metrics").content.decode()
    # then
    assert "costsim_v2_circuit_breaker_state 1.0" in body
    assert "costsim_cb_consecutive_failures 3.0" in body
    assert "costsim_cb_alert_queue_depth 1.0" in body
    assert body.count("# TYPE costsim_v2_circuit_breaker_state gauge") == 1


@pytest.mark.django_db
def test_multiprocess_metrics_include_the_state_gauges(client, monkeypatch, tmp_path):
    # given a multiprocess deployment whose shared directory holds nothing yet
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    svc.breaker_disable(reason="maintenance", actor="user:ops")
    # when
    body = client.get("/metrics").content.decode()
    # then
    assert body.count("# TYPE costsim_v2_circuit_breaker_state gauge") == 1
    assert "costsim_v2_circuit_breaker_state 1.0" in body
    assert "costsim_v2_version_info{" in body


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
    _trip_by_drift()
    # when
    response = staff_key_client.post(
        "/api/v1/costsim/breaker/enable/", {"reason": "x" * 501}, format="json"
    )
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == "reason"
    assert _row().disabled is True


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
