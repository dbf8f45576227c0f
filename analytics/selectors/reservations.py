"""Reads of budget reservations, with the state each one is in now.

The stored `status` lags: a reservation stays `open` in the table until the expiry job or a
release writes what happened. `current_status` is what reads go by: `settled` as soon as a
cost record carries its request_id or run_id (one created within a day of the reservation's
life, RESERVATION_RECORDS_WINDOW), `expired` once its TTL has passed.
"""

from datetime import datetime

from django.db.models import Case, Exists, F, OuterRef, Q, QuerySet, Value, When

from analytics.models import BudgetReservation, CostRecord, Tenant
from analytics.selectors.budgets import RESERVATION_RECORDS_MARGIN

Status = BudgetReservation.Status


def _has_records() -> Q:
    # The records of the reservation's call created around its life, as
    # RESERVATION_RECORDS_WINDOW bounds them for the SQL reads.
    records = CostRecord.objects.filter(
        tenant_id=OuterRef("tenant_id"),
        created_at__gte=OuterRef("created_at") - RESERVATION_RECORDS_MARGIN,
        created_at__lt=OuterRef("expires_at") + RESERVATION_RECORDS_MARGIN,
    )
    return Q(Exists(records.filter(request_id=OuterRef("request_id")))) | Q(
        Exists(records.filter(run_id=OuterRef("run_id")))
    )


def with_current_status(queryset: QuerySet, *, at: datetime) -> QuerySet:
    """Annotate `current_status`: the stored status, or what an open one has become at `at`."""
    return queryset.annotate(
        current_status=Case(
            When(Q(status=Status.OPEN) & _has_records(), then=Value(Status.SETTLED.value)),
            When(status=Status.OPEN, expires_at__lte=at, then=Value(Status.EXPIRED.value)),
            default=F("status"),
        )
    )


def reservation_list(*, tenant: Tenant, at: datetime) -> QuerySet[BudgetReservation]:
    """The tenant's reservations, newest first, each with its `current_status`."""
    return with_current_status(BudgetReservation.objects.filter(tenant=tenant), at=at)


def reservations_holding(*, at: datetime) -> QuerySet[BudgetReservation]:
    """Every tenant's reservations that hold budget at `at`: open, unexpired, unsettled."""
    return (
        BudgetReservation.objects.filter(status=Status.OPEN, expires_at__gt=at)
        .exclude(_has_records())
        .select_related("tenant")
    )
