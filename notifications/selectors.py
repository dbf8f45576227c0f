"""Reads of notification channels, rules and deliveries, always one tenant's."""

from datetime import UTC, date, datetime

from django.db.models import Count, Min, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from analytics.models import Tenant
from notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    EventType,
    Rule,
    breaker_key,
)


def channel_list(*, tenant: Tenant) -> QuerySet[Channel]:
    return Channel.objects.filter(tenant=tenant)


def rule_list(*, tenant: Tenant) -> QuerySet[Rule]:
    return Rule.objects.filter(tenant=tenant)


def delivery_list(*, tenant: Tenant, filters: dict | None = None) -> QuerySet[Delivery]:
    queryset = Delivery.objects.filter(tenant=tenant)
    filters = filters or {}
    for field in ("status", "event_type", "channel"):
        if filters.get(field) is not None:
            queryset = queryset.filter(**{field: filters[field]})
    return queryset


def held_days_before(*, day: date) -> list[date]:
    """UTC days before `day` that still have deliveries held for a digest."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return list(
        Delivery.objects.filter(status=DeliveryStatus.HELD, event_at__lt=start)
        .annotate(day=TruncDate("event_at", tzinfo=UTC))
        .values_list("day", flat=True)
        .distinct()
        .order_by("day")
    )


def breaker_deliveries(*, incident_id: str | None = None) -> QuerySet[Delivery]:
    """Deliveries of CostSim breaker events (Alertmanager and the project channels), newest
    first; with `incident_id`, only its trip and its recovery."""
    queryset = Delivery.objects.filter(event_type=EventType.COSTSIM_BREAKER)
    if incident_id is not None:
        queryset = queryset.filter(
            event_key__in=[breaker_key(event, incident_id) for event in ("tripped", "recovered")]
        )
    return queryset.select_related("channel").order_by("-created_at", "-id")


def outbox_stats(*, kind: str | None = None, now: datetime | None = None) -> dict:
    """Counts of the outbox by status, `due` (pending and due now) and the creation time of
    the oldest pending row, in one query; `kind` narrows to one channel kind."""
    now = now or timezone.now()
    queryset = Delivery.objects.all()
    if kind is not None:
        queryset = queryset.filter(channel__kind=kind)
    pending = Q(status=DeliveryStatus.PENDING)
    counts = {status: Count("id", filter=Q(status=status)) for status in DeliveryStatus.values}
    return queryset.aggregate(
        **counts,
        due=Count("id", filter=pending & Q(next_attempt_at__lte=now)),
        oldest_pending_at=Min("created_at", filter=pending),
    )


def recent_failures(*, kind: str | None = None, limit: int = 10) -> list[Delivery]:
    """The latest failed attempts still on record (failed rows and pending retries)."""
    queryset = Delivery.objects.exclude(last_error="").filter(
        status__in=[DeliveryStatus.FAILED, DeliveryStatus.PENDING]
    )
    if kind is not None:
        queryset = queryset.filter(channel__kind=kind)
    return list(queryset.select_related("channel").order_by("-last_attempt_at", "-id")[:limit])
