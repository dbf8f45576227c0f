"""Hourly rollups of cost records, kept by statement-level triggers, and their backfill.

Every statement that inserts cost records (ingest, OTLP, the demo data, COPY loaders) runs
one AFTER INSERT trigger with the statement's rows as a transition table; it adds them per
(tenant, UTC hour, feature tag, user, model) with one grouped INSERT ... ON CONFLICT DO
UPDATE. An AFTER UPDATE trigger (reprice, or any correction) subtracts the old rows and adds
the new ones the same way, and writes nothing when the update changed no sum. Deletes have no
trigger: rollups keep the sums of records that retention removes, as snapshots do.

The rows are upserted in key order, so two statements touching the same keys lock them in
the same order and wait for each other instead of deadlocking. Statement-level triggers with
transition tables fire on a partitioned parent for the rows of all its partitions.

The table is locked before the triggers are created and the backfill runs, so no record can
be written between the backfill's read and the triggers taking over.
"""

import django.db.models.deletion
from django.db import migrations, models

ROLLUP_COLUMNS = (
    "tenant_id, hour, feature_tag, user_id, model, requests, spend_cents, input_tokens, "
    "output_tokens, unpriced_records"
)
# A record's sums as the rollup keeps them; unpriced records are those without a cost
# (costrecord_cost_iff_priced ties a NULL cost to cost_source 'unpriced').
RECORD_SUMS = """
    tenant_id, date_trunc('hour', created_at, 'UTC') AS hour, feature_tag, user_id, model,
    count(*) AS requests, COALESCE(sum(cost_cents), 0) AS spend_cents,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    count(*) FILTER (WHERE cost_cents IS NULL) AS unpriced_records"""
ON_CONFLICT_ADD = """
    ON CONFLICT ON CONSTRAINT costrollup_key DO UPDATE SET
        requests = u.requests + EXCLUDED.requests,
        spend_cents = u.spend_cents + EXCLUDED.spend_cents,
        input_tokens = u.input_tokens + EXCLUDED.input_tokens,
        output_tokens = u.output_tokens + EXCLUDED.output_tokens,
        unpriced_records = u.unpriced_records + EXCLUDED.unpriced_records"""

CREATE_TRIGGERS = f"""
-- The current hour's rows are updated by every batch, each update leaving a dead version
-- that reads of the hour step over until vacuum removes it: room on the page for updates in
-- place (HOT), and vacuum after a fixed number of dead rows rather than a fifth of a table
-- that only grows (measured: 5 buffer reads per row after 10 minutes of the load test
-- without it, 1 after a vacuum).
ALTER TABLE analytics_costrollup SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000
);

-- Deleting a tenant deletes its rollups, in plain SQL too. A trigger rather than a foreign
-- key: a foreign key checks the tenant of every new rollup row at commit, about a tenth of
-- the trigger's cost when each record of a batch lands in a key of its own.
CREATE FUNCTION analytics_costrollup_tenant_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM analytics_costrollup WHERE tenant_id IN (SELECT id FROM deleted_tenants);
    RETURN NULL;
END $$;

CREATE TRIGGER costrollup_tenant_delete AFTER DELETE ON analytics_tenant
    REFERENCING OLD TABLE AS deleted_tenants
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_costrollup_tenant_delete();

LOCK TABLE analytics_costrecord IN SHARE ROW EXCLUSIVE MODE;

CREATE FUNCTION analytics_costrollup_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_costrollup AS u ({ROLLUP_COLUMNS})
    SELECT {RECORD_SUMS}
    FROM inserted_records
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    {ON_CONFLICT_ADD};
    RETURN NULL;
END $$;

CREATE FUNCTION analytics_costrollup_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_costrollup AS u ({ROLLUP_COLUMNS})
    SELECT tenant_id, hour, feature_tag, user_id, model, sum(requests), sum(spend_cents),
           sum(input_tokens), sum(output_tokens), sum(unpriced_records)
    FROM (
        SELECT tenant_id, date_trunc('hour', created_at, 'UTC') AS hour, feature_tag,
               user_id, model, -1 AS requests, -COALESCE(cost_cents, 0) AS spend_cents,
               -input_tokens AS input_tokens, -output_tokens AS output_tokens,
               -(cost_cents IS NULL)::int AS unpriced_records
        FROM old_records
        UNION ALL
        SELECT tenant_id, date_trunc('hour', created_at, 'UTC'), feature_tag, user_id, model,
               1, COALESCE(cost_cents, 0), input_tokens, output_tokens,
               (cost_cents IS NULL)::int
        FROM new_records
    ) delta
    GROUP BY 1, 2, 3, 4, 5
    -- An update that moved no sum (another column, or the same price again) locks nothing.
    HAVING sum(requests) <> 0 OR sum(spend_cents) <> 0 OR sum(input_tokens) <> 0
        OR sum(output_tokens) <> 0 OR sum(unpriced_records) <> 0
    ORDER BY 1, 2, 3, 4, 5
    {ON_CONFLICT_ADD};
    RETURN NULL;
END $$;

CREATE TRIGGER costrollup_insert AFTER INSERT ON analytics_costrecord
    REFERENCING NEW TABLE AS inserted_records
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_costrollup_insert();

CREATE TRIGGER costrollup_update AFTER UPDATE ON analytics_costrecord
    REFERENCING OLD TABLE AS old_records NEW TABLE AS new_records
    FOR EACH STATEMENT EXECUTE FUNCTION analytics_costrollup_update();

INSERT INTO analytics_costrollup ({ROLLUP_COLUMNS})
SELECT {RECORD_SUMS}
FROM analytics_costrecord
GROUP BY 1, 2, 3, 4, 5;
"""

DROP_TRIGGERS = """
DROP TRIGGER costrollup_tenant_delete ON analytics_tenant;
DROP FUNCTION analytics_costrollup_tenant_delete();
DROP TRIGGER costrollup_update ON analytics_costrecord;
DROP TRIGGER costrollup_insert ON analytics_costrecord;
DROP FUNCTION analytics_costrollup_update();
DROP FUNCTION analytics_costrollup_insert();
"""


class Migration(migrations.Migration):
    dependencies = [("analytics", "0009_partitioned_records")]

    operations = [
        migrations.CreateModel(
            name="CostRollup",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("hour", models.DateTimeField()),
                ("feature_tag", models.CharField(blank=True, max_length=128, null=True)),
                ("user_id", models.CharField(blank=True, max_length=64, null=True)),
                ("model", models.CharField(max_length=64)),
                ("requests", models.BigIntegerField()),
                ("spend_cents", models.DecimalField(decimal_places=6, max_digits=38)),
                ("input_tokens", models.DecimalField(decimal_places=0, max_digits=38)),
                ("output_tokens", models.DecimalField(decimal_places=0, max_digits=38)),
                ("unpriced_records", models.BigIntegerField()),
                (
                    "tenant",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="analytics.tenant",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("tenant", "hour", "feature_tag", "user_id", "model"),
                        name="costrollup_key",
                        nulls_distinct=False,
                    )
                ],
            },
        ),
        migrations.RunSQL(CREATE_TRIGGERS, DROP_TRIGGERS),
    ]
