"""Incident endpoints: list, detail with the anomalies behind it, and the operator verbs.

Each verb moves the incident and its anomalies together (see analytics.services.incidents).
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.api.anomaly_serializers import AcknowledgeInputSerializer, FeedbackInputSerializer
from analytics.api.incident_serializers import (
    IncidentCloseInputSerializer,
    IncidentFilterSerializer,
    IncidentListSerializer,
    IncidentSerializer,
)
from analytics.api.openapi import CONFLICT
from analytics.api.permissions import request_actor
from analytics.api.views import SchemaSafeMixin, validated
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import AnomalyStatus, Incident, IncidentKind, Severity
from analytics.selectors.incidents import incident_detail_queryset, incident_list
from analytics.services.incidents import incident_acknowledge, incident_label, incident_resolve


def register(router) -> list:
    router.register("incidents", IncidentViewSet, basename="incident")
    return []


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=AnomalyStatus.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            OpenApiParameter("kind", str, enum=IncidentKind.values),
            OpenApiParameter("from", OpenApiTypes.DATE, description="last_seen_on >= from"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="last_seen_on < to"),
        ]
    )
)
class IncidentViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """The tenant's incidents, most recently seen first, and the operator verbs on one."""

    schema_model = Incident
    ordering = ("-last_seen_on", "-id")

    def get_serializer_class(self):
        return IncidentListSerializer if self.action == "list" else IncidentSerializer

    def get_tenant_queryset(self, tenant):
        if self.action != "list":
            return incident_detail_queryset(tenant=tenant)
        filters = validated(IncidentFilterSerializer, self.request.query_params)
        return incident_list(
            tenant=tenant,
            status=filters.get("status"),
            severity=filters.get("severity"),
            kind=filters.get("kind"),
            seen_from=filters.get("from"),
            seen_to=filters.get("to"),
        )

    def _answer(self, incident: Incident) -> Response:
        """The incident as it is now, with its anomalies read again after the verb moved them."""
        incident = incident_detail_queryset(tenant=self.get_tenant()).get(pk=incident.pk)
        return Response(IncidentSerializer(incident).data)

    @extend_schema(
        request=AcknowledgeInputSerializer, responses={200: IncidentSerializer, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        """open → acknowledged, with its open anomalies; a closed incident is a 409."""
        incident = self.get_object()
        validated(AcknowledgeInputSerializer, request.data)
        incident = incident_acknowledge(incident=incident, actor=request_actor(request))
        return self._answer(incident)

    @extend_schema(
        request=IncidentCloseInputSerializer, responses={200: IncidentSerializer, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        """open/acknowledged → resolved, with its anomalies; a closed incident is a 409."""
        return self._close(request, AnomalyStatus.RESOLVED)

    @extend_schema(
        request=IncidentCloseInputSerializer, responses={200: IncidentSerializer, 409: CONFLICT}
    )
    @action(detail=True, methods=["post"])
    def dismiss(self, request, pk=None):
        """open/acknowledged → dismissed, with its anomalies; a closed incident is a 409."""
        return self._close(request, AnomalyStatus.DISMISSED)

    def _close(self, request, resolution: str) -> Response:
        incident = self.get_object()
        data = validated(IncidentCloseInputSerializer, request.data)
        incident = incident_resolve(
            incident=incident,
            actor=request_actor(request),
            resolution=resolution,
            notes=data["notes"],
        )
        return self._answer(incident)

    @extend_schema(request=FeedbackInputSerializer, responses=IncidentSerializer)
    @action(detail=True, methods=["post"])
    def feedback(self, request, pk=None):
        """Label the incident and its anomalies, whatever the status; NO suppresses repeats."""
        incident = self.get_object()
        data = validated(FeedbackInputSerializer, request.data)
        incident = incident_label(
            incident=incident, actor=request_actor(request), label=data["label"]
        )
        return self._answer(incident)
