"""The breaker check and its automatic recovery once the TTL has passed, across processes too."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from config.database import database_url_from_settings
from costsim.models import BREAKER_NAME, CircuitBreaker
from costsim.services import breaker as svc
from tests.costsim.breaker_support import (
    T0,
    breaker_alerts,
    breaker_defaults,  # noqa: F401 (autouse fixture)
    breaker_row,
    metric_sample,
    trip_by_drift,
)

PROJECT_DIR = Path(__file__).resolve().parents[2]


# Check and auto-recovery --------------------------------------------------------------


@pytest.mark.django_db
def test_check_auto_recovers_once_the_ttl_has_passed(django_capture_on_commit_callbacks):
    # given a trip at T0 with a 24 h TTL
    with time_machine.travel(T0, tick=False):
        incident = trip_by_drift()
    recoveries = metric_sample("costsim_cb_auto_recovery_total")
    enabled = metric_sample("costsim_cb_enabled_total", reason="auto_recovery")
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
    assert breaker_row().disabled is False
    incident.refresh_from_db()
    assert incident.resolved_by == "system-auto-recover"
    assert incident.resolution_notes == "Auto-recovered after TTL expired"
    assert incident.resolved_at == T0 + timedelta(hours=24)
    alert = breaker_alerts().get(payload__data__alert_type="enable")
    assert alert.payload["data"]["alerts"][0]["annotations"]["description"] == (
        "Re-enabled by: system-auto-recover\nReason: Auto-recovered after TTL expired"
    )
    assert metric_sample("costsim_cb_auto_recovery_total") == recoveries + 1
    assert metric_sample("costsim_cb_enabled_total", reason="auto_recovery") == enabled + 1


@pytest.mark.django_db
def test_auto_recovery_off_keeps_an_expired_breaker_open(settings):
    # given
    settings.COSTSIM_AUTO_RECOVER = False
    with time_machine.travel(T0, tick=False):
        trip_by_drift()
    # when
    with time_machine.travel(T0 + timedelta(days=3), tick=False):
        disabled = svc.breaker_is_disabled()
    # then
    assert disabled is True
    assert breaker_row().disabled is True


@pytest.mark.django_db
def test_zero_ttl_setting_makes_automatic_trips_manual_reset(settings):
    # given
    settings.COSTSIM_DISABLE_TTL_HOURS = 0
    # when
    trip_by_drift()
    # then
    assert breaker_row().disabled_until is None
    with time_machine.travel(timezone.now() + timedelta(days=30), tick=False):
        assert svc.breaker_is_disabled() is True


@pytest.mark.django_db
def test_auto_recover_does_not_repeat_a_close_made_meanwhile():
    # given an expired breaker that someone else closes first
    with time_machine.travel(T0, tick=False):
        trip_by_drift()
    svc.breaker_enable(reason="by hand", actor="user:ops")
    # when the recovery of a process that saw the old row runs
    with time_machine.travel(T0 + timedelta(days=2), tick=False):
        result = svc.breaker_auto_recover()
    # then
    assert result is None
    assert breaker_alerts().filter(payload__data__alert_type="enable").count() == 1


@pytest.mark.django_db
def test_missing_breaker_row_is_recreated_closed():
    # given a flushed table (transactional tests truncate it)
    CircuitBreaker.objects.all().delete()
    # when
    disabled = svc.breaker_is_disabled()
    # then
    assert disabled is False
    assert CircuitBreaker.objects.filter(name=BREAKER_NAME).count() == 1


# Process restarts ---------------------------------------------------------------------


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
    incident = trip_by_drift()
    opened_at = breaker_row().opened_at
    connection.close()

    # when a fresh process checks the breaker before and after the TTL
    checks = _check_in_new_process(
        opened_at + timedelta(hours=1), opened_at + timedelta(hours=24, seconds=1)
    )

    # then the state came from the database, and the recovery was persisted there
    assert checks == ["disabled", "enabled"]
    row = breaker_row()
    assert row.disabled is False
    incident.refresh_from_db()
    assert incident.resolved is True
    assert incident.resolved_by == "system-auto-recover"
    assert breaker_alerts().filter(payload__data__alert_type="enable").count() == 1
