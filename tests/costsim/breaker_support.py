"""Shared helpers of the circuit breaker tests."""

import pytest
from prometheus_client import REGISTRY

from costsim.models import BREAKER_NAME, CircuitBreaker
from costsim.services import breaker as svc
from notifications.models import Delivery
from tests.factories import utc

T0 = utc(2026, 3, 2, 10)


def breaker_alerts():
    """The breaker's Alertmanager alerts: deliveries of the notifications outbox."""
    return Delivery.objects.filter(channel__kind="alertmanager")


def breaker_row() -> CircuitBreaker:
    return CircuitBreaker.objects.select_related("incident").get(name=BREAKER_NAME)


def metric_sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def report_drift(score: float, source: str = "sandbox"):
    return svc.breaker_report_drift(
        score=score, sample_count=1, details={"source": source}, source=source
    )


def trip_by_drift(score: float = 0.25):
    report_drift(score)
    report_drift(score)
    return report_drift(score)


@pytest.fixture(autouse=True)
def breaker_defaults(settings):
    """The breaker settings every breaker test assumes, whatever the environment says."""
    settings.COSTSIM_DRIFT_THRESHOLD = 0.2
    settings.COSTSIM_FAILURE_THRESHOLD = 3
    settings.COSTSIM_SCHEMA_ERROR_THRESHOLD = 5
    settings.COSTSIM_AUTO_RECOVER = True
    settings.COSTSIM_DISABLE_TTL_HOURS = 24
    settings.INSTANCE_ID = "test-host"
    settings.COSTSIM_RUNBOOK_URL = ""
