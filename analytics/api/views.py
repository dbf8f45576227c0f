"""Ingest and tenant data endpoints: cost records, runs, feature tags, budgets."""

from contextlib import contextmanager

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from analytics import metrics
from analytics.api.batches import (
    BatchJSONParser,
    validate_cost_record_batch,
    validate_run_batch,
)
from analytics.api.errors import PayloadTooLarge
from analytics.api.openapi import CONFLICT
from analytics.api.serializers import (
    BudgetSerializer,
    BudgetStatusSerializer,
    CostRecordBatchInputSerializer,
    CostRecordFilterSerializer,
    CostRecordSerializer,
    FeatureTagSerializer,
    IngestResultSerializer,
    RepriceInputSerializer,
    RepriceResultSerializer,
    RunBatchInputSerializer,
    RunFilterSerializer,
    RunRecordSerializer,
    RunUpsertResultSerializer,
)
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import Budget, CostRecord, FeatureTag, RunRecord, RunStatus
from analytics.selectors.budgets import budget_status
from analytics.selectors.records import (
    budget_list,
    cost_record_list,
    feature_tag_list,
    run_record_list,
)
from analytics.services.budgets import budget_create, budget_delete, budget_update
from analytics.services.feature_tags import (
    feature_tag_create,
    feature_tag_delete,
    feature_tag_update,
)
from analytics.services.ingest import (
    IdempotencyKeyConflict,
    TerminalRunChanged,
    cost_records_ingest,
    run_records_upsert,
)
from analytics.services.pricing import cost_records_reprice

WINDOW_PARAMETERS = [
    OpenApiParameter("from", OpenApiTypes.DATETIME, description="created_at >= from"),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="created_at < to"),
]


def register(router) -> list:
    router.register("cost-records", CostRecordViewSet, basename="cost-record")
    router.register("runs", RunViewSet, basename="run")
    router.register("feature-tags", FeatureTagViewSet, basename="feature-tag")
    router.register("budgets", BudgetViewSet, basename="budget")
    return []


@contextmanager
def rejected_batches_counted(kind: str):
    """Count a batch rejected while parsing or validating it, by reason."""
    try:
        yield
    except PayloadTooLarge:
        metrics.ingest_batches_rejected_total.labels(kind=kind, reason="too_large").inc()
        raise
    except (
        exceptions.ValidationError,
        exceptions.ParseError,
        exceptions.UnsupportedMediaType,
    ):
        metrics.ingest_batches_rejected_total.labels(kind=kind, reason="validation").inc()
        raise


@contextmanager
def service_errors_as_400():
    """A service's Django ValidationError becomes the API's 400 naming the same fields."""
    try:
        yield
    except DjangoValidationError as exc:
        detail = {
            ("non_field_errors" if field == NON_FIELD_ERRORS else field): messages
            for field, messages in exc.message_dict.items()
        }
        raise exceptions.ValidationError(detail) from None


