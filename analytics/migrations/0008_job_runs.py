# Job runs: a fanned-out per-tenant job's dispatch and the progress of each tenant chunk.
import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("analytics", "0007_budget_reservations")]

    operations = [
        migrations.CreateModel(
            name="JobRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("job", models.CharField(editable=False, max_length=64)),
                ("scheduled_for", models.DateTimeField(editable=False)),
                ("params", models.JSONField(default=dict, editable=False)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("running", "Running"),
                            ("success", "Success"),
                            ("failed", "Failed"),
                        ],
                        default="running",
                        editable=False,
                        max_length=8,
                    ),
                ),
                ("chunk_size", models.PositiveIntegerField(editable=False)),
                ("chunks_total", models.PositiveIntegerField(editable=False)),
                ("tenants_total", models.PositiveIntegerField(editable=False)),
                ("started_at", models.DateTimeField(editable=False)),
                ("finished_at", models.DateTimeField(blank=True, editable=False, null=True)),
            ],
            options={
                "ordering": ["-started_at", "-id"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("job", "scheduled_for"), name="jobrun_natural_key"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("finished_at__isnull", True), ("status", "running")),
                            models.Q(
                                models.Q(("status", "running"), _negated=True),
                                ("finished_at__isnull", False),
                            ),
                            _connector="OR",
                        ),
                        name="jobrun_finished_iff_done",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="JobChunk",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("index", models.PositiveIntegerField(editable=False)),
                (
                    "tenant_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.BigIntegerField(), editable=False, size=None
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("running", "Running"),
                            ("retrying", "Retrying"),
                            ("success", "Success"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                        editable=False,
                        max_length=8,
                    ),
                ),
                ("attempts", models.PositiveIntegerField(default=0, editable=False)),
                (
                    "done_tenant_ids",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.BigIntegerField(),
                        default=list,
                        editable=False,
                        size=None,
                    ),
                ),
                (
                    "failed_tenants",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.CharField(max_length=64),
                        default=list,
                        editable=False,
                        size=None,
                    ),
                ),
                ("totals", models.JSONField(default=dict, editable=False)),
                ("error", models.TextField(blank=True, default="", editable=False)),
                ("started_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("finished_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "run",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="chunks",
                        to="analytics.jobrun",
                    ),
                ),
            ],
            options={
                "ordering": ["run", "index"],
                "constraints": [
                    models.UniqueConstraint(fields=("run", "index"), name="jobchunk_natural_key"),
                ],
            },
        ),
    ]
