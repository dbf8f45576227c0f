import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connections
from prometheus_client import REGISTRY

from analytics.models import (
    AnomalyEvaluation,
    Baseline,
    CostSnapshot,
    SnapshotAggregate,
    SnapshotStatus,
    SnapshotType,
)
from analytics.services import snapshots as snapshot_service
from analytics.services.snapshots import snapshot_compute
from tests.factories import CostRecordFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 2, 10, 30)
HOUR = utc(2026, 3, 2, 9)  # the previous full hour at NOW
URL = "/api/v1/snapshots/"
# Replaces the aggregation statement to make a computation fail inside its transaction.
BROKEN_AGGREGATION = "SELECT * FROM no_such_table CROSS JOIN ({baselines}) AS b"


def record(tenant, at, cents, **fields):
    return CostRecordFactory(tenant=tenant, created_at=at, cost_cents=Decimal(str(cents)), **fields)


def aggregates(snapshot) -> dict:
    return {
        (row.entity_type, row.entity_id): row
        for row in SnapshotAggregate.objects.filter(snapshot=snapshot)
    }


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- periods ----------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_default_periods_are_previous_full_hour_and_yesterday(tenant):
    # when
    hourly = snapshot_compute(tenant=tenant, snapshot_type=SnapshotType.HOURLY)
    daily = snapshot_compute(tenant=tenant, snapshot_type=SnapshotType.DAILY)
    # then
    assert (hourly.period_start, hourly.period_end) == (HOUR, utc(2026, 3, 2, 10))
    assert (daily.period_start, daily.period_end) == (utc(2026, 3, 1), utc(2026, 3, 2))


@time_machine.travel(NOW, tick=False)
def test_explicit_start_is_converted_to_utc_and_truncated(tenant):
    from datetime import timezone as dt_timezone

    # given 07:45 at UTC+02:00 is 05:45 UTC
    start = utc(2026, 3, 1, 5, 45).astimezone(dt_timezone(timedelta(hours=2)))
    # when
    hourly = snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=start)
    daily = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=start)
    # then
    assert hourly.period_start == utc(2026, 3, 1, 5)
    assert daily.period_start == utc(2026, 3, 1)


@time_machine.travel(NOW, tick=False)
def test_start_later_than_now_is_rejected_and_nothing_written(tenant):
    # the current hour has started, so it is allowed
    snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 3, 2, 10, 59))
    # when / then
    with pytest.raises(ValidationError) as excinfo:
        snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 3, 2, 11))
    assert "period_start" in excinfo.value.message_dict
    assert CostSnapshot.objects.count() == 1


# --- aggregates -------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_aggregate_example_from_spec(tenant):
    # given 4 requests, 10.0 cents, 100 input and 50 output tokens in all
    for cents, tokens_in, tokens_out in ((1, 10, 5), (2, 20, 10), (3, 30, 15), (4, 40, 20)):
        record(
            tenant,
            HOUR + timedelta(minutes=cents),
            cents,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
        )
    # when
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # then
    row = aggregates(snapshot)[("tenant", None)]
    assert row.total_cost_cents == Decimal("10")
    assert row.request_count == 4
    assert (row.total_input_tokens, row.total_output_tokens) == (100, 50)
    assert row.avg_cost_per_request_cents == 2.5
    assert row.avg_tokens_per_request == 37.5
    assert snapshot.status == SnapshotStatus.COMPLETE
    assert snapshot.records_processed == 4
    assert snapshot.version == 1
    assert snapshot.completed_at == NOW
    assert snapshot.computation_ms >= 0


