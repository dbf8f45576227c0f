from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from analytics.models.tenancy import Tenant

# $1,000,000 per million tokens: far above any list price, low enough to catch unit mistakes.
MAX_CENTS_PER_MTOK = Decimal(100_000_000)


def _price_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=15,
        decimal_places=6,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(MAX_CENTS_PER_MTOK)],
        **kwargs,
    )


class ModelPriceOverride(models.Model):
    """A tenant's own price for a model (negotiated discount, fine-tuned or self-hosted model).

    From `effective_from` on it prices the tenant's records of matching models in place of the
    price catalogue. Prices are in cents per million tokens; a cache price left empty charges
    those tokens at the input price.
    """

    class Match(models.TextChoices):
        EXACT = "exact", "Exact model name"
        PREFIX = "prefix", "Model name prefix"

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="+")
    model = models.CharField(max_length=64, help_text="The model name, or its prefix.")
    match = models.CharField(max_length=8, choices=Match.choices, default=Match.EXACT)
    provider = models.CharField(
        max_length=64, null=True, blank=True, help_text="Empty: records of any provider."
    )
    input_cents_per_mtok = _price_field()
    output_cents_per_mtok = _price_field()
    cache_read_cents_per_mtok = _price_field(null=True, blank=True)
    cache_write_cents_per_mtok = _price_field(null=True, blank=True)
    effective_from = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model", "provider", "effective_from", "id"]
        constraints = [
            # One price per pattern and instant; NULL providers compare equal.
            models.UniqueConstraint(
                fields=["tenant", "model", "match", "provider", "effective_from"],
                nulls_distinct=False,
                name="modelprice_tenant_pattern_from_uniq",
            ),
            models.CheckConstraint(
                condition=Q(match__in=["exact", "prefix"]), name="modelprice_match_valid"
            ),
            models.CheckConstraint(
                condition=Q(input_cents_per_mtok__gte=0)
                & Q(output_cents_per_mtok__gte=0)
                & (Q(cache_read_cents_per_mtok__isnull=True) | Q(cache_read_cents_per_mtok__gte=0))
                & (
                    Q(cache_write_cents_per_mtok__isnull=True)
                    | Q(cache_write_cents_per_mtok__gte=0)
                ),
                name="modelprice_prices_nonneg",
            ),
        ]

    def __str__(self) -> str:
        pattern = self.model if self.match == self.Match.EXACT else f"{self.model}*"
        return f"{pattern} from {self.effective_from:%Y-%m-%d %H:%M}"
