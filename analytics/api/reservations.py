"""Budget reservations: reserve before a call, list, read and release.

`POST /budgets/reserve/` and `/budgets/reservations/...` are plain paths listed ahead of the
router, whose `budgets/{id}/` route would otherwise take `reserve` and `reservations` for
budget ids.
"""

from collections.abc import Callable
from typing import Any

from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.permissions import request_tenant
from analytics.api.reservation_serializers import (
    ReservationSerializer,
    ReserveInputSerializer,
    ReserveResultSerializer,
)
from analytics.api.views import SchemaSafeMixin, validated
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import BudgetReservation
from analytics.selectors.reservations import reservation_list, with_current_status
from analytics.services.reservations import ReservationOutcome, budget_reserve, reservation_release

PLAN_PRICING_UNAVAILABLE = "plan pricing is not available on this server; send amount_cents"

# How a `plan` becomes cents: the authoritative estimator, which lives in costsim. analytics
# imports no other app, so costsim hands its pricer in when it loads (costsim/apps.py). The
# pricer raises DRF's ValidationError naming the step at fault (`plan[2].skill`).
PlanPricer = Callable[[Any], int]
_plan_pricer: PlanPricer | None = None


def register_plan_pricer(pricer: PlanPricer | None) -> None:
    global _plan_pricer
    _plan_pricer = pricer


def register(router) -> list:
    reservations = {"basename": "budget-reservation"}
    return [
        path("budgets/reserve/", ReserveView.as_view(), name="budget-reserve"),
        path(
            "budgets/reservations/",
            ReservationViewSet.as_view({"get": "list"}, detail=False, **reservations),
            name="budget-reservation-list",
        ),
        path(
            "budgets/reservations/<int:pk>/",
            ReservationViewSet.as_view({"get": "retrieve"}, detail=True, **reservations),
            name="budget-reservation-detail",
        ),
        path(
            "budgets/reservations/<int:pk>/release/",
            ReservationViewSet.as_view({"post": "release"}, detail=True, **reservations),
            name="budget-reservation-release",
        ),
    ]


def _price(plan: Any) -> int:
    if _plan_pricer is None:
        raise exceptions.ValidationError({"plan": [PLAN_PRICING_UNAVAILABLE]})
    return _plan_pricer(plan)


def reserve_result(outcome: ReservationOutcome) -> dict:
    reservation = outcome.reservation
    return {
        "allowed": outcome.allowed,
        "reservation_id": None if reservation is None else reservation.pk,
        "amount_cents": outcome.amount_cents,
        "expires_at": None if reservation is None else reservation.expires_at,
        "budgets": outcome.checks,
        "refused_by": [
            {"budget_id": check.budget_id, "period": check.period, "reason": check.reason}
            for check in outcome.refusals
        ],
    }


class ReserveView(APIView):
    """Reserve budget for a call or run about to start."""

    @extend_schema(
        request=ReserveInputSerializer,
        responses={
            201: OpenApiResponse(ReserveResultSerializer, description="Allowed and reserved."),
            200: OpenApiResponse(
                ReserveResultSerializer,
                description="Refused by a hard budget (`refused_by` says which and why); "
                "nothing was reserved.",
            ),
        },
    )
    def post(self, request):
        """Check every budget the call falls in (tenant, feature, user; day and month) and,
        unless a hard one would go past its limit, hold `amount_cents` (or the plan's
        estimated cost) until the call's cost records arrive, a release, or the TTL."""
        data = validated(ReserveInputSerializer, request.data)
        if data.get("plan") is not None:
            amount = _price(data["plan"])
            source = BudgetReservation.Source.PLAN
        else:
            amount = data["amount_cents"]
            source = BudgetReservation.Source.AMOUNT
        outcome = budget_reserve(
            tenant=request_tenant(request),
            amount_cents=amount,
            ttl_seconds=data["ttl_seconds"],
            feature_tag=data.get("feature_tag"),
            user_id=data.get("user_id"),
            request_id=data.get("request_id"),
            run_id=data.get("run_id"),
            source=source,
        )
        return Response(
            ReserveResultSerializer(reserve_result(outcome)).data,
            status=status.HTTP_201_CREATED if outcome.allowed else status.HTTP_200_OK,
        )


class ReservationViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The tenant's reservations, newest first, with the status each is in now."""

    schema_model = BudgetReservation
    serializer_class = ReservationSerializer
    ordering = ("-created_at", "-id")

    def get_tenant_queryset(self, tenant):
        return reservation_list(tenant=tenant, at=timezone.now())

    @extend_schema(request=None, responses=ReservationSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Hand the reservation's budget back. One whose call already has cost records
        becomes settled instead, one past its TTL expired; releasing again changes nothing."""
        reservation = reservation_release(reservation=self.get_object())
        current = with_current_status(
            BudgetReservation.objects.filter(pk=reservation.pk), at=timezone.now()
        ).get()
        return Response(ReservationSerializer(current).data)