@time_machine.travel(NOW, tick=False)
def test_one_aggregate_per_user_feature_and_model_and_none_for_null_keys(tenant, other_tenant):
    # given
    record(tenant, HOUR, "1.25", user_id="u1", feature_tag="chat", model="m-a")
    record(tenant, HOUR + timedelta(minutes=5), 2, user_id="u1", feature_tag=None, model="m-b")
    record(
        tenant, HOUR + timedelta(minutes=59), "0.5", user_id=None, feature_tag="chat", model="m-a"
    )
    record(tenant, HOUR - timedelta(microseconds=1), 100, user_id="early", model="m-a")
    record(tenant, HOUR + timedelta(hours=1), 100, user_id="late", model="m-a")
    record(other_tenant, HOUR, 100, user_id="u1", model="m-a")
    # when
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # then
    rows = {
        key: (row.total_cost_cents, row.request_count) for key, row in aggregates(snapshot).items()
    }
    assert rows == {
        ("tenant", None): (Decimal("3.75"), 3),
        ("user", "u1"): (Decimal("3.25"), 2),
        ("feature", "chat"): (Decimal("1.75"), 2),
        ("model", "m-a"): (Decimal("1.75"), 2),
        ("model", "m-b"): (Decimal("2"), 1),
    }
    assert all(row.tenant_id == tenant.pk for row in aggregates(snapshot).values())


@time_machine.travel(NOW, tick=False)
def test_empty_period_completes_without_aggregates(tenant):
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    assert snapshot.status == SnapshotStatus.COMPLETE
    assert snapshot.records_processed == 0
    assert aggregates(snapshot) == {}


# --- idempotency and concurrency -------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_second_run_keeps_one_snapshot_bumps_version_and_replaces_aggregates(tenant):
    # given
    record(tenant, HOUR, 1, user_id="gone")
    first = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    first_ids = set(SnapshotAggregate.objects.values_list("id", flat=True))
    CostSnapshot.objects.filter(pk=first.pk).update(is_stale=True)
    record(tenant, HOUR + timedelta(minutes=1), 2, user_id="new")
    # when
    second = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # then
    assert second.pk == first.pk
    assert CostSnapshot.objects.count() == 1
    assert second.version == 2
    assert second.is_stale is False
    assert second.records_processed == 2
    rows = aggregates(second)
    assert rows[("tenant", None)].total_cost_cents == Decimal("3")
    assert ("user", "gone") in rows and ("user", "new") in rows
    assert first_ids.isdisjoint(SnapshotAggregate.objects.values_list("id", flat=True))


@pytest.mark.django_db(transaction=True)
def test_two_computations_at_once_leave_one_row_and_one_set_of_aggregates(tenant):
    # given
    for minute in range(10):
        record(tenant, HOUR + timedelta(minutes=minute), 1, user_id=f"u{minute % 3}")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def compute():
        try:
            barrier.wait()
            results.append(
                snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=HOUR)
            )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when
    threads = [threading.Thread(target=compute) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert errors == []
    assert {snapshot.status for snapshot in results} == {SnapshotStatus.COMPLETE}
    snapshot = CostSnapshot.objects.get()
    assert snapshot.version == 2
    assert sorted(s.version for s in results) == [1, 2]
    rows = aggregates(snapshot)
    assert len(rows) == 5  # tenant, three users, one model
    assert rows[("tenant", None)].request_count == 10
    assert SnapshotAggregate.objects.count() == 5


# --- failures ---------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_failure_rolls_back_and_records_failed_with_version_bump(tenant, monkeypatch):
    # given a complete snapshot, then a computation whose aggregation statement breaks
    record(tenant, HOUR, 1)
    first = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    failed_before = counter(
        "analytics_snapshots_computed_total", snapshot_type="hourly", status="failed"
    )
    monkeypatch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
    # when
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # then
    assert snapshot.pk == first.pk
    assert snapshot.status == SnapshotStatus.FAILED
    assert snapshot.version == 2
    assert "no_such_table" in snapshot.error_message
    assert aggregates(snapshot) == {}
    assert (
        counter("analytics_snapshots_computed_total", snapshot_type="hourly", status="failed")
        == failed_before + 1
    )


@time_machine.travel(NOW, tick=False)
def test_failure_of_a_new_period_creates_the_row_as_failed(tenant, monkeypatch):
    monkeypatch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily")
    assert (snapshot.status, snapshot.version) == (SnapshotStatus.FAILED, 1)
    assert "no_such_table" in snapshot.error_message
    # the baselines computed before the failure were rolled back with it
    assert Baseline.objects.count() == 0


@time_machine.travel(NOW, tick=False)
def test_successful_run_after_failure_clears_the_error(tenant, monkeypatch):
    with monkeypatch.context() as patch:
        patch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
        snapshot_compute(tenant=tenant, snapshot_type="hourly")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    assert (snapshot.status, snapshot.version, snapshot.error_message) == ("complete", 2, "")


@time_machine.travel(NOW, tick=False)
def test_completed_computation_is_counted_in_metrics(tenant):
    before = counter("analytics_snapshots_computed_total", snapshot_type="daily", status="complete")
    observed = counter("analytics_snapshot_computation_ms_count", snapshot_type="daily")
    snapshot_compute(tenant=tenant, snapshot_type="daily")
    assert (
        counter("analytics_snapshots_computed_total", snapshot_type="daily", status="complete")
        == before + 1
    )
    assert counter("analytics_snapshot_computation_ms_count", snapshot_type="daily") == observed + 1


# --- baselines on aggregates ------------------------------------------------------------------


def _hourly_history(tenant, hour, totals_by_days_back):
    """Compute hourly snapshots at `hour` k days back; None = a snapshot without entity x."""
    for days_back, total in totals_by_days_back.items():
        start = hour - timedelta(days=days_back)
        if total is None:
            record(tenant, start, 1, user_id="someone-else")
        else:
            record(tenant, start, total, user_id="x")
        snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=start)


