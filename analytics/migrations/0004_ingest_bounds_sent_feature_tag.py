# Snapshot aggregates wide enough for any sum of cost records, and the feature tag as sent,
# which ingest compares when an idempotency key comes again.
#
# Widening the three aggregate columns rewrites analytics_snapshotaggregate (an ACCESS
# EXCLUSIVE lock for the rewrite). Adding the nullable sent_feature_tag column is a
# catalog-only change: existing cost records keep NULL and are not rewritten.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0003_incidents"),
    ]

    operations = [
        migrations.AlterField(
            model_name="snapshotaggregate",
            name="total_cost_cents",
            field=models.DecimalField(decimal_places=6, max_digits=38),
        ),
        migrations.AlterField(
            model_name="snapshotaggregate",
            name="total_input_tokens",
            field=models.DecimalField(decimal_places=0, max_digits=38),
        ),
        migrations.AlterField(
            model_name="snapshotaggregate",
            name="total_output_tokens",
            field=models.DecimalField(decimal_places=0, max_digits=38),
        ),
        migrations.AddField(
            model_name="costrecord",
            name="sent_feature_tag",
            field=models.CharField(blank=True, editable=False, max_length=128, null=True),
        ),
    ]
