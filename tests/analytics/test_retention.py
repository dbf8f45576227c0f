"""Raw cost record retention: per tenant, whole months dropped, the rest in batches, keys too."""

from datetime import date
from io import StringIO

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction

from analytics.models import CostRecord, CostRecordKey, CostSnapshot, SnapshotType
from analytics.services import partitions
from analytics.services.partitions import partition_create, partitions_list
from analytics.services.retention import retention_run
from analytics.tasks import record_retention_task
from tests.analytics.test_partitions import ingest, rec
from tests.factories import TenantFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2031, 3, 15)


def months() -> set[date]:
    return {partition.month for partition in partitions_list() if partition.month}


@pytest.fixture
def history():
    """Two tenants with records in January 2030, February 2030 and March 2031.

    At NOW, `short` (31 days) keeps only March 2031; `standard` (400 days, the default)
    keeps February 2030 onwards. January 2030 is past both.
    """
    for month in (date(2030, 1, 1), date(2030, 2, 1), date(2031, 3, 1)):
        partition_create(month=month)
    short = TenantFactory(slug="short", retention_days=31)
    standard = TenantFactory(slug="standard")
    for tenant in (short, standard):
        ingest(
            tenant,
            rec(f"{tenant.slug}-jan-1", utc(2030, 1, 10)),
            rec(None, utc(2030, 1, 11)),
            rec(f"{tenant.slug}-feb-1", utc(2030, 2, 20)),
            rec(f"{tenant.slug}-feb-2", utc(2030, 2, 21)),
            rec(None, utc(2030, 2, 22)),
            rec(f"{tenant.slug}-mar-1", utc(2031, 3, 1)),
        )
    # The test's one transaction would still owe the deferred foreign key checks of these
    # rows, and PostgreSQL drops no table with pending checks; production runs commit first.
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    return short, standard


def stored_keys(tenant) -> set[str]:
    return set(
        CostRecordKey.objects.filter(tenant=tenant).values_list("idempotency_key", flat=True)
    )


def test_short_retention_tenant_loses_old_records_and_the_others_keep_theirs(history):
    # given
    short, standard = history
    before = months()
    # when
    report = retention_run(now=NOW, batch_size=2)
    # then
    assert list(
        CostRecord.objects.filter(tenant=short).values_list("idempotency_key", flat=True)
    ) == ["short-mar-1"]
    assert CostRecord.objects.filter(tenant=standard).count() == 4  # February 2030 and March 2031
    # January 2030 and the empty months before it went whole
    dropped = before - months()
    assert date(2030, 1, 1) in dropped
    assert all(month < date(2030, 2, 1) for month in dropped)
    assert report.totals == {
        "partitions_dropped": len(dropped),
        "partitions_busy": 0,
        "rows_dropped": 4,
        "rows_deleted": 3,
        "keys_deleted": 4,  # 2 with their records, 2 of the dropped month
    }


def test_a_month_is_dropped_only_when_past_every_tenants_retention(history):
    # given: a tenant keeping ten years
    TenantFactory(slug="archive", retention_days=3660)
    # when
    report = retention_run(now=NOW)
    # then: January 2030 stays; the short tenant's old records go row by row
    assert date(2030, 1, 1) in months()
    assert report.totals["partitions_dropped"] == 0
    short, standard = history
    assert CostRecord.objects.filter(tenant=short).count() == 1
    assert CostRecord.objects.filter(tenant=standard).count() == 4


def test_the_dropped_month_is_detached_and_dropped(history):
    # when
    retention_run(now=NOW)
    # then
    assert date(2030, 1, 1) not in months()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('analytics_costrecord_p2030_01')")
        assert cursor.fetchone()[0] is None


def test_key_rows_go_with_their_records(history):
    # given
    short, standard = history
    # when
    retention_run(now=NOW)
    # then: a key lives exactly as long as its record
    assert stored_keys(short) == {"short-mar-1"}
    assert stored_keys(standard) == {"standard-feb-1", "standard-feb-2", "standard-mar-1"}
    # and a key freed by retention may be used again
    assert ingest(short, rec("short-feb-1", utc(2031, 3, 14))).accepted == 1