@time_machine.travel(NOW, tick=False)
def test_hourly_same_hour_baseline_example_from_spec(tenant):
    # given same-hour totals 8, 10, 12, 10 on four of the previous seven days; the other three
    # snapshots exist without the entity; other hours and older days do not count toward b7
    _hourly_history(tenant, HOUR, {1: 8, 2: None, 3: 10, 4: 12, 5: None, 6: 10, 7: None})
    _hourly_history(tenant, HOUR - timedelta(hours=1), {1: 1000})
    _hourly_history(tenant, HOUR, {8: 40})
    record(tenant, HOUR + timedelta(minutes=10), 35, user_id="x")
    # when
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # then
    row = aggregates(snapshot)[("user", "x")]
    assert row.baseline_7d_avg_cents == 10.0
    assert row.deviation_from_7d_pct == 250.0
    assert row.baseline_30d_avg_cents == 16.0  # 8, 10, 12, 10 and 40 (day 8)
    assert row.deviation_from_30d_pct == pytest.approx(118.75)


@time_machine.travel(NOW, tick=False)
def test_hourly_baseline_ignores_snapshots_that_are_not_complete(tenant):
    _hourly_history(tenant, HOUR, {1: 10, 2: 30})
    CostSnapshot.objects.filter(period_start=HOUR - timedelta(days=2)).update(status="failed")
    record(tenant, HOUR, 20, user_id="x")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    assert aggregates(snapshot)[("user", "x")].baseline_7d_avg_cents == 10.0


@time_machine.travel(NOW, tick=False)
def test_no_history_leaves_baselines_and_deviations_null(tenant):
    record(tenant, HOUR, 5, user_id="x")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    row = aggregates(snapshot)[("user", "x")]
    assert row.baseline_7d_avg_cents is None and row.deviation_from_7d_pct is None
    assert row.baseline_30d_avg_cents is None and row.deviation_from_30d_pct is None


