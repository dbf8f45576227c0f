"""Reads of tenant price overrides."""

from django.db.models import QuerySet

from analytics.models import ModelPriceOverride, Tenant
from analytics.services.price_catalog import OverrideRule, Rate


def model_price_list(*, tenant: Tenant) -> QuerySet[ModelPriceOverride]:
    return ModelPriceOverride.objects.filter(tenant=tenant)


def override_rules(*, tenant: Tenant) -> list[OverrideRule]:
    """The tenant's overrides as the pricing engine takes them (one query)."""
    return [
        OverrideRule(
            model=row.model,
            prefix=row.match == ModelPriceOverride.Match.PREFIX,
            provider=row.provider,
            effective_from=row.effective_from,
            rate=Rate(
                input=row.input_cents_per_mtok,
                output=row.output_cents_per_mtok,
                cache_read=row.cache_read_cents_per_mtok,
                cache_write=row.cache_write_cents_per_mtok,
            ),
        )
        for row in ModelPriceOverride.objects.filter(tenant=tenant).order_by("id")
    ]
