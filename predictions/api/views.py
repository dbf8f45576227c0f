from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics.api.facets import faceted_page
from analytics.api.views import validated, validated_query
from analytics.api.viewsets import TenantScopedMixin
from predictions.api.serializers import (
    PredictionCycleResultSerializer,
    PredictionDetailSerializer,
    PredictionEmptyBodySerializer,
    PredictionIncludeExpiredQuerySerializer,
    PredictionListQuerySerializer,
    PredictionPageSerializer,
    PredictionStatsSerializer,
    PredictionSubjectQuerySerializer,
    SubjectPredictionPageSerializer,
)
from predictions.models import Prediction
from predictions.selectors import prediction_counts, prediction_list
from predictions.services.cycle import prediction_cycle_run


@extend_schema(tags=["predictions"])
class PredictionViewSet(TenantScopedMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Advisory predictions of the caller's tenant: list, detail, stats and a manual cycle."""

    serializer_class = PredictionDetailSerializer
    queryset = Prediction.objects.none()
    # The selector's order; the page's keyset follows it.
    ordering = ("-created_at", "id")

    def get_tenant_queryset(self, tenant):
        # The detail page shows an expired prediction too; only the lists hide them.
        return prediction_list(tenant=tenant, now=self.now, include_expired=True)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": getattr(self, "now", None)}

    def initial(self, request, *args, **kwargs):
        # One instant per request: the validity filter and every is_valid flag agree.
        self.now = timezone.now()
        super().initial(request, *args, **kwargs)

    @extend_schema(parameters=[PredictionListQuerySerializer], responses=PredictionPageSerializer)
    def list(self, request):
        params = validated_query(PredictionListQuerySerializer, request)
        filtered = prediction_list(
            tenant=self.get_tenant(),
            now=self.now,
            include_expired=params["include_expired"],
            prediction_type=params.get("prediction_type"),
            subject_type=params.get("subject_type"),
            subject_id=params.get("subject_id"),
        )
        body = faceted_page(
            self, filtered, prediction_counts(filtered), ("by_type", "by_subject_type")
        )
        return Response(PredictionPageSerializer(body, context=self.get_serializer_context()).data)

    @extend_schema(
        parameters=[PredictionIncludeExpiredQuerySerializer], responses=PredictionStatsSerializer
    )
    @action(detail=False, methods=["get"])
    def stats(self, request):
        params = validated_query(PredictionIncludeExpiredQuerySerializer, request)
        counts = prediction_counts(
            prediction_list(
                tenant=self.get_tenant(), now=self.now, include_expired=params["include_expired"]
            )
        )
        body = {
            "total": counts["total"],
            "by_type": counts["by_type"],
            "by_subject_type": counts["by_subject_type"],
            "avg_confidence": counts["avg_confidence"],
            "high_confidence_count": counts["high_confidence_count"],
            "advisory_compliance": {
                "all_advisory": counts["non_advisory_count"] == 0,
                "non_advisory_count": counts["non_advisory_count"],
            },
        }
        return Response(PredictionStatsSerializer(body).data)

    @extend_schema(request=PredictionEmptyBodySerializer, responses=PredictionCycleResultSerializer)
    @action(detail=False, methods=["post"])
    def run(self, request):
        validated(PredictionEmptyBodySerializer, request.data)
        result = prediction_cycle_run(tenant=self.get_tenant())
        # Rendered after the cycle, so rows written just now count as valid.
        context = {**self.get_serializer_context(), "now": timezone.now()}
        return Response(PredictionCycleResultSerializer(result, context=context).data)


@extend_schema(
    tags=["predictions"],
    parameters=[
        OpenApiParameter("subject_type", str, OpenApiParameter.PATH),
        OpenApiParameter("subject_id", str, OpenApiParameter.PATH),
        OpenApiParameter("include_expired", bool),
    ],
    responses=SubjectPredictionPageSerializer,
)
class PredictionSubjectView(TenantScopedMixin, generics.ListAPIView):
    """The predictions about one subject, newest first."""

    queryset = Prediction.objects.none()
    ordering = ("-created_at", "id")

    def list(self, request, subject_type: str, subject_id: str):
        now = timezone.now()
        params = validated_query(
            PredictionSubjectQuerySerializer,
            request,
            subject_type=subject_type,
            subject_id=subject_id,
        )
        predictions = prediction_list(
            tenant=self.get_tenant(),
            now=now,
            include_expired=params["include_expired"],
            subject_type=params["subject_type"],
            subject_id=params["subject_id"],
        )
        page = self.paginate_queryset(predictions)
        body = {
            **self.paginator.page_links(),
            "results": page,
            "subject_type": params["subject_type"],
            "subject_id": params["subject_id"],
            "total": predictions.count(),
        }
        return Response(SubjectPredictionPageSerializer(body, context={"now": now}).data)
