"""Anomaly endpoints: list, detail, detection and the lifecycle verbs."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.api.anomaly_serializers import (
    AcknowledgeInputSerializer,
    AnomalyFilterSerializer,
    AnomalyListSerializer,
    AnomalySerializer,
    DetectInputSerializer,
    FeedbackInputSerializer,
    ResolveInputSerializer,
)
from analytics.api.incident_serializers import DetectionResultSerializer
from analytics.api.openapi import CONFLICT
from analytics.api.permissions import request_actor
from analytics.api.views import SchemaSafeMixin, validated
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import Anomaly, AnomalyStatus, AnomalyType, EntityType, Severity
from analytics.selectors.anomalies import anomaly_detail_queryset, anomaly_list
from analytics.services.anomalies import anomalies_detect
from analytics.services.anomaly_lifecycle import (
    anomaly_acknowledge,
    anomaly_label,
    anomaly_resolve,
)


def register(router) -> list:
    router.register("anomalies", AnomalyViewSet, basename="anomaly")
    return []


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=AnomalyStatus.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            OpenApiParameter("anomaly_type", str, enum=AnomalyType.values),
            OpenApiParameter("entity_type", str, enum=EntityType.values),
            OpenApiParameter("from", OpenApiTypes.DATETIME, description="detected_at >= from"),
            OpenApiParameter("to", OpenApiTypes.DATETIME, description="detected_at < to"),
        ]
    )
)
class AnomalyViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The tenant's anomalies, newest first, and the operator verbs on one of them."""

    schema_model = Anomaly
    serializer_class = AnomalySerializer
    ordering = ("-detected_at", "-id")

    def get_serializer_class(self):
        return AnomalyListSerializer if self.action == "list" else AnomalySerializer

    def get_tenant_queryset(self, tenant):
        if self.action != "list":
            return anomaly_detail_queryset(tenant=tenant)
        filters = validated(AnomalyFilterSerializer, self.request.query_params)
        return anomaly_list(
            tenant=tenant,
            status=filters.get("status"),
            severity=filters.get("severity"),
            anomaly_type=filters.get("anomaly_type"),
            entity_type=filters.get("entity_type"),
            detected_from=filters.get("from"),
            detected_to=filters.get("to"),
        )

    @extend_schema(request=DetectInputSerializer, responses=DetectionResultSerializer)
    @action(detail=False, methods=["post"])
    def detect(self, request):
        data = validated(DetectInputSerializer, request.data)
        result = anomalies_detect(
            tenant=self.get_tenant(), as_of=data.get("as_of"), dry_run=data["dry_run"]
        )
        return Response(DetectionResultSerializer(result).data)

    @extend_schema(
        request=AcknowledgeInputSerializer, responses={200: AnomalySerializer, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        anomaly = self.get_object()
        validated(AcknowledgeInputSerializer, request.data)
        anomaly = anomaly_acknowledge(anomaly=anomaly, actor=request_actor(request))
        return Response(AnomalySerializer(anomaly).data)

    @extend_schema(
        request=ResolveInputSerializer, responses={200: AnomalySerializer, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        anomaly = self.get_object()
        data = validated(ResolveInputSerializer, request.data)
        anomaly = anomaly_resolve(
            anomaly=anomaly,
            actor=request_actor(request),
            resolution=data["resolution"],
            notes=data["notes"],
        )
        return Response(AnomalySerializer(anomaly).data)

    @extend_schema(request=FeedbackInputSerializer, responses=AnomalySerializer)
    @action(detail=True, methods=["post"])
    def feedback(self, request, pk=None):
        anomaly = self.get_object()
        data = validated(FeedbackInputSerializer, request.data)
        anomaly = anomaly_label(anomaly=anomaly, actor=request_actor(request), label=data["label"])
        return Response(AnomalySerializer(anomaly).data)
