"""Breaker reports that cannot change anything: one unlocked read, or none."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from costsim.selectors import BreakerSnapshot
from costsim.services import breaker as svc
from tests.costsim.breaker_support import (
    T0,
    breaker_defaults,  # noqa: F401 (autouse fixture)
    breaker_row,
    metric_sample,
    report_drift,
    trip_by_drift,
)

# Reports that cannot change anything --------------------------------------------------


def _locking(queries) -> list[str]:
    return [q["sql"] for q in queries if "FOR UPDATE" in q["sql"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "report",
    [
        lambda: report_drift(0.2),
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
    before = breaker_row().updated_at
    # when
    with CaptureQueriesContext(connection) as queries:
        report()
    # then
    assert len(queries) == 1
    assert _locking(queries) == []
    assert breaker_row().updated_at == before


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
    report_drift(0.25)
    svc.breaker_report_schema_error(details={})
    seen = svc.breaker_check()
    # when
    with CaptureQueriesContext(connection) as queries:
        svc.breaker_report_success(seen=seen)
        svc.breaker_report_drift(score=0.1, sample_count=1, details={}, seen=seen)
    # then
    assert len(_locking(queries)) == 2
    row = breaker_row()
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
    assert breaker_row().consecutive_failures == 1


@pytest.mark.django_db
def test_a_drift_on_an_open_breaker_is_counted_without_a_lock(django_capture_on_commit_callbacks):
    # given
    trip_by_drift()
    counted = metric_sample("costsim_cb_reports_while_open_total", source="canary")
    # when
    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks(execute=True),
    ):
        result = report_drift(0.9, source="canary")
    # then
    assert result is None
    assert _locking(queries) == []
    assert metric_sample("costsim_cb_reports_while_open_total", source="canary") == counted + 1


@pytest.mark.django_db
def test_check_returns_the_state_after_an_auto_recovery():
    # given a trip at T0 with a 24 h TTL, and a schema-error streak before it
    with time_machine.travel(T0, tick=False):
        svc.breaker_report_schema_error(details={})
        trip_by_drift()
    # when
    with time_machine.travel(T0 + timedelta(hours=25), tick=False):
        seen = svc.breaker_check()
    # then
    assert seen == BreakerSnapshot(
        disabled=False, disabled_until=None, consecutive_failures=0, consecutive_schema_errors=0
    )
    assert breaker_row().disabled is False
