"""Concurrent drift reports trip the breaker once."""

import threading

import pytest
from django.db import connection

from costsim.models import BreakerIncident
from costsim.services import breaker as svc
from tests.costsim.breaker_support import (
    breaker_alerts,
    breaker_defaults,  # noqa: F401 (autouse fixture)
    breaker_row,
    report_drift,
)

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
            incident = report_drift(0.9)
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
    assert breaker_alerts().count() == 1
    row = breaker_row()
    assert row.disabled is True
    assert row.incident_id == incidents[0]
    # the three reports that led to the trip counted; the other 17 found it open
    assert row.consecutive_failures == 3
