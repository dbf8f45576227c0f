# A counter that moves whenever an API key or a tenant changes in a way authentication
# depends on, so a process can keep the keys it has looked up and still refuse a revoked key
# on the very next request (analytics.api.authentication).
#
# Triggers rather than application code: every path is covered, Model.save(), the admin's
# bulk revoke (QuerySet.update), a deletion, raw SQL. The counter is a table row, not a
# sequence, because the bump must commit together with the change it announces: a sequence
# would move before the revocation is visible, and a process that re-read the key in
# between would keep the unrevoked row under the new value. Statement-level triggers bump
# once per statement. Writes of last_used_at alone (UPDATE OF lists the other columns) do
# not bump, so a busy key does not invalidate every process's cache.

from django.db import migrations

FORWARD = """
CREATE TABLE analytics_apikey_generation (
    id smallint PRIMARY KEY CHECK (id = 1),
    value bigint NOT NULL
);
INSERT INTO analytics_apikey_generation (id, value) VALUES (1, 0);

-- An upsert, so the counter moves even if the row was removed.
CREATE FUNCTION analytics_apikey_generation_bump() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO analytics_apikey_generation (id, value) VALUES (1, 1)
    ON CONFLICT (id) DO UPDATE SET value = analytics_apikey_generation.value + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER apikey_generation_update
AFTER UPDATE OF tenant_id, name, prefix, key_hash, is_staff, created_at, revoked_at
    OR DELETE ON analytics_apikey
FOR EACH STATEMENT EXECUTE FUNCTION analytics_apikey_generation_bump();
CREATE TRIGGER apikey_generation_truncate
AFTER TRUNCATE ON analytics_apikey
FOR EACH STATEMENT EXECUTE FUNCTION analytics_apikey_generation_bump();

CREATE TRIGGER tenant_generation_update
AFTER UPDATE OF slug, name, is_active, created_at OR DELETE ON analytics_tenant
FOR EACH STATEMENT EXECUTE FUNCTION analytics_apikey_generation_bump();
CREATE TRIGGER tenant_generation_truncate
AFTER TRUNCATE ON analytics_tenant
FOR EACH STATEMENT EXECUTE FUNCTION analytics_apikey_generation_bump();
"""

BACKWARD = """
DROP TRIGGER tenant_generation_truncate ON analytics_tenant;
DROP TRIGGER tenant_generation_update ON analytics_tenant;
DROP TRIGGER apikey_generation_truncate ON analytics_apikey;
DROP TRIGGER apikey_generation_update ON analytics_apikey;
DROP FUNCTION analytics_apikey_generation_bump();
DROP TABLE analytics_apikey_generation;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0004_ingest_bounds_sent_feature_tag"),
    ]

    operations = [migrations.RunSQL(FORWARD, BACKWARD)]
