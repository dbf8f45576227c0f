from django.db import migrations, models

# Reservations made before retries were recognised may share a call id while open. The
# newest of each call keeps holding; the older ones are released, which is what a retry
# would have meant, so the unique indexes below can be built.
RELEASE_OLDER_DUPLICATES = """
UPDATE analytics_budgetreservation v
SET status = 'released', closed_at = now()
FROM (
    SELECT id,
           row_number() OVER (
               PARTITION BY tenant_id, COALESCE(request_id, ''),
                            CASE WHEN request_id IS NULL THEN run_id END
               ORDER BY created_at DESC, id DESC
           ) AS newest_first
    FROM analytics_budgetreservation
    WHERE status = 'open'
) ranked
WHERE v.id = ranked.id AND ranked.newest_first > 1
"""


class Migration(migrations.Migration):
    dependencies = [("analytics", "0010_cost_rollup")]

    operations = [
        migrations.RunSQL(RELEASE_OLDER_DUPLICATES, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="budgetreservation",
            constraint=models.UniqueConstraint(
                condition=models.Q(("request_id__isnull", False), ("status", "open")),
                fields=("tenant", "request_id"),
                name="reservation_open_request",
            ),
        ),
        migrations.AddConstraint(
            model_name="budgetreservation",
            constraint=models.UniqueConstraint(
                condition=models.Q(("request_id__isnull", True), ("status", "open")),
                fields=("tenant", "run_id"),
                name="reservation_open_run",
            ),
        ),
    ]