@time_machine.travel(NOW, tick=False)
def test_daily_snapshot_computes_baselines_as_of_its_date_first(tenant):
    # given daily snapshots for the three days before 2026-03-01
    for day, cents in ((26, 10), (27, 20), (28, 30)):
        record(tenant, utc(2026, 2, day, 12), cents, feature_tag="chat")
        snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=utc(2026, 2, day))
    record(tenant, utc(2026, 3, 1, 8), 60, feature_tag="chat")
    # when
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily")
    # then the baselines as of the snapshot date exist and feed the aggregates
    as_of_rows = Baseline.objects.filter(as_of=utc(2026, 3, 1).date())
    assert {(b.window_days, b.entity_type, b.entity_id) for b in as_of_rows} == {
        (window, entity_type, entity_id)
        for window in (7, 30)
        for entity_type, entity_id in (
            ("tenant", None),
            ("feature", "chat"),
            ("model", "gpt-4o-mini"),
        )
    }
    row = aggregates(snapshot)[("feature", "chat")]
    assert row.baseline_7d_avg_cents == 20.0
    assert row.baseline_30d_avg_cents == 20.0
    assert row.deviation_from_7d_pct == 200.0


@time_machine.travel(NOW, tick=False)
def test_zero_baseline_gives_null_deviation(tenant):
    record(tenant, utc(2026, 2, 28, 1), 0, feature_tag="free")
    snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=utc(2026, 2, 28))
    record(tenant, utc(2026, 3, 1, 1), 5, feature_tag="free")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily")
    row = aggregates(snapshot)[("feature", "free")]
    assert row.baseline_7d_avg_cents == 0.0
    assert row.deviation_from_7d_pct is None


# --- API --------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_list_is_newest_period_first_and_scoped_to_tenant(
    api_client, tenant, other_tenant, django_assert_num_queries
):
    # given
    older = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=utc(2026, 2, 28))
    newer = snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 3, 1, 5))
    snapshot_compute(tenant=other_tenant, snapshot_type="hourly")
    # when (auth, last_used_at, page)
    with django_assert_num_queries(3):
        response = api_client.get(URL)
    # then
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["results"]] == [newer.pk, older.pk]
    assert body["results"][1] == {
        "id": older.pk,
        "snapshot_type": "daily",
        "period_start": "2026-02-28T00:00:00Z",
        "period_end": "2026-03-01T00:00:00Z",
        "status": "complete",
        "version": 1,
        "records_processed": 0,
        "computation_ms": older.computation_ms,
        "is_stale": False,
    }


@time_machine.travel(NOW, tick=False)
def test_list_filters_by_type_status_and_period(api_client, tenant):
    # given
    hourly = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    snapshot_compute(tenant=tenant, snapshot_type="daily")
    early = snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 3, 1))
    # when
    by_type = api_client.get(URL, {"snapshot_type": "hourly", "status": "complete"})
    by_window = api_client.get(
        URL,
        {"snapshot_type": "hourly", "from": "2026-03-01T00:00:00Z", "to": "2026-03-01T01:00:00Z"},
    )
    failed = api_client.get(URL, {"status": "failed"})
    # then
    assert [item["id"] for item in by_type.json()["results"]] == [hourly.pk, early.pk]
    assert [item["id"] for item in by_window.json()["results"]] == [early.pk]
    assert failed.json()["results"] == []


def test_list_rejects_invalid_filters(api_client):
    response = api_client.get(URL, {"snapshot_type": "weekly", "from": "2026-03-01T00:00:00"})
    assert response.status_code == 400
    fields = {item["field"]: item["reason"] for item in response.json()["field_errors"]}
    assert set(fields) == {"snapshot_type", "from"}
    assert fields["from"] == "timezone is required"


