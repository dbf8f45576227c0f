from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.viewsets import TenantScopedMixin
from predictions.api.serializers import (
    PredictionCycleResultSerializer,
    PredictionDetailSerializer,
    PredictionEmptyBodySerializer,
    PredictionIncludeExpiredQuerySerializer,
    PredictionListQuerySerializer,
    PredictionListSerializer,
    PredictionStatsSerializer,
    PredictionSubjectQuerySerializer,
    SubjectPredictionsSerializer,
)
from predictions.models import Prediction
from predictions.selectors import prediction_counts, prediction_list
from predictions.services.cycle import prediction_cycle_run


def _validated_query(serializer_class, request, **extra) -> dict:
    # A plain dict, not the QueryDict: DRF reads an absent boolean in form-style input
    # as false, which would flip the meaning of "not given".
    serializer = serializer_class(data={**request.query_params.dict(), **extra})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema(tags=["predictions"])
class PredictionViewSet(TenantScopedMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Advisory predictions of the caller's tenant: list, detail, stats and a manual cycle."""

    serializer_class = PredictionDetailSerializer
    pagination_class = None
    queryset = Prediction.objects.none()

    def get_tenant_queryset(self, tenant):
        return Prediction.objects.for_tenant(tenant)

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "now": getattr(self, "now", None)}

    def initial(self, request, *args, **kwargs):
        # One instant per request: the validity filter and every is_valid flag agree.
        self.now = timezone.now()
        super().initial(request, *args, **kwargs)

    @extend_schema(parameters=[PredictionListQuerySerializer], responses=PredictionListSerializer)
    def list(self, request):
        params = _validated_query(PredictionListQuerySerializer, request)
        filtered = prediction_list(
            tenant=self.get_tenant(),
            now=self.now,
            include_expired=params["include_expired"],
            prediction_type=params.get("prediction_type"),
            subject_type=params.get("subject_type"),
            subject_id=params.get("subject_id"),
        )
        counts = prediction_counts(filtered)
        limit, offset = params["limit"], params["offset"]
        body = {
            "total": counts["total"],
            "limit": limit,
            "offset": offset,
            "by_type": counts["by_type"],
            "by_subject_type": counts["by_subject_type"],
            "items": filtered[offset : offset + limit],
        }
        return Response(PredictionListSerializer(body, context=self.get_serializer_context()).data)

    @extend_schema(
        parameters=[PredictionIncludeExpiredQuerySerializer], responses=PredictionStatsSerializer
    )
    @action(detail=False, methods=["get"])
    def stats(self, request):
        params = _validated_query(PredictionIncludeExpiredQuerySerializer, request)
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
        PredictionEmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
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
        OpenApiParameter("limit", int, description="1..100, default 20"),
    ],
    responses=SubjectPredictionsSerializer,
)
class PredictionSubjectView(TenantScopedMixin, APIView):
    """The predictions about one subject, newest first."""

    def get(self, request, subject_type: str, subject_id: str):
        now = timezone.now()
        params = _validated_query(
            PredictionSubjectQuerySerializer,
            request,
            subject_type=subject_type,
            subject_id=subject_id,
        )
        predictions = list(
            prediction_list(
                tenant=self.get_tenant(),
                now=now,
                include_expired=params["include_expired"],
                subject_type=params["subject_type"],
                subject_id=params["subject_id"],
            )[: params["limit"]]
        )
        body = {
            "subject_type": params["subject_type"],
            "subject_id": params["subject_id"],
            "predictions": predictions,
            "count": len(predictions),
        }
        return Response(SubjectPredictionsSerializer(body, context={"now": now}).data)
