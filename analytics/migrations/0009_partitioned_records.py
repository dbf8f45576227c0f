"""Cost records partitioned by month of created_at; idempotency keys in their own table;
per-tenant retention.

The move runs in the migration's transaction with the old table locked: a new partitioned
table takes the old one's name, gets a partition for every month holding records, for the
current month and COSTWISE_PARTITION_MONTHS_AHEAD months after it, and a DEFAULT partition;
the rows are copied with their ids, the id sequence goes on from where the old one stood, the
keys are copied into analytics_costrecordkey, the old table is dropped, and its indexes and
foreign key are created again on the parent (so every partition, present and future, gets
them; check constraints come with the table). The primary key becomes (id, created_at), as
PostgreSQL wants the partition key in every unique index; the model keeps `id` as its pk.

Reversible: backwards, the same steps build one plain table again (primary key id, the
partial unique index on (tenant_id, idempotency_key)) from the partitions.
"""

from datetime import UTC, datetime

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TABLE = "analytics_costrecord"
KEY_TABLE = "analytics_costrecordkey"
OLD = "analytics_costrecord_unpartitioned"
PARTITIONED = "analytics_costrecord_partitioned"
# Created again from scratch or dropped on purpose, so never copied by name.
SKIPPED_INDEXES = ("costrecord_tenant_idem_key_uniq",)
FK_INDEX = "analytics_costrecord_tenant_id_2782d7e5"


def _month_add(month: datetime, months: int) -> datetime:
    index = month.year * 12 + month.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def _columns(cursor, table: str) -> str:
    cursor.execute(
        "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute"
        " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        [table],
    )
    return cursor.fetchone()[0]


def _indexes(cursor, table: str) -> list[str]:
    """CREATE INDEX statements of `table`'s indexes, primary key and skipped ones aside,
    rewritten for analytics_costrecord."""
    cursor.execute(
        "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid"
        " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary ORDER BY i.relname",
        [table],
    )
    statements = []
    for name, definition in cursor.fetchall():
        if name in SKIPPED_INDEXES or name == FK_INDEX:
            continue
        # A partitioned table's index reads "ON ONLY": the plain table has no partitions.
        for on in (f" ON ONLY public.{table} ", f" ON public.{table} "):
            definition = definition.replace(on, f" ON {TABLE} ")
        statements.append(definition)
    return statements


def _foreign_keys(cursor, table: str) -> list[tuple[str, str]]:
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname",
        [table],
    )
    return cursor.fetchall()


def _sequence_carry(cursor, old: str) -> str:
    """Let the new table's id sequence go on where `old`'s stood, under the usual name."""
    cursor.execute(
        "SELECT pg_get_serial_sequence(%s, 'id'), pg_get_serial_sequence(%s, 'id')", [old, TABLE]
    )
    old_sequence, new_sequence = cursor.fetchone()
    cursor.execute(f"SELECT last_value, is_called FROM {old_sequence}")
    last_value, is_called = cursor.fetchone()
    cursor.execute("SELECT setval(%s, %s, %s)", [new_sequence, last_value, is_called])
    return new_sequence


def _finish(
    cursor, *, old: str, primary_key: str, indexes: list[str], foreign_keys, new_sequence: str
) -> None:
    """Drop `old`, then give the new table the names and indexes it had (built after the
    copy, which is faster than maintaining them row by row)."""
    cursor.execute(f"DROP TABLE {old} CASCADE")
    cursor.execute(f"ALTER SEQUENCE {new_sequence} RENAME TO {TABLE}_id_seq")
    cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY ({primary_key})")
    for statement in indexes:
        cursor.execute(statement)
    for name, definition in foreign_keys:
        cursor.execute(f"ALTER TABLE {TABLE} ADD CONSTRAINT {name} {definition}")