def validated(serializer_class, data, *, partial: bool = False) -> dict:
    """`data` validated by an input serializer; a 400 naming the fields otherwise."""
    serializer = serializer_class(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def query_filters(request, serializer_class) -> dict:
    return validated(serializer_class, request.query_params)


def validated_query(serializer_class, request, **extra) -> dict:
    """The query string validated as a plain dict, `extra` (e.g. a path value) merged in.

    A plain dict, not the QueryDict: DRF reads an absent boolean in form-style input as
    false, which would turn "not given" into "false".
    """
    return validated(serializer_class, {**request.query_params.dict(), **extra})


class SchemaSafeMixin:
    """Schema generation runs views without a tenant; give it an empty queryset."""

    schema_model = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.schema_model.objects.none()
        return super().get_queryset()


@extend_schema_view(
    list=extend_schema(
        parameters=[
            *WINDOW_PARAMETERS,
            OpenApiParameter("model", str),
            OpenApiParameter("feature_tag", str),
            OpenApiParameter("user_id", str),
        ]
    )
)
class CostRecordViewSet(
    SchemaSafeMixin,
    TenantScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Batch ingest of cost records and a newest-first list of them."""

    schema_model = CostRecord
    serializer_class = CostRecordSerializer
    parser_classes = [BatchJSONParser]
    ordering = ("-created_at", "-id")

    def get_tenant_queryset(self, tenant):
        if self.action != "list":
            return cost_record_list(tenant=tenant)
        filters = query_filters(self.request, CostRecordFilterSerializer)
        return cost_record_list(
            tenant=tenant,
            start=filters.get("from"),
            end=filters.get("to"),
            model=filters.get("model"),
            feature_tag=filters.get("feature_tag"),
            user_id=filters.get("user_id"),
        )

    @extend_schema(
        request=CostRecordBatchInputSerializer,
        responses={201: IngestResultSerializer, 409: CONFLICT},
    )
    def create(self, request):
        received_at = timezone.now()
        with rejected_batches_counted("cost_records"):
            records = validate_cost_record_batch(request.data, received_at=received_at)
        try:
            result = cost_records_ingest(
                tenant=self.get_tenant(), records=records, received_at=received_at
            )
        except IdempotencyKeyConflict:
            # The shared exception handler answers it (409, one error per reused key).
            metrics.ingest_batches_rejected_total.labels(
                kind="cost_records", reason="conflict"
            ).inc()
            raise
        return Response(IngestResultSerializer(result).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RepriceInputSerializer, responses=RepriceResultSerializer)
    @action(detail=False, methods=["post"])
    def reprice(self, request):
        """Recompute the costs the service computed (catalogue, override, unpriced; never a
        client cost) for the tenant's records created in [since, until) with today's
        catalogue and price overrides."""
        data = validated(RepriceInputSerializer, request.data)
        result = cost_records_reprice(
            tenant=self.get_tenant(),
            since=data["since"],
            until=data.get("until"),
            model=data.get("model"),
            dry_run=data["dry_run"],
        )
        return Response(RepriceResultSerializer(result).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            *WINDOW_PARAMETERS,
            OpenApiParameter("worker_id", str),
            OpenApiParameter("status", str, enum=RunStatus.values),
        ]
    )
)
class RunViewSet(
    SchemaSafeMixin,
    TenantScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Batch upsert of worker runs keyed by the client's run id; list and read by that id."""

    schema_model = RunRecord
    serializer_class = RunRecordSerializer
    parser_classes = [BatchJSONParser]
    ordering = ("-created_at", "-id")
    lookup_field = "run_id"
    lookup_url_kwarg = "id"
    # Client run ids may contain dots.
    lookup_value_regex = "[^/]+"

    def get_tenant_queryset(self, tenant):
        if self.action != "list":
            return run_record_list(tenant=tenant)
        filters = query_filters(self.request, RunFilterSerializer)
        return run_record_list(
            tenant=tenant,
            start=filters.get("from"),
            end=filters.get("to"),
            worker_id=filters.get("worker_id"),
            status=filters.get("status"),
        )

    @extend_schema(
        request=RunBatchInputSerializer, responses={201: RunUpsertResultSerializer, 409: CONFLICT}
    )
    def create(self, request):
        received_at = timezone.now()
        with rejected_batches_counted("runs"):
            runs = validate_run_batch(request.data, received_at=received_at)
        try:
            result = run_records_upsert(
                tenant=self.get_tenant(), runs=runs, received_at=received_at
            )
        except TerminalRunChanged:
            metrics.ingest_batches_rejected_total.labels(kind="runs", reason="conflict").inc()
            raise
        return Response(
            {"created": result.created, "updated": result.updated, "unchanged": result.unchanged},
            status=status.HTTP_201_CREATED,
        )


class FeatureTagViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ModelViewSet):
    schema_model = FeatureTag
    serializer_class = FeatureTagSerializer
    ordering = ("tag", "id")

    def get_tenant_queryset(self, tenant):
        return feature_tag_list(tenant=tenant)

    def perform_create(self, serializer):
        with service_errors_as_400():
            serializer.instance = feature_tag_create(
                tenant=self.get_tenant(), data=serializer.validated_data
            )

    def perform_update(self, serializer):
        with service_errors_as_400():
            serializer.instance = feature_tag_update(
                feature_tag=serializer.instance, data=serializer.validated_data
            )

    def perform_destroy(self, instance):
        feature_tag_delete(feature_tag=instance)


class BudgetViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ModelViewSet):
    schema_model = Budget
    serializer_class = BudgetSerializer
    ordering = ("id",)

    def get_tenant_queryset(self, tenant):
        return budget_list(tenant=tenant)

    def perform_create(self, serializer):
        with service_errors_as_400():
            serializer.instance = budget_create(
                tenant=self.get_tenant(), data=serializer.validated_data
            )

    def perform_update(self, serializer):
        with service_errors_as_400():
            serializer.instance = budget_update(
                budget=serializer.instance, data=serializer.validated_data
            )

    def perform_destroy(self, instance):
        budget_delete(budget=instance)

    @extend_schema(responses=BudgetStatusSerializer)
    @action(detail=True, methods=["get"], url_path="status", url_name="status")
    def period_status(self, request, pk=None):
        """Spend, reserved, available, usage and burn-down ETA of the current UTC day and
        month."""
        budget = self.get_object()
        body = budget_status(budget=budget, at=timezone.now())
        return Response(BudgetStatusSerializer(body).data)