def test_dry_run_counts_and_writes_nothing(history):
    # given
    before = CostRecord.objects.count(), CostRecordKey.objects.count(), months()
    # when
    dry = retention_run(now=NOW, dry_run=True)
    # then
    assert (CostRecord.objects.count(), CostRecordKey.objects.count(), months()) == before
    assert dry.totals == retention_run(now=NOW).totals


def test_a_second_run_finds_nothing_left(history):
    # given
    retention_run(now=NOW)
    # when
    again = retention_run(now=NOW)
    # then
    assert again.totals == dict.fromkeys(again.totals, 0)


def test_one_tenant_alone_drops_no_month(history):
    # given
    short, standard = history
    # when
    report = retention_run(now=NOW, tenant=short)
    # then
    assert date(2030, 1, 1) in months()
    assert report.tenants == 1
    assert CostRecord.objects.filter(tenant=short).count() == 1
    assert CostRecord.objects.filter(tenant=standard).count() == 6


def test_snapshots_are_kept(history):
    # given
    short, _ = history
    snapshot = CostSnapshot.objects.create(
        tenant=short,
        snapshot_type=SnapshotType.DAILY,
        period_start=utc(2030, 1, 10),
        period_end=utc(2030, 1, 11),
    )
    # when
    retention_run(now=NOW)
    # then
    assert CostSnapshot.objects.filter(pk=snapshot.pk).exists()


def test_another_run_holding_the_lock_makes_this_one_skip(history):
    # given
    other = connections.create_connection("default")
    other.connect()
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(7008)")
        # when
        report = retention_run(now=NOW)
    finally:
        other.close()
    # then
    assert report.outcome == "skipped"
    assert CostRecord.objects.count() == 12


def test_command_shows_progress_per_tenant_and_month(history):
    # given
    out = StringIO()
    # when
    with time_machine.travel(NOW, tick=False):
        call_command("retention", "--dry-run", stdout=out)
    # then
    text = out.getvalue()
    assert "Dry run" in text
    assert (
        "2030-01: would drop partition analytics_costrecord_p2030_01 (4 records, "
        "2 idempotency keys)" in text
    )
    assert "short 2030-02: would delete 3 records, 2 idempotency keys" in text
    assert CostRecord.objects.count() == 12


def test_old_records_in_the_default_partition_go_too(history):
    # given: a record of 2001, in DEFAULT (no partition for its month)
    _, standard = history
    ingest(standard, rec("ancient", utc(2001, 5, 5)))
    # when
    report = retention_run(now=NOW)
    # then
    assert not CostRecord.objects.filter(tenant=standard, idempotency_key="ancient").exists()
    assert "ancient" not in stored_keys(standard)
    assert report.totals["rows_deleted"] == 3 + 1


def test_a_month_whose_table_stays_busy_is_left_for_the_next_run(history, monkeypatch):
    # given: another session reads the table in a long transaction
    monkeypatch.setattr(partitions, "DDL_LOCK_TIMEOUT", "100ms")
    other = connections.create_connection("default")
    other.connect()
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
            cursor.execute("LOCK TABLE ONLY analytics_costrecord IN ACCESS SHARE MODE")
        # when
        report = retention_run(now=NOW)
    finally:
        other.close()
    # then: nothing of January 2030 was deleted, row by row or whole
    assert date(2030, 1, 1) in months()
    assert report.totals["partitions_busy"] >= 1
    assert CostRecord.objects.filter(created_at__lt=utc(2030, 2, 1)).count() == 4


def test_command_refuses_an_unknown_tenant():
    with pytest.raises(CommandError, match="Unknown tenant 'nobody'"):
        call_command("retention", "--tenant", "nobody", stdout=StringIO())


def test_task_reports_like_every_job(history):
    # when
    with time_machine.travel(NOW, tick=False):
        result = record_retention_task.apply().get()
    # then
    assert result["job"] == "record_retention"
    assert result["outcome"] == "success"
    assert result["tenants"] == 2
    assert result["totals"]["rows_deleted"] == 3


def test_retention_days_has_a_sane_minimum():
    # given
    tenant = TenantFactory(slug="brief")
    tenant.retention_days = 7
    # when / then
    with pytest.raises(ValidationError) as raised:
        tenant.full_clean()
    assert "retention_days" in raised.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        type(tenant).objects.filter(pk=tenant.pk).update(retention_days=7)
