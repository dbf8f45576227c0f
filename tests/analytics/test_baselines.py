import statistics
import threading
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections

from analytics.models import Baseline, CostSnapshot
from analytics.services.snapshots import baseline_compute, snapshot_compute
from tests.factories import CostRecordFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 10, 6)
AS_OF = date(2026, 3, 10)


def daily(tenant, day: date, *costs, **fields) -> CostSnapshot:
    """Records of `costs` cents on `day` (noon), then that day's daily snapshot."""
    for cents in costs:
        CostRecordFactory(
            tenant=tenant,
            created_at=utc(day.year, day.month, day.day, 12),
            cost_cents=Decimal(str(cents)),
            **fields,
        )
    return snapshot_compute(
        tenant=tenant, snapshot_type="daily", period_start=utc(day.year, day.month, day.day)
    )


def rows(**filters) -> dict:
    return {(b.entity_type, b.entity_id): b for b in Baseline.objects.filter(**filters)}


@time_machine.travel(NOW, tick=False)
def test_statistics_over_the_days_before_as_of(tenant):
    # given daily totals 10, 20, 60 (two requests on the last day) and one idle day
    daily(tenant, AS_OF - timedelta(days=7), 10)
    daily(tenant, AS_OF - timedelta(days=5), 20)
    daily(tenant, AS_OF - timedelta(days=4))  # idle: no aggregate, not a sample
    last = daily(tenant, AS_OF - timedelta(days=1), 25, 35)
    # when
    result = baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # then
    baseline = rows(window_days=7, as_of=AS_OF)[("tenant", None)]
    assert baseline.avg_daily_cost_cents == 30.0
    assert baseline.stddev_daily_cost_cents == pytest.approx(statistics.stdev([10, 20, 60]))
    assert baseline.avg_daily_requests == pytest.approx(4 / 3)
    assert (baseline.min_daily_cost_cents, baseline.max_daily_cost_cents) == (10.0, 60.0)
    assert baseline.samples_count == 3
    assert baseline.last_snapshot_id == last.pk
    assert baseline.computed_at == NOW
    assert baseline.valid_until == utc(2026, 3, 11)
    assert baseline.is_current is True
    assert [(b.entity_type, b.entity_id) for b in result] == [
        ("tenant", None),
        ("model", "gpt-4o-mini"),
    ]


@time_machine.travel(NOW, tick=False)
def test_window_is_the_window_days_before_as_of(tenant):
    # given snapshots on as_of - 8 (outside), as_of - 7 (first day), as_of (outside)
    daily(tenant, AS_OF - timedelta(days=8), 1000)
    daily(tenant, AS_OF - timedelta(days=7), 7)
    daily(tenant, AS_OF, 2000)
    # when
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # then
    baseline = rows(window_days=7, as_of=AS_OF)[("tenant", None)]
    assert baseline.samples_count == 1
    assert baseline.avg_daily_cost_cents == 7.0


@time_machine.travel(NOW, tick=False)
def test_single_sample_has_no_stddev(tenant):
    daily(tenant, AS_OF - timedelta(days=2), 5)
    baseline_compute(tenant=tenant, window_days=30, as_of=AS_OF)
    assert rows(window_days=30, as_of=AS_OF)[("tenant", None)].stddev_daily_cost_cents is None


@time_machine.travel(NOW, tick=False)
def test_only_complete_daily_snapshots_count(tenant):
    # given a failed daily snapshot and an hourly snapshot inside the window
    daily(tenant, AS_OF - timedelta(days=1), 10)
    failed = daily(tenant, AS_OF - timedelta(days=2), 500)
    CostSnapshot.objects.filter(pk=failed.pk).update(status="failed")
    snapshot_compute(
        tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 3, 9, 12)
    )  # holds the 10 cents again
    # when
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # then
    baseline = rows(window_days=7, as_of=AS_OF)[("tenant", None)]
    assert (baseline.samples_count, baseline.avg_daily_cost_cents) == (1, 10.0)


@time_machine.travel(NOW, tick=False)
def test_one_row_per_entity_with_entity_samples(tenant, other_tenant):
    # given
    daily(tenant, AS_OF - timedelta(days=1), 4, user_id="ann", feature_tag="chat")
    daily(tenant, AS_OF - timedelta(days=2), 6, user_id="bob", feature_tag="chat")
    daily(other_tenant, AS_OF - timedelta(days=1), 99, user_id="ann")
    # when
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # then
    found = rows(tenant=tenant, window_days=7, as_of=AS_OF)
    assert {key: b.avg_daily_cost_cents for key, b in found.items()} == {
        ("tenant", None): 5.0,
        ("user", "ann"): 4.0,
        ("user", "bob"): 6.0,
        ("feature", "chat"): 5.0,
        ("model", "gpt-4o-mini"): 5.0,
    }
    assert found[("user", "ann")].samples_count == 1
    assert not Baseline.objects.filter(tenant=other_tenant).exists()


