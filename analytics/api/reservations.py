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
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.authentication import ApiKeyAuthentication
from analytics.api.permissions import request_tenant
from analytics.api.reservation_serializers import (
    ReservationSerializer,
    ReserveInputSerializer,
    ReserveResultSerializer,
    reserve_input,
)
from analytics.api.views import SchemaSafeMixin
from analytics.api.viewsets import TenantScopedMixin
from analytics.datetimes import format_datetime
from analytics.models import BudgetReservation
from analytics.selectors.reservations import reservation_list
from analytics.services.reservations import (
    KeyGenerationMoved,
    ReservationOutcome,
    budget_reserve,
    reservation_release,
)

MAX_ID = 2**63 - 1  # a bigint primary key; a larger id names no reservation
PLAN_PRICING_UNAVAILABLE = "plan pricing is not available on this server; send amount_cents"

# How a `plan` becomes cents: the authoritative estimator, which lives in costsim. analytics
# imports no other app, so costsim hands its pricer in when it loads (costsim/apps.py). The
# pricer raises DRF's ValidationError naming the step at fault (`plan[2].skill`).
PlanPricer = Callable[[Any], int]
_plan_pricer: PlanPricer | None = None


def register_plan_pricer(pricer: PlanPricer | None) -> None:
    global _plan_pricer
    _plan_pricer = pricer


class DeferredKeyCheckAuthentication(ApiKeyAuthentication):
    """ApiKeyAuthentication that leaves the key generation check of a cached key to the
    reserve or release statement, which makes it before it writes or answers anything
    (KeyGenerationMoved when the generation moved); the request saves a round trip. A key
    that had to be looked up was checked just now and is not checked again."""

    def defer_generation_check(self, request, generation: int | None) -> bool:
        if generation is None:
            return False
        request.key_generation = generation
        return True


# Its authenticator accepts exactly what ApiKeyAuthentication does; documenting it as that
# scheme keeps one "ApiKeyAuth" in the OpenAPI document.
_AUTHENTICATION = [DeferredKeyCheckAuthentication, SessionAuthentication]
_AUTH_SCHEMA = [{"ApiKeyAuth": []}, {"cookieAuth": []}]


def _checking_the_key(request, write: Callable[[int | None], Any]) -> Any:
    """`write(key_generation)`; when the key generation moved since this process cached
    the caller's key, look the key up again (AuthenticationFailed, a 401, when it is no
    longer usable) and write without the deferred check."""
    try:
        return write(getattr(request, "key_generation", None))
    except KeyGenerationMoved:
        request.user, request.auth = DeferredKeyCheckAuthentication().recheck(request)
        return write(None)


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
            ReservationViewSet.as_view(
                {"post": "release"},
                detail=True,
                authentication_classes=_AUTHENTICATION,
                **reservations,
            ),
            name="budget-reservation-release",
        ),
    ]


def _price(plan: Any) -> int:
    if _plan_pricer is None:
        raise exceptions.ValidationError({"plan": [PLAN_PRICING_UNAVAILABLE]})
    return _plan_pricer(plan)


# The two hot endpoints answer dicts built here rather than through their output
# serializers: constructing a DRF serializer deep-copies its fields on every request, which
# was a quarter of the server's CPU per reserve. The serializers remain the documented shape
# (the schema), and tests hold both to the same output.


def reserve_result(outcome: ReservationOutcome) -> dict:
    """The body of a reserve answer, as ReserveResultSerializer describes it."""
    reservation = outcome.reservation
    return {
        "allowed": outcome.allowed,
        "reservation_id": None if reservation is None else reservation.pk,
        "replayed": outcome.replayed,
        "amount_cents": outcome.amount_cents,
        "expires_at": None if reservation is None else format_datetime(reservation.expires_at),
        "budgets": [
            {
                "budget_id": check.budget_id,
                "budget_type": check.budget_type,
                "entity_id": check.entity_id,
                "period": check.period,
                "hard_limit_enabled": check.hard_limit_enabled,
                "warn_threshold_pct": check.warn_threshold_pct,
                "limit_cents": check.limit_cents,
                "spend_cents": check.spend_cents,
                "reserved_cents": check.reserved_cents,
                "remaining_cents": check.remaining_cents,
                "state": check.state,
                "reason": check.reason,
            }
            for check in outcome.checks
        ],
        "refused_by": [
            {"budget_id": check.budget_id, "period": check.period, "reason": check.reason}
            for check in outcome.refusals
        ],
    }


