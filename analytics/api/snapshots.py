"""Snapshot and baseline endpoints."""

from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.anomaly_serializers import AnomalySerializer
from analytics.api.openapi import CONFLICT
from analytics.api.permissions import request_tenant
from analytics.api.snapshot_serializers import (
    BaselineComputeInputSerializer,
    BaselineComputeResultSerializer,
    BaselineSerializer,
    SnapshotComputeInputSerializer,
    SnapshotDetailSerializer,
    SnapshotEvaluateInputSerializer,
    SnapshotEvaluateResultSerializer,
    SnapshotFilterSerializer,
    SnapshotSerializer,
)
from analytics.api.views import (
    SchemaSafeMixin,
    query_filters,
    service_errors_as_400,
    validated,
)
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import CostSnapshot
from analytics.selectors.snapshots import (
    snapshot_detail_queryset,
    snapshot_get_detail,
    snapshot_list,
)
from analytics.services.evaluation import snapshot_evaluate
from analytics.services.snapshots import baseline_compute, snapshot_compute


def register(router) -> list:
    router.register("snapshots", SnapshotViewSet, basename="snapshot")
    return [path("baselines/compute/", BaselineComputeView.as_view(), name="baseline-compute")]


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("snapshot_type", str, enum=["hourly", "daily"]),
            OpenApiParameter("status", str, enum=["computing", "complete", "failed"]),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="period_start >="),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="period_start <"),
        ]
    )
)
class SnapshotViewSet(
    SchemaSafeMixin,
    TenantScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Hourly and daily cost snapshots of the caller's tenant, newest period first."""

    schema_model = CostSnapshot
    ordering = ("-period_start", "-id")

    def get_serializer_class(self):
        return SnapshotSerializer if self.action == "list" else SnapshotDetailSerializer

    def get_tenant_queryset(self, tenant):
        if self.action == "list":
            filters = query_filters(self.request, SnapshotFilterSerializer)
            return snapshot_list(
                tenant=tenant,
                snapshot_type=filters.get("snapshot_type"),
                status=filters.get("status"),
                period_from=filters.get("from"),
                period_to=filters.get("to"),
            )
        return snapshot_detail_queryset(tenant=tenant)

    @extend_schema(request=SnapshotComputeInputSerializer, responses=SnapshotDetailSerializer)
    @action(detail=False, methods=["post"])
    def compute(self, request):
        """Compute or recompute one period; the same period again bumps the version."""
        data = validated(SnapshotComputeInputSerializer, request.data)
        tenant = request_tenant(request)
        with service_errors_as_400():
            snapshot = snapshot_compute(
                tenant=tenant,
                snapshot_type=data["snapshot_type"],
                period_start=data.get("period_start"),
            )
        snapshot = snapshot_get_detail(tenant=tenant, snapshot_id=snapshot.pk)
        return Response(SnapshotDetailSerializer(snapshot).data)

    @extend_schema(
        request=SnapshotEvaluateInputSerializer,
        responses={200: SnapshotEvaluateResultSerializer, 409: CONFLICT},
    )
    @action(detail=True, methods=["post"])
    def evaluate(self, request, pk=None):
        """Evaluate a complete snapshot against its 7-day baselines (409 otherwise)."""
        snapshot = self.get_object()
        data = validated(SnapshotEvaluateInputSerializer, request.data)
        result = snapshot_evaluate(snapshot=snapshot, threshold_pct=data["threshold_pct"])
        return Response(
            {
                "evaluated": result["evaluated"],
                "triggered": result["triggered"],
                "anomalies": AnomalySerializer(result["anomalies"], many=True).data,
            }
        )


class BaselineComputeView(APIView):
    """Upsert the 7- or 30-day baselines of the caller's tenant as of a date."""

    @extend_schema(
        request=BaselineComputeInputSerializer, responses=BaselineComputeResultSerializer
    )
    def post(self, request):
        data = validated(BaselineComputeInputSerializer, request.data)
        with service_errors_as_400():
            baselines = baseline_compute(
                tenant=request_tenant(request),
                window_days=data["window_days"],
                as_of=data.get("as_of"),
            )
        return Response(
            {"count": len(baselines), "baselines": BaselineSerializer(baselines, many=True).data}
        )