@time_machine.travel(NOW, tick=False)
def test_detail_lists_aggregates_tenant_user_feature_model_then_id(api_client, tenant):
    # given
    record(tenant, HOUR, 1, user_id="zed", feature_tag="b-feature", model="a-model")
    record(tenant, HOUR, 2, user_id="amy", feature_tag="a-feature", model="z-model")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # when
    response = api_client.get(f"{URL}{snapshot.pk}/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert [(row["entity_type"], row["entity_id"]) for row in body["aggregates"]] == [
        ("tenant", None),
        ("user", "amy"),
        ("user", "zed"),
        ("feature", "a-feature"),
        ("feature", "b-feature"),
        ("model", "a-model"),
        ("model", "z-model"),
    ]
    assert body["aggregates"][0] == {
        "entity_type": "tenant",
        "entity_id": None,
        "total_cost_cents": 3,
        "request_count": 2,
        "unpriced_records": 0,
        "total_input_tokens": 200,
        "total_output_tokens": 100,
        "avg_cost_per_request_cents": 1.5,
        "avg_tokens_per_request": 150.0,
        "baseline_7d_avg_cents": None,
        "baseline_30d_avg_cents": None,
        "deviation_from_7d_pct": None,
        "deviation_from_30d_pct": None,
    }
    assert body["error_message"] == ""
    assert body["completed_at"] == "2026-03-02T10:30:00Z"


@time_machine.travel(NOW, tick=False)
def test_detail_of_another_tenant_or_malformed_id_is_404(other_client, api_client, tenant):
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    assert other_client.get(f"{URL}{snapshot.pk}/").status_code == 404
    response = api_client.get(f"{URL}not-an-id/")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@time_machine.travel(NOW, tick=False)
def test_compute_endpoint_twice_returns_same_id_with_next_version(api_client, tenant):
    # given
    record(tenant, utc(2026, 3, 1, 7, 15), "2.5", model="m")
    body = {"snapshot_type": "hourly", "period_start": "2026-03-01T07:40:00+00:00"}
    # when
    first = api_client.post(f"{URL}compute/", body, format="json")
    second = api_client.post(f"{URL}compute/", body, format="json")
    # then
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert (first.json()["version"], second.json()["version"]) == (1, 2)
    assert second.json()["period_start"] == "2026-03-01T07:00:00Z"
    assert second.json()["aggregates"][0]["total_cost_cents"] == 2.5


