"""Hourly cost rollups: kept by the database as records are written, read instead of records.

The reads are checked against the same reads over cost records alone (a coverage with one
raw range: how statistics read an uncovered window before rollups existed) and against sums
computed here from the records, on random data with partial hours at both ends.
"""

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, connections, transaction

from analytics.models import CostRecord, CostRollup, CostSource
from analytics.selectors.budgets import budgets_usage
from analytics.selectors.statistics import (
    Coverage,
    StatisticsWindow,
    cost_breakdown,
    cost_breakdown_series,
    cost_series,
    statistics_coverage,
    usage_series,
)
from analytics.services.pricing import cost_records_reprice
from analytics.services.snapshots import snapshot_compute
from tests.factories import BudgetFactory, CostRecordFactory, TenantFactory, utc

pytestmark = pytest.mark.django_db

DAY = utc(2026, 2, 10)
MODELS = ("gpt-4o", "gpt-4o-mini", "m-unknown")
FEATURES = ("chat", "search", None)
USERS = ("u1", "u2", None)

# The rollups as the records give them; rows whose records all moved away are left out.
_RECORD_SUMS = """
SELECT tenant_id, date_trunc('hour', created_at, 'UTC'), feature_tag, user_id, model,
       count(*), COALESCE(sum(cost_cents), 0), sum(input_tokens), sum(output_tokens),
       count(*) FILTER (WHERE cost_cents IS NULL)
FROM analytics_costrecord WHERE tenant_id = %s
GROUP BY 1, 2, 3, 4, 5
"""
_ROLLUP_ROWS = """
SELECT tenant_id, hour, feature_tag, user_id, model, requests, spend_cents, input_tokens,
       output_tokens, unpriced_records
FROM analytics_costrollup WHERE tenant_id = %s AND requests <> 0
"""


def _rows(sql: str, tenant) -> set[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant.pk])
        return set(cursor.fetchall())


def assert_rollups_match_records(tenant) -> None:
    assert _rows(_ROLLUP_ROWS, tenant) == _rows(_RECORD_SUMS, tenant)


def random_records(tenant, rng: random.Random, start: datetime, hours: int, count: int):
    records = []
    for _ in range(count):
        unpriced = rng.random() < 0.15
        records.append(
            CostRecord(
                tenant=tenant,
                created_at=start + timedelta(seconds=rng.randrange(hours * 3600)),
                ingested_at=start,
                model=rng.choice(MODELS),
                feature_tag=rng.choice(FEATURES),
                user_id=rng.choice(USERS),
                input_tokens=rng.randrange(2000),
                output_tokens=rng.randrange(500),
                cost_cents=None if unpriced else Decimal(rng.randrange(10**7)) / 10**6,
                cost_source=CostSource.UNPRICED if unpriced else CostSource.CLIENT,
            )
        )
    return CostRecord.objects.bulk_create(records)


def raw_coverage(window: StatisticsWindow) -> Coverage:
    """Every record of the window read from cost records, none from rollups or snapshots."""
    return Coverage(raw_lo=[window.start], raw_hi=[window.end])


def all_reads(tenant, window: StatisticsWindow, coverage: Coverage) -> list:
    return [
        cost_series(tenant=tenant, window=window, coverage=coverage),
        usage_series(tenant=tenant, window=window, coverage=coverage),
        sorted(
            cost_breakdown(tenant=tenant, window=window, coverage=coverage),
            key=lambda row: (row[0], row[1] or ""),
        ),
        sorted(
            cost_breakdown_series(tenant=tenant, window=window, coverage=coverage),
            key=lambda row: (row[0], row[1], row[2] or ""),
        ),
    ]


def minute(rng: random.Random) -> timedelta:
    return timedelta(minutes=rng.randrange(60), seconds=rng.randrange(60))


# --- the triggers ----------------------------------------------------------------------------


def test_inserted_records_are_summed_per_hour_feature_user_and_model(tenant):
    # given
    at = DAY + timedelta(hours=3)
    CostRecordFactory(tenant=tenant, created_at=at, cost_cents=Decimal("1.25"), user_id="u1")
    CostRecordFactory(
        tenant=tenant, created_at=at + timedelta(minutes=59), cost_cents=Decimal("2"), user_id="u1"
    )
    CostRecordFactory(
        tenant=tenant, created_at=at, cost_cents=None, cost_source=CostSource.UNPRICED
    )
    # when
    rows = list(
        CostRollup.objects.filter(tenant=tenant)
        .order_by("user_id")
        .values_list(
            "hour", "user_id", "requests", "spend_cents", "input_tokens", "unpriced_records"
        )
    )
    # then: NULL user and feature keys group together like any other value
    assert rows == [
        (at, "u1", 2, Decimal("3.25"), 200, 0),
        (at, None, 1, Decimal("0"), 100, 1),
    ]


