"""Month partitions of cost records: made ahead, DEFAULT as the safety net, keys across months."""

import threading
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.db.models import Sum

from analytics.models import CostRecord, CostRecordKey, CostRollup
from analytics.services.ingest import (
    COST_RECORD_COLUMNS,
    IdempotencyKeyConflict,
    cost_records_ingest,
)
from analytics.services.partitions import (
    DEFAULT_PARTITION,
    partition_create,
    partition_name,
    partitions_list,
    partitions_maintain,
)
from analytics.tasks import maintain_partitions_task
from tests.factories import TenantFactory, utc

pytestmark = pytest.mark.django_db


def rec(key: str | None, created_at, **fields) -> dict:
    row = dict.fromkeys(name for name, _ in COST_RECORD_COLUMNS)
    row.update(
        idempotency_key=key,
        model="gpt-4o",
        input_tokens=10,
        output_tokens=5,
        cost_cents=Decimal("1.5"),
        is_retry=False,
        created_at=created_at,
    )
    return {**row, **fields}


def ingest(tenant, *records, received_at=None):
    return cost_records_ingest(
        tenant=tenant, records=list(records), received_at=received_at or utc(2026, 3, 2)
    )


def partition_of(record: CostRecord) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tableoid::regclass::text FROM analytics_costrecord WHERE id = %s", [record.pk]
        )
        return cursor.fetchone()[0]


def months() -> set[date]:
    return {partition.month for partition in partitions_list() if partition.month}


# --- the table ----------------------------------------------------------------------------------


def test_table_is_partitioned_by_created_at_with_a_default_partition():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT partstrat, pg_get_partkeydef('analytics_costrecord'::regclass)"
            " FROM pg_partitioned_table WHERE partrelid = 'analytics_costrecord'::regclass"
        )
        assert cursor.fetchone() == ("r", "RANGE (created_at)")
    assert partitions_list()[-1].name == DEFAULT_PARTITION


def test_every_partition_gets_the_parents_indexes_and_checks():
    # given
    partition_create(month=date(2033, 1, 1))
    # when
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'analytics_costrecord_p2033_01'"
        )
        indexes = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'c'"
            " AND conrelid = 'analytics_costrecord_p2033_01'::regclass"
        )
        checks = cursor.fetchone()[0]
    # then: primary key + 7 indexes; the 5 checks of the model
    assert (indexes, checks) == (8, 5)


# --- partitions ahead ---------------------------------------------------------------------------


def test_maintenance_creates_this_month_and_the_months_ahead_once():
    # when
    first = partitions_maintain(now=utc(2031, 11, 20), months_ahead=3)
    second = partitions_maintain(now=utc(2031, 11, 20), months_ahead=3)
    # then
    wanted = {date(2031, 11, 1), date(2031, 12, 1), date(2032, 1, 1), date(2032, 2, 1)}
    assert wanted <= months()
    assert first.totals == {"created": 4, "rows_moved": 0}
    assert second.totals == {"created": 0, "rows_moved": 0}
    assert first.outcome == second.outcome == "success"


def test_task_reports_like_every_job():
    # when
    result = maintain_partitions_task.apply().get()
    # then
    assert result["job"] == "maintain_partitions"
    assert result["outcome"] == "success"
    assert set(result["totals"]) == {"created", "rows_moved"}


@pytest.mark.django_db(transaction=True)
def test_two_maintenance_runs_side_by_side_create_each_partition_once():
    # given
    start = threading.Barrier(2)
    reports = [None, None]

    def run(index):
        try:
            start.wait()
            reports[index] = partitions_maintain(now=utc(2091, 1, 10), months_ahead=5)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    # when
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # then
        assert sum(report.totals["created"] for report in reports) == 6
        assert all(report.outcome == "success" for report in reports)
        assert {m for m in months() if m.year >= 2091} == {date(2091, n, 1) for n in range(1, 7)}
    finally:
        with connection.cursor() as cursor:
            for n in range(1, 7):
                cursor.execute(f"DROP TABLE IF EXISTS {partition_name(date(2091, n, 1))}")


# --- the DEFAULT partition ----------------------------------------------------------------------