@time_machine.travel(NOW, tick=False)
def test_compute_endpoint_defaults_to_previous_period(api_client):
    response = api_client.post(f"{URL}compute/", {"snapshot_type": "daily"}, format="json")
    assert response.status_code == 200
    assert response.json()["period_start"] == "2026-03-01T00:00:00Z"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({}, "snapshot_type", "This field is required."),
        ({"snapshot_type": "weekly"}, "snapshot_type", None),
        (
            {"snapshot_type": "hourly", "period_start": "2026-03-01T07:00:00"},
            "period_start",
            "timezone is required",
        ),
        (
            {"snapshot_type": "hourly", "period_start": "2026-03-02T11:00:00Z"},
            "period_start",
            "must not be in the future",
        ),
        ({"snapshot_type": "hourly", "extra": 1}, "extra", "unknown field"),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_compute_endpoint_rejects_bad_bodies_and_writes_nothing(api_client, body, field, reason):
    response = api_client.post(f"{URL}compute/", body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    errors = {item["field"]: item["reason"] for item in response.json()["field_errors"]}
    assert field in errors
    if reason:
        assert errors[field] == reason
    assert CostSnapshot.objects.count() == 0


@time_machine.travel(NOW, tick=False)
def test_evaluate_endpoint_needs_a_complete_snapshot(api_client, tenant, monkeypatch):
    monkeypatch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    response = api_client.post(f"{URL}{snapshot.pk}/evaluate/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"


@time_machine.travel(NOW, tick=False)
def test_evaluate_endpoint_of_another_tenant_is_404(other_client, tenant):
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    response = other_client.post(f"{URL}{snapshot.pk}/evaluate/", {}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize("threshold", [0, -5, "high"])
@time_machine.travel(NOW, tick=False)
def test_evaluate_endpoint_rejects_bad_threshold(api_client, tenant, threshold):
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    response = api_client.post(
        f"{URL}{snapshot.pk}/evaluate/", {"threshold_pct": threshold}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == "threshold_pct"
    assert not AnomalyEvaluation.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_hourly_baseline_example_triggers_low_snapshot_spike(api_client, tenant):
    # given the worked example: b7 = 10, current 35 -> deviation 250 %
    _hourly_history(tenant, HOUR, {1: 8, 2: None, 3: 10, 4: 12, 5: None, 6: 10, 7: None})
    record(tenant, HOUR + timedelta(minutes=10), 35, user_id="x")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # when
    response = api_client.post(f"{URL}{snapshot.pk}/evaluate/", {}, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    by_entity = {(item["entity_type"], item["entity_id"]): item for item in body["anomalies"]}
    anomaly = by_entity[("user", "x")]
    assert anomaly["anomaly_type"] == "SNAPSHOT_SPIKE"
    assert anomaly["severity"] == "LOW"
    assert anomaly["deviation_pct"] == 250.0
    assert anomaly["threshold_pct"] == 200.0
    assert anomaly["snapshot_id"] == snapshot.pk


@time_machine.travel(NOW, tick=False)
def test_baselines_compute_endpoint(api_client, tenant, other_tenant):
    # given
    record(tenant, utc(2026, 2, 27, 1), 4, model="m")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=utc(2026, 2, 27))
    record(other_tenant, utc(2026, 2, 27, 1), 4, model="m")
    snapshot_compute(tenant=other_tenant, snapshot_type="daily", period_start=utc(2026, 2, 27))
    # when
    response = api_client.post(
        "/api/v1/baselines/compute/", {"window_days": 7, "as_of": "2026-03-01"}, format="json"
    )
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    tenant_row = body["baselines"][0]
    assert tenant_row == {
        "id": tenant_row["id"],
        "entity_type": "tenant",
        "entity_id": None,
        "window_days": 7,
        "as_of": "2026-03-01",
        "avg_daily_cost_cents": 4.0,
        "stddev_daily_cost_cents": None,
        "avg_daily_requests": 1.0,
        "max_daily_cost_cents": 4.0,
        "min_daily_cost_cents": 4.0,
        "samples_count": 1,
        "last_snapshot_id": snapshot.pk,
        "computed_at": "2026-03-02T10:30:00Z",
        "valid_until": "2026-03-02T00:00:00Z",
        "is_current": True,
    }
    assert body["baselines"][1]["entity_type"] == "model"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "window_days"),
        ({"window_days": 14}, "window_days"),
        ({"window_days": 7, "as_of": "2026-03-03"}, "as_of"),
        ({"window_days": 7, "as_of": "2026-03-01T00:00:00Z"}, "as_of"),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_baselines_compute_endpoint_rejects_bad_bodies(api_client, body, field):
    response = api_client.post("/api/v1/baselines/compute/", body, format="json")
    assert response.status_code == 400
    assert [item["field"] for item in response.json()["field_errors"]] == [field]
    assert not Baseline.objects.exists()


def test_snapshot_endpoints_need_a_tenant_key(staff_session_client):
    response = staff_session_client.get(URL)
    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"


@pytest.mark.parametrize(("current", "severity"), [(30, "LOW"), (60, "CRITICAL")])
@time_machine.travel(NOW, tick=False)
def test_snapshot_severity_examples_from_spec(api_client, tenant, current, severity):
    # given a same-hour baseline of 10: 30 is +200 %, 60 is +500 %
    _hourly_history(tenant, HOUR, {1: 10})
    record(tenant, HOUR + timedelta(minutes=10), current, user_id="x")
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    # when
    response = api_client.post(
        f"{URL}{snapshot.pk}/evaluate/", {"threshold_pct": 200}, format="json"
    )
    # then
    by_entity = {(a["entity_type"], a["entity_id"]): a for a in response.json()["anomalies"]}
    assert by_entity[("user", "x")]["severity"] == severity
    evaluation = AnomalyEvaluation.objects.get(snapshot=snapshot, entity_type="user")
    assert evaluation.triggered is True
    assert evaluation.deviation_pct == current * 10 - 100
