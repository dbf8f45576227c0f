"""factory_boy factories for the safety-net models: incidents, Alertmanager alerts (rows of
the notifications outbox), canary reports.

Provenance rows come from tests/costsim/factories.py.
"""

import factory
from django.utils import timezone

from costsim.models import (
    BREAKER_NAME,
    BreakerIncident,
    CanaryReport,
    CanaryStatus,
    IncidentSeverity,
    IncidentTrigger,
)
from notifications.models import Delivery, DeliveryStatus, EventType
from notifications.services.events import alertmanager_channel


class BreakerIncidentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BreakerIncident

    breaker_name = BREAKER_NAME
    created_at = factory.LazyFunction(timezone.now)
    reason = "Drift exceeded threshold: 0.2500 > 0.2"
    severity = IncidentSeverity.P1
    trigger = IncidentTrigger.DRIFT
    drift_score = 0.25
    sample_count = 1
    details = factory.LazyFunction(dict)


def _alert_payload(n: int) -> dict:
    return {
        "type": EventType.COSTSIM_BREAKER,
        "timestamp": "2026-03-02T10:00:00Z",
        "data": {
            "event": "tripped",
            "incident_id": None,
            "breaker": BREAKER_NAME,
            "alert_type": "disable",
            "alerts": [{"labels": {"alertname": "CostSimV2Disabled", "n": str(n)}}],
        },
    }


class AlertDeliveryFactory(factory.django.DjangoModelFactory):
    """A due pending Alertmanager alert on the project-wide channel; `data.alerts` is a
    minimal Alertmanager alert list."""

    class Meta:
        model = Delivery

    tenant = None
    channel = factory.LazyFunction(alertmanager_channel)
    event_key = factory.Sequence(lambda n: f"costsim.breaker:tripped:factory-{n}")
    event_type = EventType.COSTSIM_BREAKER
    severity = "CRITICAL"
    payload = factory.Sequence(_alert_payload)
    status = DeliveryStatus.PENDING
    max_attempts = 10
    created_at = factory.LazyFunction(timezone.now)
    event_at = factory.LazyAttribute(lambda o: o.created_at)
    next_attempt_at = factory.LazyAttribute(lambda o: o.created_at)


class CanaryReportFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CanaryReport

    run_id = factory.Sequence(lambda n: f"{n:012x}")
    timestamp = factory.LazyFunction(timezone.now)
    status = CanaryStatus.PASS
    total_samples = 4
    evaluated_samples = factory.SelfAttribute("total_samples")
    matching_samples = 4
    passed = factory.LazyAttribute(lambda o: o.status in (CanaryStatus.PASS, CanaryStatus.SKIPPED))
    sample_source = "synthetic"
    drift_threshold = 0.2
    kl_divergence = 0.0
    js_distance = 0.0