def test_random_batches_keep_rollups_equal_to_the_records(tenant, other_tenant):
    # given
    rng = random.Random(16)
    # when: batches of both tenants, some late into hours that already have rollups
    for _ in range(6):
        random_records(tenant, rng, DAY, hours=30, count=rng.randrange(1, 120))
        random_records(other_tenant, rng, DAY, hours=5, count=rng.randrange(1, 40))
    # then
    assert_rollups_match_records(tenant)
    assert_rollups_match_records(other_tenant)


def test_an_update_moves_sums_between_keys(tenant):
    # given
    rng = random.Random(5)
    random_records(tenant, rng, DAY, hours=6, count=200)
    # when: a correction of costs, tags, users and times of some records, in one statement
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE analytics_costrecord
            SET created_at = created_at + interval '90 minutes',
                feature_tag = CASE WHEN id %% 3 = 0 THEN NULL ELSE 'moved' END,
                user_id = 'u9',
                cost_cents = CASE WHEN cost_cents IS NULL THEN 7 ELSE cost_cents * 2 END,
                cost_source = 'client'
            WHERE tenant_id = %s AND id %% 2 = 0
            """,
            [tenant.pk],
        )
    # then
    assert_rollups_match_records(tenant)
    assert CostRollup.objects.filter(tenant=tenant, requests=0).exists()


def test_an_update_that_changes_no_sum_writes_no_rollup(tenant):
    # given
    CostRecordFactory(tenant=tenant, created_at=DAY)
    before = list(CostRollup.objects.values_list("id", "requests", "spend_cents"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text FROM analytics_costrollup")
        (xmin,) = cursor.fetchone()
        # when
        cursor.execute("UPDATE analytics_costrecord SET request_id = 'r-1'")
        cursor.execute("SELECT xmin::text FROM analytics_costrollup")
        # then: the rollup row was not even rewritten
        assert cursor.fetchone() == (xmin,)
    assert list(CostRollup.objects.values_list("id", "requests", "spend_cents")) == before


@time_machine.travel(DAY + timedelta(days=1), tick=False)
def test_reprice_keeps_rollups_and_reads_right(tenant):
    # given: records priced at an old price and records nobody could price yet
    for hour in range(4):
        CostRecordFactory(
            tenant=tenant,
            model="gpt-4o",
            input_tokens=1_000_000,
            output_tokens=0,
            cost_cents=Decimal("100"),
            cost_source=CostSource.CATALOG,
            created_at=DAY + timedelta(hours=hour, minutes=10),
        )
        CostRecordFactory(
            tenant=tenant,
            model="gpt-4o",
            input_tokens=1_000_000,
            output_tokens=0,
            cost_cents=None,
            cost_source=CostSource.UNPRICED,
            created_at=DAY + timedelta(hours=hour, minutes=20),
        )
    window = StatisticsWindow(start=DAY, end=DAY + timedelta(hours=4), resolution="hour")
    # when
    result = cost_records_reprice(tenant=tenant, since=DAY)
    # then
    assert result.rows_changed == 8
    assert_rollups_match_records(tenant)
    coverage = statistics_coverage(tenant=tenant, window=window)
    assert coverage.rollup_lo == [DAY] and not coverage.raw_lo
    assert all_reads(tenant, window, coverage) == all_reads(tenant, window, raw_coverage(window))
    series = cost_series(tenant=tenant, window=window, coverage=coverage)
    assert [(row[1], row[5]) for row in series] == [(Decimal("500"), 0)] * 4


def test_deleting_records_leaves_rollups_as_they_were(tenant):
    # given
    CostRecordFactory(tenant=tenant, created_at=DAY, cost_cents=Decimal("3"))
    CostRecordFactory(tenant=tenant, created_at=DAY, cost_cents=Decimal("4"))
    # when: what retention does to old records
    CostRecord.objects.filter(tenant=tenant).delete()
    # then: like snapshots, rollups keep what the records summed to
    assert list(CostRollup.objects.values_list("requests", "spend_cents")) == [(2, Decimal("7"))]


def test_deleting_a_tenant_deletes_its_rollups(tenant, other_tenant):
    # given
    CostRecordFactory(tenant=tenant, created_at=DAY)
    CostRecordFactory(tenant=other_tenant, created_at=DAY)
    CostRecord.objects.filter(tenant=tenant).delete()
    # when: in plain SQL, as the benchmarks clean up
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM analytics_apikey WHERE tenant_id = %s", [tenant.pk])
        cursor.execute("DELETE FROM analytics_tenant WHERE id = %s", [tenant.pk])
    # then
    assert list(CostRollup.objects.values_list("tenant_id", flat=True)) == [other_tenant.pk]


# --- reads ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_statistics_read_from_rollups_equal_reads_from_records(seed):
    # given: random records over three days, some hours with snapshots, others without
    rng = random.Random(seed)
    tenant = TenantFactory()
    random_records(tenant, rng, DAY, hours=72, count=1500)
    # late records into hours that have rollups already
    random_records(tenant, rng, DAY, hours=72, count=40)
    for hour in rng.sample(range(72), 10):
        snapshot_compute(
            tenant=tenant, snapshot_type="hourly", period_start=DAY + timedelta(hours=hour)
        )
    snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=DAY + timedelta(days=1))
    used = set()
    for _ in range(12):
        start = DAY + timedelta(hours=rng.randrange(60)) + minute(rng)
        end = start + timedelta(hours=rng.randrange(0, 24)) + minute(rng)
        # now: inside the last hour of the window, or long after it
        now = rng.choice([end + timedelta(minutes=rng.randrange(5)), end + timedelta(days=30)])
        for resolution in ("hour", "day"):
            window = StatisticsWindow(start=start, end=end, resolution=resolution)
            # when
            coverage = statistics_coverage(tenant=tenant, window=window, now=now)
            # then
            assert all_reads(tenant, window, coverage) == all_reads(
                tenant, window, raw_coverage(window)
            )
            used |= {
                name for name in ("rollup_lo", "raw_lo", "minus_lo") if getattr(coverage, name)
            }
    assert used == {"rollup_lo", "raw_lo", "minus_lo"}


def test_a_window_ending_now_reads_no_record_of_the_current_hour(tenant):
    # given: the current hour holds records up to now
    now = DAY + timedelta(hours=5, minutes=40)
    for offset in range(0, 40 * 60, 60):
        CostRecordFactory(tenant=tenant, created_at=DAY + timedelta(hours=5, seconds=offset))
    window = StatisticsWindow(start=DAY, end=now, resolution="hour")
    # when
    coverage = statistics_coverage(tenant=tenant, window=window, now=now)
    # then: the hour comes from its rollup minus the (empty) rest of the hour
    assert (coverage.rollup_lo, coverage.rollup_hi) == ([DAY], [DAY + timedelta(hours=6)])
    assert (coverage.minus_lo, coverage.minus_hi) == ([now], [DAY + timedelta(hours=6)])
    assert not coverage.raw_lo
    assert cost_series(tenant=tenant, window=window, coverage=coverage)[0][2] == 40


def test_a_window_inside_one_hour_reads_the_same_either_way(tenant):
    # given
    for second in range(0, 3600, 90):
        CostRecordFactory(
            tenant=tenant, created_at=DAY + timedelta(seconds=second), cost_cents=second
        )
    window = StatisticsWindow(
        start=DAY + timedelta(minutes=5), end=DAY + timedelta(minutes=55), resolution="hour"
    )
    # when: by the records inside it, or by the rollup minus the records around it
    by_records = statistics_coverage(tenant=tenant, window=window, now=window.start)
    by_rollup = statistics_coverage(tenant=tenant, window=window, now=window.end)
    # then
    assert by_records.raw_lo and not by_records.rollup_lo
    assert by_rollup.rollup_lo and len(by_rollup.minus_lo) == 2
    expected = all_reads(tenant, window, raw_coverage(window))
    assert all_reads(tenant, window, by_records) == expected
    assert all_reads(tenant, window, by_rollup) == expected


def test_a_bucket_whose_records_are_all_outside_the_window_is_not_listed(tenant):
    # given: the last hour's only record lies after the window's end
    CostRecordFactory(tenant=tenant, created_at=DAY + timedelta(minutes=10))
    CostRecordFactory(tenant=tenant, created_at=DAY + timedelta(hours=1, minutes=50))
    window = StatisticsWindow(
        start=DAY, end=DAY + timedelta(hours=1, minutes=40), resolution="hour"
    )
    # when
    coverage = statistics_coverage(tenant=tenant, window=window, now=window.end)
    series = cost_series(tenant=tenant, window=window, coverage=coverage)
    # then
    assert coverage.minus_lo == [window.end]
    assert [row[0] for row in series] == [DAY]


def _budget_spend(records, budget, start, end) -> tuple[Decimal, int]:
    chosen = [
        record
        for record in records
        if start <= record.created_at < end
        and (
            budget.budget_type == "tenant"
            or (budget.budget_type == "feature" and record.feature_tag == budget.entity_id)
            or (budget.budget_type == "user" and record.user_id == budget.entity_id)
        )
    ]
    spend = sum((record.cost_cents or Decimal(0) for record in chosen), Decimal(0))
    return spend, sum(record.cost_cents is None for record in chosen)


@pytest.mark.parametrize("seed", range(4))
def test_budget_spend_equals_the_sum_of_the_records(seed):
    # given: a month's records, late ones among them, snapshots for some hours
    rng = random.Random(seed)
    tenant = TenantFactory()
    month = utc(2026, 2, 1)
    records = random_records(tenant, rng, month, hours=10 * 24, count=1200)
    records += random_records(tenant, rng, month, hours=10 * 24, count=40)
    for hour in rng.sample(range(10 * 24), 30):
        snapshot_compute(
            tenant=tenant, snapshot_type="hourly", period_start=month + timedelta(hours=hour)
        )
    budgets = [
        BudgetFactory(tenant=tenant, budget_type="tenant", entity_id=None),
        BudgetFactory(tenant=tenant, budget_type="feature", entity_id="chat"),
        BudgetFactory(tenant=tenant, budget_type="user", entity_id="u2"),
    ]
    for _ in range(8):
        # an instant early or late in its hour: the hour is read both ways
        at = month + timedelta(hours=rng.randrange(10 * 24), minutes=rng.choice([7, 52]))
        # when
        usage = budgets_usage(budget_ids=[budget.pk for budget in budgets], at=at)
        # then
        day_start = at.replace(hour=0, minute=0)
        for budget in budgets:
            day = _budget_spend(records, budget, day_start, at)
            month_to_date = _budget_spend(records, budget, month, at)
            got = usage[budget.pk]
            assert (got.day_spend, got.day_unpriced) == day
            assert (got.month_spend, got.month_unpriced) == month_to_date


# --- concurrency ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_of_one_tenant_lose_nothing_and_do_not_deadlock():
    # given: batches sharing their keys, rows in a different order in each batch
    tenant = TenantFactory()
    threads, batches_each = 6, 5
    barrier = threading.Barrier(threads)
    errors = []

    def ingest(number: int) -> None:
        rng = random.Random(number)
        try:
            barrier.wait()
            for _ in range(batches_each):
                records = [
                    CostRecord(
                        tenant_id=tenant.pk,
                        created_at=DAY + timedelta(minutes=rng.randrange(180)),
                        ingested_at=DAY,
                        model=rng.choice(MODELS),
                        feature_tag=rng.choice(FEATURES),
                        user_id=rng.choice(USERS),
                        input_tokens=1,
                        output_tokens=1,
                        cost_cents=Decimal("0.5"),
                    )
                    for _ in range(60)
                ]
                rng.shuffle(records)
                with transaction.atomic():
                    CostRecord.objects.bulk_create(records)
                    # hold the rollup rows a moment, so the other batches wait on them
                    with connection.cursor() as cursor:
                        cursor.execute("SELECT pg_sleep(0.02)")
        except Exception as exc:  # reported below; a deadlock would land here
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=ingest, args=(n,)) for n in range(threads)]
    # when
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    # then
    assert errors == []
    total = threads * batches_each * 60
    assert CostRecord.objects.filter(tenant=tenant).count() == total
    assert sum(CostRollup.objects.filter(tenant=tenant).values_list("requests", flat=True)) == total
    assert_rollups_match_records(tenant)


def test_rollup_hours_are_utc_hours_whatever_the_session_time_zone(tenant):
    # given: a session in a zone half an hour off UTC
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL TIME ZONE 'Asia/Kolkata'")
        # when
        CostRecordFactory(tenant=tenant, created_at=datetime(2026, 2, 10, 3, 50, tzinfo=UTC))
        # (Django reads dates as the UTC session it sets up)
        cursor.execute("SET LOCAL TIME ZONE 'UTC'")
    # then
    assert list(CostRollup.objects.values_list("hour", flat=True)) == [utc(2026, 2, 10, 3)]
