"""factory_boy factories for analytics models beyond the base ones in tests/factories.py."""

from datetime import date, timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from analytics.models import (
    Anomaly,
    AnomalyType,
    BreachHistory,
    CostSnapshot,
    EntityType,
    Incident,
    IncidentKind,
    PlannedActivity,
    Severity,
    SnapshotAggregate,
    SnapshotStatus,
    SnapshotType,
)
from tests.factories import CostRecordFactory, TenantFactory, utc


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


class IncidentFactory(factory.django.DjangoModelFactory):
    """A two-day tenant spike; give member anomalies `incident=` to attach them."""

    class Meta:
        model = Incident

    tenant = factory.SubFactory(TenantFactory)
    kind = IncidentKind.SPIKE
    severity = Severity.HIGH
    entity_type = EntityType.TENANT
    entity_id = None
    # distinct windows keep a batch's ordering predictable
    started_on = factory.Sequence(lambda n: date(2026, 1, 1) + timedelta(days=2 * n))
    last_seen_on = factory.LazyAttribute(lambda o: o.started_on + timedelta(days=1))
    expected_cents = 20000.0
    actual_cents = 30000.0
    impact_cents = factory.LazyAttribute(lambda o: o.actual_cents - o.expected_cents)
    impact_pct = factory.LazyAttribute(lambda o: 100 * o.impact_cents / o.expected_cents)
    title = factory.LazyAttribute(
        lambda o: f"Spike: Tenant spent {o.impact_cents / 100:.2f} more than expected"
    )
    root_causes = factory.LazyFunction(list)
    opened_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyAttribute(lambda o: o.opened_at)


class PlannedActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PlannedActivity

    tenant = factory.SubFactory(TenantFactory)
    starts_on = date(2026, 3, 1)
    ends_on = date(2026, 3, 7)
    entity_type = EntityType.TENANT
    entity_id = None
    expected_factor = 2.0
    note = "launch week"


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


def outlier_history(tenant, spike_day: date, *, days: int = 35, factor: float = 3.0) -> None:
    """`days` of about 10,000 ¢ a day (deterministic ±1 % noise), then `factor`× on spike_day.

    Detection as of the day after raises a STATISTICAL_OUTLIER and opens an outlier incident
    for the tenant, with its model and user as root causes.
    """
    first = spike_day - timedelta(days=days)
    for offset in range(days + 1):
        day = first + timedelta(days=offset)
        cents = 10000 * factor if day == spike_day else 10000 + (offset * 37) % 200 - 100
        CostRecordFactory(
            tenant=tenant,
            created_at=utc(day.year, day.month, day.day, 9),
            cost_cents=Decimal(str(cents)),
            user_id="u1",
        )


def user_spike_incident(tenant, start: date = date(2026, 3, 10)) -> Incident:
    """User u1's steady $10 a day jumps to $50 on `start` and the day after: the incident.

    Records run from 70 days before `start` to 5 days after; the incident has u1 as its
    root cause and two member anomalies.
    """
    for offset in range(-70, 6):
        day = start + timedelta(days=offset)
        CostRecordFactory(
            tenant=tenant,
            created_at=utc(day.year, day.month, day.day, 9),
            cost_cents=Decimal(5000 if offset in (0, 1) else 1000),
            user_id="u1",
        )
    incident = IncidentFactory(
        tenant=tenant,
        entity_type=EntityType.USER,
        entity_id="u1",
        started_on=start,
        last_seen_on=start + timedelta(days=1),
        expected_cents=2000.0,
        actual_cents=10000.0,
        title=f"User u1 spend +400% from {start} to {start + timedelta(days=1)}",
        root_causes=[
            {
                "entity_type": "user",
                "entity_id": "u1",
                "expected_cents": 2000.0,
                "actual_cents": 10000.0,
                "delta_cents": 8000.0,
                "share": 1.0,
            }
        ],
    )
    AnomalyFactory.create_batch(
        2, tenant=tenant, incident=incident, entity_type=EntityType.USER, entity_id="u1"
    )
    return incident
