"""Simulation, status and provenance endpoints."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.authentication import ApiKeyAuthentication
from analytics.api.fields import format_datetime
from analytics.api.permissions import IsAuthenticatedCaller, request_tenant
from analytics.api.views import query_filters
from analytics.api.viewsets import TenantScopedMixin
from costsim.api.serializers import (
    DriftStatsFilterSerializer,
    DriftStatsSerializer,
    ProvenanceFilterSerializer,
    ProvenanceRowSerializer,
    SimulationBodySerializer,
    SimulationResultSerializer,
    SimulationStatusSerializer,
    SimulationV2ResultSerializer,
    V1ResultSerializer,
    parse_simulation_body,
)
from costsim.selectors import provenance_drift_stats, provenance_list
from costsim.services import breaker
from costsim.services.sandbox import (
    KeyGenerationChanged,
    generation_and_breaker_read,
    simulate,
    simulate_v1,
    simulate_v2_explicit,
)

# A research agent's plan: fetch, summarise twice, extract, store. Every skill is one the
# estimators price, and the allowlist covers them, so the example is feasible.
PLAN_EXAMPLE = OpenApiExample(
    "Research agent plan",
    value={
        "plan": [
            {
                "skill": "http_call",
                "params": {"url": "https://api.example.com/search?q=gpu+pricing", "timeout": 10},
            },
            {
                "skill": "llm_invoke",
                "params": {"prompt": "Summarise the search results in five bullet points."},
                "iterations": 2,
            },
            {"skill": "json_transform", "params": {"query": "$.summary"}},
            {"skill": "kv_set", "params": {"key": "report:gpu-pricing"}},
        ],
        "budget_cents": 500,
        "allowed_skills": ["http_call", "llm_invoke", "json_transform", "kv_set"],
        "run_id": "run-2026-03-10-0042",
    },
    request_only=True,
)
_SIMULATION_SCHEMA = {
    "request": SimulationBodySerializer,
    "examples": [PLAN_EXAMPLE],
}


class _SimulationView(APIView):
    """The simulate endpoints. A revoked key is refused from the next request on, as on
    every endpoint (analytics.api.authentication checks the key generation per request)."""


class ShadowedSimulationAuthentication(ApiKeyAuthentication):
    """ApiKeyAuthentication that leaves the key generation check to the simulation when it
    can make it in a statement of its own, or reads the breaker with it.

    A shadowed simulation needs both, so the request makes one round trip for them instead
    of two. When the sandbox is on and this process last saw the breaker steady, a cached
    key's generation is not read here at all: `simulate` checks it in the statement that
    writes the provenance row (`request.key_generation` carries the value to check), and the
    view checks the key again when it moved. Otherwise the breaker row is read in the
    statement checking the generation and left on the request as `breaker_seen`. There is
    no such reading when the key had to be looked up; the sandbox then reads the breaker
    itself.
    """

    def defer_generation_check(self, request, generation: int | None) -> bool:
        if generation is None or not settings.COSTSIM_V2_SANDBOX:
            return False
        if not breaker.breaker_probably_steady():
            return False
        request.key_generation = generation
        return True

    def read_generation(self, cursor, request) -> int | None:
        read = generation_and_breaker_read()
        if read is None:
            # No breaker row yet: the sandbox's own check creates it.
            request.breaker_seen = None
            return super().read_generation(cursor, request)
        generation, request.breaker_seen = read
        return generation


class SimulateView(_SimulationView):
    """V1 answers; V2 runs in shadow when the sandbox is on and the breaker closed."""

    authentication_classes = [ShadowedSimulationAuthentication, SessionAuthentication]

    # Its authenticator reads more but accepts exactly what ApiKeyAuthentication does;
    # documenting it as that scheme keeps one "ApiKeyAuth" in the OpenAPI document.
    @extend_schema(
        **_SIMULATION_SCHEMA,
        responses=SimulationResultSerializer,
        auth=[{"ApiKeyAuth": []}, {"cookieAuth": []}],
    )
    def post(self, request: Request) -> Response:
        body = parse_simulation_body(request.data)
        arguments = {
            "plan": body.plan,
            "budget_cents": body.budget_cents,
            "allowed_skills": body.allowed_skills,
            "run_id": body.run_id,
            "raw_plan": body.raw_plan,
        }
        try:
            result = simulate(
                tenant=request_tenant(request),
                breaker_seen=getattr(request, "breaker_seen", None),
                key_generation=getattr(request, "key_generation", None),
                **arguments,
            )
        except KeyGenerationChanged:
            # A key or tenant changed since this process cached the caller's key: look it
            # up again (AuthenticationFailed, a 401, when it is no longer usable).
            request.user, request.auth = ShadowedSimulationAuthentication().recheck(request)
            result = simulate(tenant=request_tenant(request), **arguments)
        return Response(result)


class SimulateV1View(_SimulationView):
    """The V1 result alone: no provenance, no breaker."""

    @extend_schema(**_SIMULATION_SCHEMA, responses=V1ResultSerializer)
    def post(self, request: Request) -> Response:
        body = parse_simulation_body(request.data)
        return Response(
            simulate_v1(
                plan=body.plan, budget_cents=body.budget_cents, allowed_skills=body.allowed_skills
            )
        )


class SimulateV2View(_SimulationView):
    """V2 against V1 whatever the sandbox flag and breaker say; writes provenance."""

    @extend_schema(**_SIMULATION_SCHEMA, responses=SimulationV2ResultSerializer)
    def post(self, request: Request) -> Response:
        body = parse_simulation_body(request.data)
        result = simulate_v2_explicit(
            tenant=request_tenant(request),
            plan=body.plan,
            budget_cents=body.budget_cents,
            allowed_skills=body.allowed_skills,
            run_id=body.run_id,
            raw_plan=body.raw_plan,
        )
        return Response(result)


class SimulationStatusView(APIView):
    """Sandbox flag, breaker state (checked with auto-recovery) and engine versions."""

    permission_classes = [IsAuthenticatedCaller]

    @extend_schema(responses=SimulationStatusSerializer)
    def get(self, request: Request) -> Response:
        # The check may close an expired breaker; its snapshot is the state after that.
        seen = breaker.breaker_check()
        return Response(
            {
                "sandbox_enabled": settings.COSTSIM_V2_SANDBOX,
                "circuit_breaker_open": seen.disabled,
                "model_version": settings.COSTSIM_MODEL_VERSION,
                "adapter_version": settings.COSTSIM_ADAPTER_VERSION,
                "drift_threshold": settings.COSTSIM_DRIFT_THRESHOLD,
                "consecutive_failures": seen.consecutive_failures,
                "disabled_until": format_datetime(seen.disabled_until),
            }
        )


_WINDOW_PARAMETERS = [
    OpenApiParameter("from", str, description="created_at >= from (ISO-8601 with offset)"),
    OpenApiParameter("to", str, description="created_at < to (ISO-8601 with offset)"),
]


class ProvenanceViewSet(TenantScopedMixin, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The tenant's provenance rows, newest first; payloads only in the export and admin."""

    serializer_class = ProvenanceRowSerializer
    ordering = ("-created_at", "-id")

    def get_tenant_queryset(self, tenant):
        data = query_filters(self.request, ProvenanceFilterSerializer)
        return provenance_list(
            tenant=tenant,
            variant_slug=data.get("variant_slug"),
            source=data.get("source"),
            input_hash=data.get("input_hash"),
            start=data.get("from"),
            end=data.get("to"),
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("variant_slug", str, enum=["v1", "v2"]),
            OpenApiParameter("source", str, enum=["sandbox", "api", "backfill"]),
            OpenApiParameter("input_hash", str),
            *_WINDOW_PARAMETERS,
        ]
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=_WINDOW_PARAMETERS, responses=DriftStatsSerializer)
    @action(detail=False, methods=["get"], url_path="drift-stats", pagination_class=None)
    def drift_stats(self, request: Request) -> Response:
        filters = query_filters(request, DriftStatsFilterSerializer)
        stats = provenance_drift_stats(
            tenant=self.get_tenant(),
            start=filters.get("from"),
            end=filters.get("to"),
        )
        return Response(DriftStatsSerializer(stats).data)