def test_default_partition_catches_a_month_without_partition_and_it_moves_out_later():
    # given: no partition for June 2034 yet
    tenant = TenantFactory()
    ingest(tenant, rec("far", utc(2034, 6, 10)), rec(None, utc(2034, 6, 11)))
    stored = list(CostRecord.objects.filter(tenant=tenant).order_by("id"))
    assert {partition_of(record) for record in stored} == {DEFAULT_PARTITION}
    # when: its partition is made (the DEFAULT rows of a month ask for it)
    report = partitions_maintain(now=utc(2034, 4, 1), months_ahead=1)
    # then
    assert date(2034, 6, 1) in months()
    assert report.totals["rows_moved"] == 2
    moved = list(CostRecord.objects.filter(tenant=tenant).order_by("id"))
    assert [record.pk for record in moved] == [record.pk for record in stored]
    assert {partition_of(record) for record in moved} == {"analytics_costrecord_p2034_06"}
    # and the key still finds its record
    assert ingest(tenant, rec("far", utc(2034, 6, 10))).duplicates == 1


def test_default_rows_past_every_retention_are_left_for_retention():
    # given: a record of 2001, long past the default retention of 400 days
    tenant = TenantFactory()
    ingest(tenant, rec("old", utc(2001, 5, 5)))
    # when
    partitions_maintain(now=utc(2031, 1, 1), months_ahead=1)
    # then
    assert date(2001, 5, 1) not in months()
    assert partition_of(CostRecord.objects.get(tenant=tenant)) == DEFAULT_PARTITION


# --- idempotency keys ---------------------------------------------------------------------------


def test_a_keyed_record_and_its_key_are_written_together():
    # given
    tenant = TenantFactory()
    # when
    result = ingest(tenant, rec("a", utc(2026, 2, 3)), rec(None, utc(2026, 2, 3)))
    # then
    record = CostRecord.objects.get(tenant=tenant, idempotency_key="a")
    key = CostRecordKey.objects.get(tenant=tenant, idempotency_key="a")
    assert result.accepted == 2
    assert (key.record_id, key.created_at) == (record.pk, record.created_at)
    assert CostRecordKey.objects.filter(tenant=tenant).count() == 1


def test_a_key_sent_again_in_another_month_creates_nothing():
    # given: stored in January (a partition of its own) and in DEFAULT (a far month)
    tenant = TenantFactory()
    ingest(tenant, rec("jan", utc(2026, 1, 15)), rec("far", utc(2044, 1, 1)))
    # when: the same keys come back, once without created_at (the receipt time, March)
    again = ingest(tenant, rec("jan", None), rec("far", None))
    same = ingest(tenant, rec("jan", utc(2026, 1, 15)), rec("far", utc(2044, 1, 1)))
    # then
    assert (again.accepted, again.duplicates) == (0, 2)
    assert (same.accepted, same.duplicates) == (0, 2)
    assert CostRecord.objects.filter(tenant=tenant).count() == 2


def test_a_key_reused_with_a_created_at_in_another_month_conflicts():
    # given
    tenant = TenantFactory()
    ingest(tenant, rec("jan", utc(2026, 1, 15)))
    # when
    with pytest.raises(IdempotencyKeyConflict) as raised:
        ingest(tenant, rec("new", utc(2026, 2, 1)), rec("jan", utc(2026, 2, 15)))
    # then: nothing of the batch was written
    assert [(c.index, c.key) for c in raised.value.conflicts] == [(1, "jan")]
    assert CostRecord.objects.filter(tenant=tenant).count() == 1
    assert not CostRecordKey.objects.filter(tenant=tenant, idempotency_key="new").exists()


def test_tenants_have_their_own_keys():
    # given
    acme, globex = TenantFactory(), TenantFactory()
    ingest(acme, rec("k", utc(2026, 1, 15)))
    # when
    result = ingest(globex, rec("k", utc(2026, 2, 15)))
    # then
    assert result.accepted == 1


def test_rows_moved_out_of_default_are_not_counted_again_by_the_rollups():
    # given: two records in DEFAULT, counted once by the rollup trigger
    tenant = TenantFactory()
    ingest(tenant, rec("a", utc(2035, 2, 1, 10)), rec(None, utc(2035, 2, 1, 10)))
    counted = CostRollup.objects.filter(tenant=tenant).aggregate(n=Sum("requests"))["n"]
    # when
    partitions_maintain(now=utc(2035, 1, 15), months_ahead=1)
    # then
    assert counted == 2
    assert CostRollup.objects.filter(tenant=tenant).aggregate(n=Sum("requests"))["n"] == 2