@time_machine.travel(NOW, tick=False)
def test_second_run_updates_rows_in_place(tenant):
    # given
    daily(tenant, AS_OF - timedelta(days=1), 4)
    first = {b.pk for b in baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)}
    daily(tenant, AS_OF - timedelta(days=2), 8)
    # when
    second = baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # then
    assert {b.pk for b in second} == first
    assert Baseline.objects.filter(window_days=7, as_of=AS_OF).count() == 2
    assert rows(window_days=7, as_of=AS_OF)[("tenant", None)].avg_daily_cost_cents == 6.0


@time_machine.travel(NOW, tick=False)
def test_entity_without_samples_any_more_loses_its_row_for_that_as_of(tenant):
    # given a baseline with user "gone", whose only record is later left out of the snapshot
    snapshot = daily(tenant, AS_OF - timedelta(days=1), 4, user_id="gone")
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    snapshot.aggregates.filter(entity_type="user").delete()
    # when
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # then
    assert ("user", "gone") not in rows(window_days=7, as_of=AS_OF)
    assert ("tenant", None) in rows(window_days=7, as_of=AS_OF)


@time_machine.travel(NOW, tick=False)
def test_latest_as_of_is_current_even_after_an_older_backfill(tenant):
    # given
    daily(tenant, AS_OF - timedelta(days=3), 4, user_id="u")
    daily(tenant, AS_OF - timedelta(days=1), 8)
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF - timedelta(days=1))
    # when the newer as_of is computed, then an older one again
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF - timedelta(days=1))
    # then only the rows of the latest as_of are current, for every entity
    current = Baseline.objects.filter(window_days=7, is_current=True)
    assert {(b.entity_type, b.entity_id, b.as_of) for b in current} == {
        ("tenant", None, AS_OF),
        ("user", "u", AS_OF),
        ("model", "gpt-4o-mini", AS_OF),
    }
    older = Baseline.objects.filter(window_days=7, as_of=AS_OF - timedelta(days=1))
    assert [b.is_current for b in older] == [False, False, False]


@time_machine.travel(NOW, tick=False)
def test_newer_as_of_without_samples_leaves_the_current_rows_current(tenant):
    # given current rows as of AS_OF
    daily(tenant, AS_OF - timedelta(days=1), 4)
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # when a later as_of has no snapshots in its window
    result = baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF + timedelta(days=20))
    # then
    assert result == []
    current = Baseline.objects.filter(window_days=7, is_current=True)
    assert {b.as_of for b in current} == {AS_OF}
    assert current.count() == 2


@time_machine.travel(NOW, tick=False)
def test_windows_are_current_independently(tenant):
    daily(tenant, AS_OF - timedelta(days=1), 4)
    baseline_compute(tenant=tenant, window_days=7, as_of=AS_OF)
    # as of the snapshot's own day the snapshot lies outside the window: no 30-day rows yet
    baseline_compute(tenant=tenant, window_days=30, as_of=AS_OF - timedelta(days=1))
    assert Baseline.objects.filter(window_days=30, is_current=True).exists() is False
    baseline_compute(tenant=tenant, window_days=30, as_of=AS_OF)
    current = Baseline.objects.filter(is_current=True, entity_type="tenant")
    assert sorted(b.window_days for b in current) == [7, 30]


def test_database_allows_one_current_row_per_entity_and_window(tenant):
    fields = {
        "tenant": tenant,
        "entity_type": "tenant",
        "window_days": 7,
        "avg_daily_cost_cents": 1,
        "avg_daily_requests": 1,
        "max_daily_cost_cents": 1,
        "min_daily_cost_cents": 1,
        "samples_count": 1,
        "computed_at": NOW,
        "valid_until": NOW,
        "is_current": True,
    }
    Baseline.objects.create(as_of=AS_OF, **fields)
    with pytest.raises(IntegrityError):
        Baseline.objects.create(as_of=AS_OF - timedelta(days=1), **fields)


@time_machine.travel(NOW, tick=False)
def test_default_as_of_is_today(tenant):
    daily(tenant, AS_OF - timedelta(days=1), 4)
    result = baseline_compute(tenant=tenant, window_days=30)
    assert {b.as_of for b in result} == {AS_OF}


def test_window_must_be_7_or_30(tenant):
    with pytest.raises(ValidationError):
        baseline_compute(tenant=tenant, window_days=14)


@pytest.mark.django_db(transaction=True)
def test_concurrent_runs_for_different_dates_keep_one_current_row(tenant):
    # given snapshots for the week before AS_OF
    with time_machine.travel(NOW, tick=False):
        for days_back in range(1, 5):
            daily(tenant, AS_OF - timedelta(days=days_back), days_back, user_id="u")
    barrier = threading.Barrier(4)
    errors = []

    def compute(as_of):
        try:
            barrier.wait()
            baseline_compute(tenant=tenant, window_days=7, as_of=as_of)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when four computations for four dates run at once
    threads = [
        threading.Thread(target=compute, args=(AS_OF - timedelta(days=k),)) for k in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert errors == []
    current = Baseline.objects.filter(is_current=True)
    assert {b.as_of for b in current} == {AS_OF}
    assert current.count() == 3  # tenant, user u, model
