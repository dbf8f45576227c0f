"""Notification endpoints: channels, rules (CRUD) and the delivery log (read-only)."""

from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics.api.permissions import request_tenant
from analytics.api.views import SchemaSafeMixin, query_filters, service_errors_as_400, validated
from analytics.api.viewsets import TenantScopedMixin
from analytics.selectors.records import budget_list
from notifications.api.serializers import (
    BudgetThresholdsSerializer,
    ChannelCreatedSerializer,
    ChannelSerializer,
    DeliveryFilterSerializer,
    DeliverySerializer,
    RuleSerializer,
)
from notifications.models import Channel, Delivery, Rule
from notifications.selectors import channel_list, delivery_list, rule_list
from notifications.services.channels import (
    budget_thresholds_get,
    budget_thresholds_set,
    channel_create,
    channel_delete,
    channel_test,
    channel_update,
    rule_create,
    rule_delete,
    rule_update,
)


def register(router) -> list:
    router.register("notification-channels", ChannelViewSet, basename="notification-channel")
    router.register("notification-rules", RuleViewSet, basename="notification-rule")
    router.register("notification-deliveries", DeliveryViewSet, basename="notification-delivery")
    return [
        path(
            "budgets/<str:pk>/notification-thresholds/",
            BudgetThresholdsView.as_view(),
            name="budget-notification-thresholds",
        )
    ]


class ChannelViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ModelViewSet):
    schema_model = Channel
    serializer_class = ChannelSerializer
    ordering = ("id",)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_tenant_queryset(self, tenant):
        return channel_list(tenant=tenant)

    @extend_schema(responses={201: ChannelCreatedSerializer})
    def create(self, request, *args, **kwargs):
        """Create a channel; a webhook channel's `secret` is in this answer and never again."""
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with service_errors_as_400():
            channel = channel_create(tenant=self.get_tenant(), data=serializer.validated_data)
        return Response(ChannelCreatedSerializer(channel).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        with service_errors_as_400():
            serializer.instance = channel_update(
                channel=serializer.instance, data=serializer.validated_data
            )

    def perform_destroy(self, instance):
        channel_delete(channel=instance)

    @extend_schema(request=None, responses=DeliverySerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a test message through the channel now and return its delivery."""
        delivery = channel_test(channel=self.get_object())
        return Response(DeliverySerializer(delivery).data)


class RuleViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ModelViewSet):
    schema_model = Rule
    serializer_class = RuleSerializer
    ordering = ("id",)
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_tenant_queryset(self, tenant):
        return rule_list(tenant=tenant)

    def _channel(self, data: dict) -> dict:
        data = dict(data)
        if "channel_id" in data:
            # Another tenant's channel reads as one that does not exist.
            channel = channel_list(tenant=self.get_tenant()).filter(pk=data.pop("channel_id"))
            data["channel"] = channel.first()
            if data["channel"] is None:
                raise exceptions.ValidationError({"channel": ["does not exist"]})
        return data

    def perform_create(self, serializer):
        with service_errors_as_400():
            serializer.instance = rule_create(
                tenant=self.get_tenant(), data=self._channel(serializer.validated_data)
            )

    def perform_update(self, serializer):
        with service_errors_as_400():
            serializer.instance = rule_update(
                rule=serializer.instance, data=self._channel(serializer.validated_data)
            )

    def perform_destroy(self, instance):
        rule_delete(rule=instance)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("status", str),
            OpenApiParameter("event_type", str),
            OpenApiParameter("channel", int),
        ]
    )
)
class DeliveryViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ReadOnlyModelViewSet):
    """Every message the outbox holds for the tenant: status, attempts, last error, latency."""

    schema_model = Delivery
    serializer_class = DeliverySerializer
    ordering = ("-id",)

    def get_tenant_queryset(self, tenant):
        if self.action != "list":
            return delivery_list(tenant=tenant)
        return delivery_list(
            tenant=tenant, filters=query_filters(self.request, DeliveryFilterSerializer)
        )


class BudgetThresholdsView(APIView):
    """A budget's notification thresholds in % of its limit (default 50, 80, 100)."""

    def _budget(self, request, pk: str):
        # Any path segment routes here (as the router's `{id}` does); one that is not an id
        # of the tenant's budgets is a 404.
        if not (pk.isascii() and pk.isdigit() and len(pk) <= 18):
            raise Http404
        return get_object_or_404(budget_list(tenant=request_tenant(request)), pk=int(pk))

    @extend_schema(responses=BudgetThresholdsSerializer)
    def get(self, request, pk: str):
        budget = self._budget(request, pk)
        body = {"budget": budget.pk, "thresholds_pct": budget_thresholds_get(budget=budget)}
        return Response(BudgetThresholdsSerializer(body).data)

    @extend_schema(request=BudgetThresholdsSerializer, responses=BudgetThresholdsSerializer)
    def put(self, request, pk: str):
        budget = self._budget(request, pk)
        data = validated(BudgetThresholdsSerializer, request.data)
        with service_errors_as_400():
            row = budget_thresholds_set(budget=budget, thresholds_pct=data["thresholds_pct"])
        body = {"budget": budget.pk, "thresholds_pct": row.thresholds_pct}
        return Response(BudgetThresholdsSerializer(body).data)
