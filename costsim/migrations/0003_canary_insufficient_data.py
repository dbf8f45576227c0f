"""Canary reports that could not decide: status `insufficient_data`, the floor they were
judged against, how many samples were evaluated, and null distances when too few were.
"""

from django.db import migrations, models

# Reports written before this migration: the evaluated count is the length of their
# comparison list, and an `error` report (nothing evaluated) computed no distance.
BACKFILL_SQL = """
UPDATE costsim_canaryreport
SET evaluated_samples = jsonb_array_length(comparisons)
WHERE jsonb_typeof(comparisons) = 'array';
UPDATE costsim_canaryreport SET kl_divergence = NULL, js_distance = NULL WHERE status = 'error';
"""
# Going back, the columns become NOT NULL again and the status column has no room for
# `insufficient_data`; `error` is the old status closest to "judged nothing".
UNBACKFILL_SQL = """
UPDATE costsim_canaryreport SET status = 'error' WHERE status = 'insufficient_data';
UPDATE costsim_canaryreport SET kl_divergence = 0 WHERE kl_divergence IS NULL;
UPDATE costsim_canaryreport SET js_distance = 0 WHERE js_distance IS NULL;
"""


class Migration(migrations.Migration):
    dependencies = [("costsim", "0002_breaker_row")]

    operations = [
        migrations.AddField(
            model_name="canaryreport",
            name="evaluated_samples",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="canaryreport",
            name="min_samples",
            field=models.IntegerField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="canaryreport",
            name="js_distance",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="canaryreport",
            name="kl_divergence",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="canaryreport",
            name="status",
            field=models.CharField(
                choices=[
                    ("pass", "Pass"),
                    ("fail", "Fail"),
                    ("error", "Error"),
                    ("skipped", "Skipped"),
                    ("insufficient_data", "Insufficient data"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunSQL(BACKFILL_SQL, UNBACKFILL_SQL),
    ]
