# Cost from tokens: cache token counts, how a record's cost was obtained, and tenant price
# overrides. Every existing record carried a client cost, hence the `client` default; the new
# columns are constant defaults, so no table rewrite.
from decimal import Decimal

import django.core.validators
import django.db.models.deletion
import django.db.models.expressions
from django.db import migrations, models


def _price_field(**kwargs):
    return models.DecimalField(
        decimal_places=6,
        max_digits=15,
        validators=[
            django.core.validators.MinValueValidator(Decimal("0")),
            django.core.validators.MaxValueValidator(Decimal("100000000")),
        ],
        **kwargs,
    )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0005_api_key_generation")]

    operations = [
        migrations.RemoveConstraint(model_name="costrecord", name="costrecord_cost_nonneg"),
        migrations.AddField(
            model_name="costrecord",
            name="cache_read_tokens",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="costrecord",
            name="cache_write_tokens",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.AddField(
            model_name="costrecord",
            name="cost_source",
            field=models.CharField(
                choices=[
                    ("client", "Sent by the client"),
                    ("catalog", "Price catalogue"),
                    ("override", "Tenant price override"),
                    ("unpriced", "Unpriced"),
                ],
                db_default="client",
                default="client",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="costrecord",
            name="price_catalog_version",
            field=models.CharField(blank=True, max_length=32, null=True),
        ),
        migrations.AlterField(
            model_name="costrecord",
            name="cost_cents",
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=18, null=True),
        ),
        migrations.AddConstraint(
            model_name="costrecord",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("cost_cents__isnull", True), ("cost_cents__gte", 0), _connector="OR"
                ),
                name="costrecord_cost_nonneg",
            ),
        ),
        migrations.AddConstraint(
            model_name="costrecord",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("cache_read_tokens__gte", 0),
                    ("cache_write_tokens__gte", 0),
                    (
                        "input_tokens__gte",
                        django.db.models.expressions.CombinedExpression(
                            models.F("cache_read_tokens"), "+", models.F("cache_write_tokens")
                        ),
                    ),
                ),
                name="costrecord_cache_tokens_in_input",
            ),
        ),
        migrations.AddConstraint(
            model_name="costrecord",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("cost_source", "unpriced"), ("cost_cents__isnull", True)),
                    models.Q(
                        models.Q(("cost_source", "unpriced"), _negated=True),
                        ("cost_cents__isnull", False),
                    ),
                    _connector="OR",
                ),
                name="costrecord_cost_iff_priced",
            ),
        ),
        migrations.AddConstraint(
            model_name="costrecord",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("cost_source__in", ["client", "catalog", "override", "unpriced"])
                ),
                name="costrecord_cost_source",
            ),
        ),
        migrations.AddField(
            model_name="snapshotaggregate",
            name="unpriced_records",
            field=models.BigIntegerField(db_default=0, default=0),
        ),
        migrations.CreateModel(
            name="ModelPriceOverride",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "model",
                    models.CharField(help_text="The model name, or its prefix.", max_length=64),
                ),
                (
                    "match",
                    models.CharField(
                        choices=[("exact", "Exact model name"), ("prefix", "Model name prefix")],
                        default="exact",
                        max_length=8,
                    ),
                ),
                (
                    "provider",
                    models.CharField(
                        blank=True,
                        help_text="Empty: records of any provider.",
                        max_length=64,
                        null=True,
                    ),
                ),
                ("input_cents_per_mtok", _price_field()),
                ("output_cents_per_mtok", _price_field()),
                ("cache_read_cents_per_mtok", _price_field(blank=True, null=True)),
                ("cache_write_cents_per_mtok", _price_field(blank=True, null=True)),
                ("effective_from", models.DateTimeField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="analytics.tenant",
                    ),
                ),
            ],
            options={"ordering": ["model", "provider", "effective_from", "id"]},
        ),
        migrations.AddConstraint(
            model_name="modelpriceoverride",
            constraint=models.UniqueConstraint(
                fields=("tenant", "model", "match", "provider", "effective_from"),
                name="modelprice_tenant_pattern_from_uniq",
                nulls_distinct=False,
            ),
        ),
        migrations.AddConstraint(
            model_name="modelpriceoverride",
            constraint=models.CheckConstraint(
                condition=models.Q(("match__in", ["exact", "prefix"])),
                name="modelprice_match_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="modelpriceoverride",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("input_cents_per_mtok__gte", 0),
                    ("output_cents_per_mtok__gte", 0),
                    models.Q(
                        ("cache_read_cents_per_mtok__isnull", True),
                        ("cache_read_cents_per_mtok__gte", 0),
                        _connector="OR",
                    ),
                    models.Q(
                        ("cache_write_cents_per_mtok__isnull", True),
                        ("cache_write_cents_per_mtok__gte", 0),
                        _connector="OR",
                    ),
                ),
                name="modelprice_prices_nonneg",
            ),
        ),
    ]
