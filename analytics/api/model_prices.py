"""Tenant price overrides (`/model-prices/`) and the reprice verb's bodies."""

from django.utils import timezone
from rest_framework import viewsets

from analytics.api.fields import StrictModelSerializer
from analytics.api.views import SchemaSafeMixin, service_errors_as_400
from analytics.api.viewsets import TenantScopedMixin
from analytics.models import ModelPriceOverride
from analytics.selectors.pricing import model_price_list
from analytics.services.pricing import (
    OVERRIDE_FIELDS,
    model_price_create,
    model_price_delete,
    model_price_update,
)


def register(router) -> list:
    router.register("model-prices", ModelPriceViewSet, basename="model-price")
    return []


class ModelPriceSerializer(StrictModelSerializer):
    class Meta:
        model = ModelPriceOverride
        fields = ("id", *OVERRIDE_FIELDS, "created_at", "updated_at")
        read_only_fields = ("id", "created_at", "updated_at")
        extra_kwargs = {
            "model": {
                "allow_blank": False,
                "help_text": "The model name as records carry it (`exact`), or the start of "
                "such names (`prefix`, e.g. `ft:gpt-4o-mini:acme:`).",
            },
            "match": {
                "help_text": "`exact` (default) or `prefix`. Of the overrides in effect at a "
                "record's created_at, an exact name wins over any prefix, a longer prefix over "
                "a shorter one, then a named provider over any provider; of equals, the latest "
                "effective_from."
            },
            "provider": {
                "allow_blank": False,
                "help_text": "Only records of this provider; null (default): any provider.",
            },
            "input_cents_per_mtok": {
                "help_text": "Cents per million uncached input tokens, up to 6 decimals."
            },
            "output_cents_per_mtok": {"help_text": "Cents per million output tokens."},
            "cache_read_cents_per_mtok": {
                "help_text": "Cents per million cache-read tokens; null: the input price."
            },
            "cache_write_cents_per_mtok": {
                "help_text": "Cents per million cache-write tokens; null: the input price."
            },
            "effective_from": {
                "required": False,
                "help_text": "Prices records created at or after this instant; default: now. "
                "Stored records keep their cost until repriced (POST /cost-records/reprice/).",
            },
        }

    def validate(self, attrs):
        if self.instance is None and "effective_from" not in attrs:
            attrs["effective_from"] = timezone.now()
        return attrs


class ModelPriceViewSet(SchemaSafeMixin, TenantScopedMixin, viewsets.ModelViewSet):
    """The tenant's own model prices, which win over the price catalogue."""

    schema_model = ModelPriceOverride
    serializer_class = ModelPriceSerializer
    # Cursor pages order by non-null fields only (provider may be null).
    ordering = ("model", "effective_from", "id")

    def get_tenant_queryset(self, tenant):
        return model_price_list(tenant=tenant)

    def perform_create(self, serializer):
        with service_errors_as_400():
            serializer.instance = model_price_create(
                tenant=self.get_tenant(), data=serializer.validated_data
            )

    def perform_update(self, serializer):
        with service_errors_as_400():
            serializer.instance = model_price_update(
                override=serializer.instance, data=serializer.validated_data
            )

    def perform_destroy(self, instance):
        model_price_delete(override=instance)
