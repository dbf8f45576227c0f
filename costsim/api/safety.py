"""Safety-net endpoints: breaker, incidents, canary, datasets, alert rules, divergence,
calibration. Each view validates its input, calls one service or report (a selector)
and serializes the result.
"""

from functools import partial

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, generics
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.permissions import (
    IsAuthenticatedCaller,
    IsStaff,
    IsTenantKey,
    request_actor,
    request_tenant,
)
from analytics.api.views import validated, validated_query
from costsim.api import safety_serializers as s
from costsim.selectors import breaker_incident_list, canary_report_list
from costsim.selectors.calibration import calibration_report
from costsim.selectors.divergence import divergence_report
from costsim.services import alert_rules, datasets
from costsim.services.breaker import breaker_disable, breaker_enable, breaker_state_view
from costsim.services.canary import canary_run
from costsim.services.estimators import estimate_v2


def _configured_estimate_v2():
    return partial(
        estimate_v2,
        model_version=settings.COSTSIM_MODEL_VERSION,
        adapter_version=settings.COSTSIM_ADAPTER_VERSION,
        commit_sha=settings.GIT_COMMIT_SHA,
    )


# Breaker and incidents ----------------------------------------------------------------


class IncidentListView(generics.ListAPIView):
    permission_classes = [IsAuthenticatedCaller]
    ordering = ("-created_at", "-id")

    @extend_schema(parameters=[s.IncidentListQuerySerializer], responses=s.IncidentPageSerializer)
    def get(self, request):
        query = validated_query(s.IncidentListQuerySerializer, request)
        incidents = breaker_incident_list(include_resolved=query["include_resolved"])
        page = self.paginate_queryset(incidents)
        body = {**self.paginator.page_links(), "results": page, "total": incidents.count()}
        return Response(s.IncidentPageSerializer(body).data)


class BreakerDisableView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=s.BreakerDisableInputSerializer, responses=s.BreakerStateSerializer)
    def post(self, request):
        data = validated(s.BreakerDisableInputSerializer, request.data)
        breaker = breaker_disable(
            reason=data["reason"], actor=request_actor(request), ttl_hours=data.get("ttl_hours")
        )
        return Response(s.BreakerStateSerializer(breaker_state_view(breaker)).data)


class BreakerEnableView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(
        request=s.BreakerEnableInputSerializer, responses=s.BreakerEnableOutputSerializer
    )
    def post(self, request):
        data = validated(s.BreakerEnableInputSerializer, request.data)
        result = breaker_enable(reason=data.get("reason") or None, actor=request_actor(request))
        payload = {
            "changed": result.changed,
            "message": result.message,
            "state": breaker_state_view(result.breaker),
        }
        return Response(s.BreakerEnableOutputSerializer(payload).data)


# Canary -------------------------------------------------------------------------------


class CanaryRunView(APIView):
    permission_classes = [IsStaff]

    @extend_schema(request=s.CanaryRunInputSerializer, responses=s.CanaryRunReportSerializer)
    def post(self, request):
        data = validated(s.CanaryRunInputSerializer, request.data)
        report = canary_run(
            sample_count=data["sample_count"], drift_threshold=data["drift_threshold"]
        )
        return Response(s.canary_run_view(report))


class CanaryReportListView(generics.ListAPIView):
    permission_classes = [IsAuthenticatedCaller]
    ordering = ("-timestamp", "-id")

    @extend_schema(
        parameters=[s.CanaryReportListQuerySerializer], responses=s.CanaryReportPageSerializer
    )
    def get(self, request):
        query = validated_query(s.CanaryReportListQuerySerializer, request)
        reports = canary_report_list(status=query.get("status"), passed=query["passed"])
        page = self.paginate_queryset(reports)
        body = {**self.paginator.page_links(), "results": page, "total": reports.count()}
        return Response(s.CanaryReportPageSerializer(body).data)


# Reference datasets -------------------------------------------------------------------


class DatasetListView(generics.ListAPIView):
    """The reference datasets, by id; pages like every other list."""

    permission_classes = [IsAuthenticatedCaller]
    # Documents the items; the views are served as costsim.services.datasets builds them.
    serializer_class = s.DatasetSerializer
    ordering = ("id",)

    @extend_schema(operation_id="costsim_datasets_list")
    def get(self, request):
        return self.get_paginated_response(self.paginate_queryset(datasets.dataset_views()))


class DatasetDetailView(APIView):
    permission_classes = [IsAuthenticatedCaller]

    @extend_schema(responses=s.DatasetDetailSerializer)
    def get(self, request, dataset_id: str):
        try:
            dataset = datasets.dataset_get(dataset_id)
        except datasets.UnknownDataset:
            raise exceptions.NotFound(f"Dataset not found: {dataset_id}") from None
        return Response(dataset.detail_view())


class DatasetValidateView(APIView):
    permission_classes = [IsAuthenticatedCaller]

    @extend_schema(request=s.EmptyInputSerializer, responses=s.DatasetValidationSerializer)
    def post(self, request, dataset_id: str):
        validated(s.EmptyInputSerializer, request.data)
        try:
            result = datasets.validate_dataset(dataset_id, estimate=_configured_estimate_v2())
        except datasets.UnknownDataset as exc:
            raise exceptions.NotFound(str(exc)) from None
        return Response(result)


class DatasetValidateAllView(APIView):
    permission_classes = [IsAuthenticatedCaller]

    @extend_schema(request=s.EmptyInputSerializer, responses=s.DatasetValidationAllSerializer)
    def post(self, request):
        validated(s.EmptyInputSerializer, request.data)
        return Response(datasets.validate_all(estimate=_configured_estimate_v2()))


# Alert rules --------------------------------------------------------------------------


class AlertRulesView(APIView):
    permission_classes = [IsAuthenticatedCaller]

    @extend_schema(responses={(200, alert_rules.CONTENT_TYPE): s.AlertRuleFileSerializer})
    def get(self, request):
        # The stored bytes, not a re-serialisation: what promtool checked is what is served.
        return HttpResponse(alert_rules.alert_rules_bytes(), content_type=alert_rules.CONTENT_TYPE)


# Tenant reports -----------------------------------------------------------------------


class DivergenceView(APIView):
    permission_classes = [IsTenantKey]

    @extend_schema(parameters=[s.DivergenceQuerySerializer], responses=s.DivergenceReportSerializer)
    def get(self, request):
        query = validated_query(s.DivergenceQuerySerializer, request)
        report = divergence_report(tenant=request_tenant(request), days=query["days"])
        return Response(s.DivergenceReportSerializer(report).data)


class CalibrationView(APIView):
    permission_classes = [IsTenantKey]

    @extend_schema(
        parameters=[s.CalibrationQuerySerializer], responses=s.CalibrationReportSerializer
    )
    def get(self, request):
        query = validated_query(s.CalibrationQuerySerializer, request)
        report = calibration_report(
            tenant=request_tenant(request),
            start=query["from"],
            end=query["to"],
            tolerance=settings.COSTSIM_CALIBRATION_TOLERANCE,
        )
        return Response(s.CalibrationReportSerializer(report).data)
