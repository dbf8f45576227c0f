# Budget reservations: budget set aside before a call or run, settled by its cost records.
import django.core.validators
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("analytics", "0006_cost_pricing")]

    operations = [
        migrations.CreateModel(
            name="BudgetReservation",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "amount_cents",
                    models.BigIntegerField(
                        validators=[
                            django.core.validators.MinValueValidator(0),
                            django.core.validators.MaxValueValidator(1000000000000),
                        ]
                    ),
                ),
                (
                    "source",
                    models.CharField(
                        choices=[("amount", "Amount"), ("plan", "Plan estimate")],
                        default="amount",
                        max_length=8,
                    ),
                ),
                ("feature_tag", models.CharField(blank=True, max_length=128, null=True)),
                ("user_id", models.CharField(blank=True, max_length=64, null=True)),
                ("request_id", models.CharField(blank=True, max_length=64, null=True)),
                ("run_id", models.CharField(blank=True, max_length=64, null=True)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("open", "Open"),
                            ("settled", "Settled"),
                            ("released", "Released"),
                            ("expired", "Expired"),
                        ],
                        default="open",
                        max_length=8,
                    ),
                ),
                ("created_at", models.DateTimeField()),
                ("expires_at", models.DateTimeField()),
                ("closed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "tenant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="analytics.tenant",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("status", "open")),
                        fields=["tenant", "expires_at"],
                        name="reservation_open",
                    ),
                    models.Index(
                        fields=["tenant", "-created_at", "-id"], name="reservation_tenant_time"
                    ),
                ],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("amount_cents__gte", 0)),
                        name="reservation_amount_nonneg",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("expires_at__gt", models.F("created_at"))),
                        name="reservation_expires_after",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("request_id__isnull", False),
                            ("run_id__isnull", False),
                            _connector="OR",
                        ),
                        name="reservation_has_call_id",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("status", "open"), ("closed_at__isnull", True)),
                            models.Q(
                                models.Q(("status", "open"), _negated=True),
                                ("closed_at__isnull", False),
                            ),
                            _connector="OR",
                        ),
                        name="reservation_closed_iff_not_open",
                    ),
                ],
            },
        ),
        migrations.AlterField(
            model_name="budget",
            name="hard_limit_enabled",
            field=models.BooleanField(
                default=False,
                help_text="Refuse reservations past the limit (soft budgets only warn).",
            ),
        ),
    ]
