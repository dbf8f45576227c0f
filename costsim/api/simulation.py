"""Simulation, status and provenance endpoints (spec/api.md §5)."""

import time

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import authentication, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.authentication import KEYWORD, ApiKeyAuthentication, ApiKeyPrincipal
from analytics.api.fields import format_datetime
from analytics.api.permissions import IsAuthenticatedCaller, request_tenant
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import ApiKey
from costsim.api.serializers import (
    DriftStatsFilterSerializer,
    DriftStatsSerializer,
    ProvenanceFilterSerializer,
    ProvenanceRowSerializer,
    SimulationBodySerializer,
    SimulationStatusSerializer,
    parse_simulation_body,
)
from costsim.selectors import provenance_drift_stats, provenance_list
from costsim.services import breaker
from costsim.services.sandbox import simulate, simulate_v1, simulate_v2_explicit

_OBJECT = OpenApiTypes.OBJECT
# The cached authenticator accepts exactly what ApiKeyAuthentication does; documenting
# it as that scheme keeps one "ApiKeyAuth" in the OpenAPI document.
_SIMULATION_SCHEMA = {
    "request": SimulationBodySerializer,
    "responses": _OBJECT,
    "auth": [{"ApiKeyAuth": []}, {"cookieAuth": []}],
}

# How long a process trusts a key it has already looked up, on the simulate endpoints only.
KEY_CACHE_SECONDS = 5.0
KEY_CACHE_MAX_ENTRIES = 1024
# key_hash -> (monotonic expiry, ApiKey with its tenant)
_key_cache: dict[str, tuple[float, ApiKey]] = {}


class CachedApiKeyAuthentication(ApiKeyAuthentication):
    """ApiKeyAuthentication that remembers a usable key for KEY_CACHE_SECONDS per process.

    The simulate endpoints are the hot path (hundreds of requests per second from one
    agent key), and the key lookup was one query per request. The trade-off: on these
    three endpoints a revoked key, or a key of a deactivated tenant, keeps working for at
    most KEY_CACHE_SECONDS in a process that has just seen it. Every other endpoint looks
    the key up on each request. Unknown and refused keys are never cached.
    """

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        keyword, _, raw_key = header.partition(" ")
        raw_key = raw_key.strip()
        if keyword != KEYWORD or not raw_key:
            return super().authenticate(request)
        key_hash = ApiKey.hash_key(raw_key)
        now = time.monotonic()
        cached = _key_cache.get(key_hash)
        if cached is not None and cached[0] > now:
            api_key = cached[1]
            self._touch(api_key)
            return ApiKeyPrincipal(api_key), api_key
        result = super().authenticate(request)
        if len(_key_cache) >= KEY_CACHE_MAX_ENTRIES:
            # Many distinct keys in one process is rare; starting over bounds the memory.
            _key_cache.clear()
        _key_cache[key_hash] = (now + KEY_CACHE_SECONDS, result[1])
        return result


class _SimulationView(APIView):
    authentication_classes = [
        CachedApiKeyAuthentication,
        authentication.SessionAuthentication,
    ]


class SimulateView(_SimulationView):
    """V1 answers; V2 runs in shadow when the sandbox is on and the breaker closed."""

    @extend_schema(**_SIMULATION_SCHEMA)
    def post(self, request: Request) -> Response:
        body = parse_simulation_body(request.data)
        result = simulate(
            tenant=request_tenant(request),
            plan=body.plan,
            budget_cents=body.budget_cents,
            allowed_skills=body.allowed_skills,
            run_id=body.run_id,
            raw_plan=body.raw_plan,
        )
        return Response(result)


class SimulateV1View(_SimulationView):
    """The V1 result alone: no provenance, no breaker."""

    @extend_schema(**_SIMULATION_SCHEMA)
    def post(self, request: Request) -> Response:
        body = parse_simulation_body(request.data)
        return Response(
            simulate_v1(
                plan=body.plan, budget_cents=body.budget_cents, allowed_skills=body.allowed_skills
            )
        )


class SimulateV2View(_SimulationView):
    """V2 against V1 whatever the sandbox flag and breaker say; writes provenance."""

    @extend_schema(**_SIMULATION_SCHEMA)
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
        filters = ProvenanceFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
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
        filters = DriftStatsFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        stats = provenance_drift_stats(
            tenant=self.get_tenant(),
            start=filters.validated_data.get("from"),
            end=filters.validated_data.get("to"),
        )
        return Response(DriftStatsSerializer(stats).data)
