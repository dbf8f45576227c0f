from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.api.facets import faceted_page
from analytics.api.permissions import request_actor
from analytics.api.views import validated, validated_query
from analytics.api.viewsets import TenantScopedMixin
from feedback.api.serializers import (
    FeedbackDetailSerializer,
    FeedbackEmptyBodySerializer,
    FeedbackListQuerySerializer,
    FeedbackPageSerializer,
    FeedbackStatsSerializer,
    PatternDetectionResultSerializer,
)
from feedback.models import PatternFeedback
from feedback.selectors import feedback_counts, feedback_list, feedback_list_items
from feedback.services.patterns import feedback_acknowledge, patterns_detect


@extend_schema(tags=["feedback"])
class FeedbackViewSet(TenantScopedMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Pattern feedback of the caller's tenant: list, detail, stats, acknowledge, detect."""

    serializer_class = FeedbackDetailSerializer
    queryset = PatternFeedback.objects.none()
    # The selector's order; the page's keyset follows it.
    ordering = ("-detected_at", "id")

    def get_tenant_queryset(self, tenant):
        return feedback_list(tenant=tenant)

    @extend_schema(parameters=[FeedbackListQuerySerializer], responses=FeedbackPageSerializer)
    def list(self, request):
        params = validated_query(FeedbackListQuerySerializer, request)
        filtered = feedback_list(
            tenant=self.get_tenant(),
            pattern_type=params.get("pattern_type"),
            severity=params.get("severity"),
            acknowledged=params["acknowledged"],
        )
        body = faceted_page(
            self,
            feedback_list_items(filtered),
            feedback_counts(filtered),
            ("by_type", "by_severity"),
        )
        return Response(FeedbackPageSerializer(body).data)

    @extend_schema(responses=FeedbackStatsSerializer)
    @action(detail=False, methods=["get"])
    def stats(self, request):
        counts = feedback_counts(feedback_list(tenant=self.get_tenant()))
        return Response(FeedbackStatsSerializer(counts).data)

    @extend_schema(
        request=FeedbackEmptyBodySerializer,
        responses=FeedbackDetailSerializer,
        parameters=[OpenApiParameter("id", str, OpenApiParameter.PATH)],
    )
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        feedback = self.get_object()
        validated(FeedbackEmptyBodySerializer, request.data)
        feedback = feedback_acknowledge(feedback=feedback, actor=request_actor(request))
        return Response(FeedbackDetailSerializer(feedback).data)

    @extend_schema(request=FeedbackEmptyBodySerializer, responses=PatternDetectionResultSerializer)
    @action(detail=False, methods=["post"])
    def detect(self, request):
        validated(FeedbackEmptyBodySerializer, request.data)
        result = patterns_detect(tenant=self.get_tenant())
        return Response(PatternDetectionResultSerializer(result).data)
