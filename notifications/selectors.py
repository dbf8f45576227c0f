"""Reads of notification channels, rules and deliveries, always one tenant's."""

from datetime import UTC, date, datetime

from django.db.models import QuerySet
from django.db.models.functions import TruncDate

from analytics.models import Tenant
from notifications.models import Channel, Delivery, DeliveryStatus, Rule


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