def reservation_result(reservation) -> dict:
    """The body of one reservation with its current status, as ReservationSerializer
    describes it."""
    return {
        "id": reservation.id,
        "amount_cents": reservation.amount_cents,
        "source": reservation.source,
        "feature_tag": reservation.feature_tag,
        "user_id": reservation.user_id,
        "request_id": reservation.request_id,
        "run_id": reservation.run_id,
        "status": reservation.current_status,
        "created_at": format_datetime(reservation.created_at),
        "expires_at": format_datetime(reservation.expires_at),
        "closed_at": format_datetime(reservation.closed_at),
    }


class ReserveView(APIView):
    """Reserve budget for a call or run about to start."""

    authentication_classes = _AUTHENTICATION

    @extend_schema(
        request=ReserveInputSerializer,
        responses={
            201: OpenApiResponse(ReserveResultSerializer, description="Allowed and reserved."),
            200: OpenApiResponse(
                ReserveResultSerializer,
                description="Refused by a hard budget (`refused_by` says which and why), "
                "nothing reserved; or a retry (`replayed`): the call's open reservation, "
                "held once.",
            ),
            409: OpenApiResponse(
                description="A retry whose amount or attribution differs from the call's "
                "open reservation (the field is named)."
            ),
        },
        auth=_AUTH_SCHEMA,
    )
    def post(self, request):
        """Check every budget the call falls in (tenant, feature, user; day and month) and,
        unless a hard one would go past its limit, hold `amount_cents` (or the plan's
        estimated cost) until the call's cost records arrive, a release, or the TTL. A
        retry of a call that holds an open reservation answers that one."""
        data = reserve_input(request.data)
        if data.get("plan") is not None:
            amount = _price(data["plan"])
            source = BudgetReservation.Source.PLAN
        else:
            amount = data["amount_cents"]
            source = BudgetReservation.Source.AMOUNT
        tenant = request_tenant(request)
        outcome = _checking_the_key(
            request,
            lambda key_generation: budget_reserve(
                tenant=tenant,
                amount_cents=amount,
                ttl_seconds=data["ttl_seconds"],
                feature_tag=data.get("feature_tag"),
                user_id=data.get("user_id"),
                request_id=data.get("request_id"),
                run_id=data.get("run_id"),
                source=source,
                key_generation=key_generation,
            ),
        )
        return Response(
            reserve_result(outcome),
            status=status.HTTP_201_CREATED
            if outcome.allowed and not outcome.replayed
            else status.HTTP_200_OK,
        )


class ReservationViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The tenant's reservations, newest first, with the status each is in now."""

    schema_model = BudgetReservation
    serializer_class = ReservationSerializer
    ordering = ("-created_at", "-id")

    def get_tenant_queryset(self, tenant):
        return reservation_list(tenant=tenant, at=timezone.now())

    @extend_schema(request=None, responses=ReservationSerializer, auth=_AUTH_SCHEMA)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        """Hand the reservation's budget back. One whose call already has cost records
        becomes settled instead, one past its TTL expired; releasing again changes nothing."""
        released = None
        if int(pk) <= MAX_ID:
            released = _checking_the_key(
                request,
                lambda key_generation: reservation_release(
                    tenant=request_tenant(request),
                    reservation_id=int(pk),
                    key_generation=key_generation,
                ),
            )
        if released is None:
            raise exceptions.NotFound()
        return Response(reservation_result(released))