def partition_records(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
        indexes = _indexes(cursor, OLD)
        foreign_keys = _foreign_keys(cursor, OLD)
        cursor.execute(
            f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING IDENTITY"
            " INCLUDING CONSTRAINTS) PARTITION BY RANGE (created_at)"
        )
        cursor.execute(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT")

        cursor.execute(
            f"SELECT DISTINCT date_trunc('month', created_at, 'UTC') FROM {OLD}"
        )
        months = {row[0].astimezone(UTC) for row in cursor.fetchall()}
        now = datetime.now(UTC)
        this_month = datetime(now.year, now.month, 1, tzinfo=UTC)
        ahead = getattr(settings, "COSTWISE_PARTITION_MONTHS_AHEAD", 3)
        months.update(_month_add(this_month, n) for n in range(ahead + 1))
        for month in sorted(months):
            cursor.execute(
                f"CREATE TABLE {TABLE}_p{month:%Y_%m} PARTITION OF {TABLE}"
                " FOR VALUES FROM (%s) TO (%s)",
                [month, _month_add(month, 1)],
            )

        columns = _columns(cursor, OLD)
        cursor.execute(f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {OLD}")
        cursor.execute(
            f"INSERT INTO {KEY_TABLE} (tenant_id, idempotency_key, record_id, created_at)"
            f" SELECT tenant_id, idempotency_key, id, created_at FROM {OLD}"
            " WHERE idempotency_key IS NOT NULL"
        )
        new_sequence = _sequence_carry(cursor, OLD)
        _finish(
            cursor,
            old=OLD,
            primary_key="id, created_at",
            indexes=indexes,
            foreign_keys=foreign_keys,
            new_sequence=new_sequence,
        )


def unpartition_records(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {PARTITIONED}")
        indexes = _indexes(cursor, PARTITIONED)
        foreign_keys = _foreign_keys(cursor, PARTITIONED)
        cursor.execute(
            f"CREATE TABLE {TABLE} (LIKE {PARTITIONED} INCLUDING DEFAULTS INCLUDING IDENTITY"
            " INCLUDING CONSTRAINTS)"
        )
        columns = _columns(cursor, PARTITIONED)
        cursor.execute(f"INSERT INTO {TABLE} ({columns}) SELECT {columns} FROM {PARTITIONED}")
        new_sequence = _sequence_carry(cursor, PARTITIONED)
        indexes += [
            f"CREATE INDEX {FK_INDEX} ON {TABLE} (tenant_id)",
            f"CREATE UNIQUE INDEX costrecord_tenant_idem_key_uniq ON {TABLE}"
            " (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL",
        ]
        _finish(
            cursor,
            old=PARTITIONED,
            primary_key="id",
            indexes=indexes,
            foreign_keys=foreign_keys,
            new_sequence=new_sequence,
        )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0008_job_runs")]

    operations = [
        migrations.AddField(
            model_name="tenant",
            name="retention_days",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="Days raw cost records are kept; empty for the project default.",
                null=True,
                validators=[
                    django.core.validators.MinValueValidator(31),
                    django.core.validators.MaxValueValidator(3660),
                ],
            ),
        ),
        migrations.AddConstraint(
            model_name="tenant",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("retention_days__isnull", True),
                    models.Q(("retention_days__gte", 31), ("retention_days__lte", 3660)),
                    _connector="OR",
                ),
                name="tenant_retention_days_range",
            ),
        ),
        migrations.CreateModel(
            name="CostRecordKey",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "tenant",
                        "idempotency_key",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "tenant",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.DO_NOTHING,
                        related_name="+",
                        to="analytics.tenant",
                    ),
                ),
                ("idempotency_key", models.CharField(max_length=64)),
                ("record_id", models.BigIntegerField()),
                ("created_at", models.DateTimeField()),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="costrecord", name="costrecord_tenant_idem_key_uniq"
                ),
                migrations.AlterField(
                    model_name="costrecord",
                    name="tenant",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="analytics.tenant",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(partition_records, unpartition_records, elidable=False),
            ],
        ),
    ]
