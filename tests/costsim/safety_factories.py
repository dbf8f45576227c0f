"""factory_boy factories for the safety-net models: incidents, outbox rows, canary reports.

Provenance rows come from tests/costsim/factories.py.
"""

import factory
from django.utils import timezone

from costsim.models import (
    BREAKER_NAME,
    AlertOutbox,
    AlertStatus,
    AlertType,
    BreakerIncident,
    CanaryReport,
    CanaryStatus,
    IncidentSeverity,
    IncidentTrigger,
)


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


class AlertOutboxFactory(factory.django.DjangoModelFactory):
    """A due pending `disable` alert; the payload is a minimal Alertmanager alert."""

    class Meta:
        model = AlertOutbox

    payload = factory.Sequence(
        lambda n: [{"labels": {"alertname": "CostSimV2Disabled", "n": str(n)}, "annotations": {}}]
    )
    alert_type = AlertType.DISABLE
    breaker_name = BREAKER_NAME
    status = AlertStatus.PENDING
    max_attempts = 10
    created_at = factory.LazyFunction(timezone.now)
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
