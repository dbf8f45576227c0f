"""What shapes the tenant's next detection runs: its monitor settings and planned activities."""

from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.detection_settings_serializers import (
    DetectionSettingsInputSerializer,
    DetectionSettingsSerializer,
    PlannedActivityInputSerializer,
    PlannedActivitySerializer,
)
from analytics.api.permissions import request_actor, request_tenant
from analytics.api.views import SchemaSafeMixin, service_errors_as_400, validated
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import PlannedActivity
from analytics.selectors.detection_settings import detection_settings_overview
from analytics.selectors.incidents import planned_activity_list
from analytics.services.detection_settings import (
    detection_settings_update,
    planned_activity_create,
    planned_activity_delete,
    planned_activity_update,
)


def register(router) -> list:
    router.register("planned-activities", PlannedActivityViewSet, basename="planned-activity")
    return [path("detection-settings/", DetectionSettingsView.as_view(), name="detection-settings")]


class DetectionSettingsView(APIView):
    """The tenant's detection settings: PUT replaces them all, PATCH changes the given ones.

    A setting sent as null, or left out of a PUT, goes back to the project default.
    """

    @extend_schema(responses=DetectionSettingsSerializer)
    def get(self, request):
        return self._answer(request)

    @extend_schema(request=DetectionSettingsInputSerializer, responses=DetectionSettingsSerializer)
    def put(self, request):
        return self._update(request, partial=False)

    @extend_schema(request=DetectionSettingsInputSerializer, responses=DetectionSettingsSerializer)
    def patch(self, request):
        return self._update(request, partial=True)

    def _update(self, request, *, partial: bool) -> Response:
        values = validated(DetectionSettingsInputSerializer, request.data, partial=partial)
        with service_errors_as_400():
            detection_settings_update(
                tenant=request_tenant(request),
                values=dict(values),
                actor=request_actor(request),
                partial=partial,
            )
        return self._answer(request)

    def _answer(self, request) -> Response:
        overview = detection_settings_overview(tenant=request_tenant(request))
        return Response(DetectionSettingsSerializer(overview).data)


class PlannedActivityViewSet(
    SchemaSafeMixin,
    TenantScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Spend the tenant expects (a launch, a backfill): detection scales its expectation."""

    schema_model = PlannedActivity
    serializer_class = PlannedActivitySerializer
    ordering = ("-starts_on", "-id")

    def get_tenant_queryset(self, tenant):
        return planned_activity_list(tenant=tenant)

    @extend_schema(
        request=PlannedActivityInputSerializer, responses={201: PlannedActivitySerializer}
    )
    def create(self, request):
        data = validated(PlannedActivityInputSerializer, request.data)
        with service_errors_as_400():
            plan = planned_activity_create(
                tenant=self.get_tenant(), data=data, actor=request_actor(request)
            )
        return Response(PlannedActivitySerializer(plan).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PlannedActivityInputSerializer, responses=PlannedActivitySerializer)
    def partial_update(self, request, pk=None):
        plan = self.get_object()
        data = validated(PlannedActivityInputSerializer, request.data, partial=True)
        with service_errors_as_400():
            plan = planned_activity_update(planned_activity=plan, data=data)
        return Response(PlannedActivitySerializer(plan).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        planned_activity_delete(planned_activity=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
