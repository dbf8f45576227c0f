"""factory_boy factories for analytics models beyond the base ones in tests/factories.py."""

from datetime import date, timedelta

import factory
from django.utils import timezone

from analytics.models import (
    Anomaly,
    AnomalyType,
    BreachHistory,
    CostSnapshot,
    EntityType,
    Severity,
    SnapshotAggregate,
    SnapshotStatus,
    SnapshotType,
)
from tests.factories import TenantFactory


class AnomalyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Anomaly

    tenant = factory.SubFactory(TenantFactory)
    anomaly_type = AnomalyType.ABSOLUTE_SPIKE
    severity = Severity.HIGH
    entity_type = EntityType.TENANT
    entity_id = None
    # distinct days keep batches clear of the natural key
    anomaly_date = factory.Sequence(lambda n: date(2026, 1, 1) + timedelta(days=n))
    current_value_cents = 150.0
    expected_value_cents = 100.0
    deviation_pct = 50.0
    threshold_pct = 140.0
    message = factory.LazyAttribute(
        lambda o: f"Tenant spending {o.deviation_pct:.1f}% above baseline for 2 consecutive days"
    )
    breach_count = 2
    detected_at = factory.LazyFunction(timezone.now)
    last_detected_at = factory.LazyAttribute(lambda o: o.detected_at)


class BreachHistoryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BreachHistory

    tenant = factory.SubFactory(TenantFactory)
    entity_type = EntityType.TENANT
    entity_id = None
    breach_type = AnomalyType.ABSOLUTE_SPIKE
    breach_date = factory.LazyFunction(date.today)
    deviation_pct = 50.0
    current_value_cents = 150.0
    baseline_value_cents = 100.0


class CostSnapshotFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CostSnapshot

    tenant = factory.SubFactory(TenantFactory)
    snapshot_type = SnapshotType.HOURLY
    period_start = factory.LazyFunction(
        lambda: timezone.now().replace(minute=0, second=0, microsecond=0)
    )
    period_end = factory.LazyAttribute(
        lambda o: o.period_start + CostSnapshot.period_length(o.snapshot_type)
    )
    status = SnapshotStatus.COMPLETE
    completed_at = factory.LazyFunction(timezone.now)


class SnapshotAggregateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SnapshotAggregate

    snapshot = factory.SubFactory(CostSnapshotFactory)
    tenant = factory.LazyAttribute(lambda o: o.snapshot.tenant)
    entity_type = EntityType.TENANT
    entity_id = None
    total_cost_cents = 10
    request_count = 1
    total_input_tokens = 100
    total_output_tokens = 50
    avg_cost_per_request_cents = factory.LazyAttribute(
        lambda o: float(o.total_cost_cents) / o.request_count
    )
    avg_tokens_per_request = 150.0
