"""Snapshot evaluation against PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from analytics.errors import Conflict
from analytics.models import (
    Anomaly,
    AnomalyEvaluation,
    AnomalyStatus,
    AnomalyType,
    SnapshotStatus,
    SnapshotType,
)
from analytics.services.evaluation import SnapshotNotComplete, snapshot_evaluate
from analytics.services.snapshots import snapshot_compute
from tests.analytics.factories import CostSnapshotFactory, SnapshotAggregateFactory
from tests.factories import CostRecordFactory, utc

PERIOD = utc(2026, 3, 16, 10)


def aggregate(snapshot, *, total, baseline, entity_type="tenant", entity_id=None):
    deviation = (total - baseline) / baseline * 100 if baseline else None
    return SnapshotAggregateFactory(
        snapshot=snapshot,
        entity_type=entity_type,
        entity_id=entity_id,
        total_cost_cents=Decimal(str(total)),
        baseline_7d_avg_cents=baseline,
        deviation_from_7d_pct=deviation,
    )


def test_hourly_baseline_example_end_to_end(tenant):
    # given same-hour totals 8, 10, 12, 10 for user u1 on four of the previous seven days,
    # the other three snapshots holding only another user's spend
    history = {1: 8, 2: 10, 3: 12, 4: 10}
    with time_machine.travel(PERIOD + timedelta(hours=2), tick=False):
        for k in range(1, 8):
            start = PERIOD - timedelta(days=k)
            if k in history:
                CostRecordFactory(
                    tenant=tenant,
                    user_id="u1",
                    created_at=start + timedelta(minutes=5),
                    cost_cents=Decimal(history[k]),
                )
            else:
                CostRecordFactory(
                    tenant=tenant, user_id="u2", created_at=start + timedelta(minutes=5)
                )
            snapshot_compute(tenant=tenant, snapshot_type=SnapshotType.HOURLY, period_start=start)
        CostRecordFactory(
            tenant=tenant, user_id="u1", created_at=PERIOD + timedelta(minutes=20), cost_cents=35
        )
        snapshot = snapshot_compute(
            tenant=tenant, snapshot_type=SnapshotType.HOURLY, period_start=PERIOD
        )

        # when the current hour is evaluated at the default threshold
        result = snapshot_evaluate(snapshot=snapshot)

    # then u1 deviates 250 % from b7 = 10, which triggers a LOW spike
    evaluation = AnomalyEvaluation.objects.get(snapshot=snapshot, entity_type="user")
    assert evaluation.entity_id == "u1"
    assert evaluation.baseline_value_cents == 10
    assert evaluation.current_value_cents == 35
    assert evaluation.deviation_pct == pytest.approx(250.0)
    assert evaluation.triggered is True
    assert evaluation.severity == "LOW"
    assert evaluation.reason == "TRIGGERED: 250.0% deviation (threshold: 200%)"
    user_anomalies = [a for a in result["anomalies"] if a.entity_type == "user"]
    (anomaly,) = user_anomalies
    assert evaluation.anomaly_id == anomaly.pk
    assert anomaly.anomaly_type == AnomalyType.SNAPSHOT_SPIKE
    assert anomaly.severity == "LOW"
    assert anomaly.snapshot_id == snapshot.pk
    assert anomaly.anomaly_date == PERIOD.date()
    assert (anomaly.current_value_cents, anomaly.expected_value_cents) == (35.0, 10.0)
    assert anomaly.threshold_pct == 200
    assert anomaly.message == (
        f"Cost spike detected from hourly snapshot {snapshot.pk}: 250.0% above "
        "same-hour 7-day baseline"
    )
    assert anomaly.contributors[0] == {
        "dimension": "model",
        "key": "gpt-4o-mini",
        "cents": 35.0,
        "share": 1.0,
    }


@pytest.mark.parametrize(
    ("total", "severity"), [(30, "LOW"), (40, "MEDIUM"), (50, "HIGH"), (60, "CRITICAL")]
)
def test_snapshot_severity_bands(tenant, total, severity):
    # given a baseline of 10: deviations 200, 300, 400 and 500 %
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    aggregate(snapshot, total=total, baseline=10)

    result = snapshot_evaluate(snapshot=snapshot)

    (anomaly,) = result["anomalies"]
    assert anomaly.severity == severity
    assert (result["evaluated"], result["triggered"]) == (1, 1)


def test_below_threshold_is_recorded_as_ok(tenant):
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    aggregate(snapshot, total=25, baseline=10)

    result = snapshot_evaluate(snapshot=snapshot)

    evaluation = AnomalyEvaluation.objects.get(snapshot=snapshot)
    assert evaluation.reason == "OK: 150.0% deviation (threshold: 200%)"
    assert (evaluation.triggered, evaluation.severity, evaluation.anomaly_id) == (
        False,
        None,
        None,
    )
    assert result == {"evaluated": 1, "triggered": 0, "anomalies": []}
    assert not Anomaly.objects.exists()


def test_custom_threshold_and_severity_are_independent(tenant):
    # given a 150 % deviation and a threshold of 120.5
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    aggregate(snapshot, total=25, baseline=10)

    (anomaly,) = snapshot_evaluate(snapshot=snapshot, threshold_pct=120.5)["anomalies"]

    assert anomaly.severity == "LOW"
    assert anomaly.threshold_pct == 120.5
    assert AnomalyEvaluation.objects.get().reason == (
        "TRIGGERED: 150.0% deviation (threshold: 120.5%)"
    )


def test_aggregates_without_a_positive_baseline_are_not_evaluated(tenant):
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    aggregate(snapshot, total=25, baseline=None)
    aggregate(snapshot, total=25, baseline=0, entity_type="model", entity_id="m")
    aggregate(snapshot, total=100, baseline=10, entity_type="user", entity_id="u")

    result = snapshot_evaluate(snapshot=snapshot)

    assert (result["evaluated"], result["triggered"]) == (1, 1)
    assert list(AnomalyEvaluation.objects.values_list("entity_type", flat=True)) == ["user"]


@pytest.mark.parametrize("status", [SnapshotStatus.COMPUTING, SnapshotStatus.FAILED])
def test_only_complete_snapshots_can_be_evaluated(tenant, status):
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD, status=status)
    aggregate(snapshot, total=100, baseline=10)

    with pytest.raises(SnapshotNotComplete) as caught:
        snapshot_evaluate(snapshot=snapshot)

    assert isinstance(caught.value, Conflict)
    assert caught.value.status_code == 409
    assert not AnomalyEvaluation.objects.exists()
    assert not Anomaly.objects.exists()


def test_re_evaluation_updates_in_place_and_keeps_the_status(tenant):
    # given an evaluated snapshot whose anomaly an operator acknowledged
    snapshot = CostSnapshotFactory(
        tenant=tenant, snapshot_type=SnapshotType.DAILY, period_start=utc(2026, 3, 15)
    )
    row = aggregate(snapshot, total=60, baseline=10)
    (first,) = snapshot_evaluate(snapshot=snapshot)["anomalies"]
    Anomaly.objects.filter(pk=first.pk).update(status=AnomalyStatus.ACKNOWLEDGED)

    # when the snapshot's numbers change and it is evaluated again
    row.total_cost_cents = Decimal(45)
    row.deviation_from_7d_pct = 350.0
    row.save()
    (second,) = snapshot_evaluate(snapshot=snapshot)["anomalies"]

    # then the same anomaly carries the new measurements and its status
    assert second.pk == first.pk
    assert second.status == AnomalyStatus.ACKNOWLEDGED
    assert (second.severity, second.current_value_cents) == ("MEDIUM", 45.0)
    assert second.message == (
        f"Cost spike detected from daily snapshot {snapshot.pk}: 350.0% above 7-day baseline"
    )
    assert AnomalyEvaluation.objects.filter(snapshot=snapshot).count() == 1


def test_re_evaluation_below_threshold_never_closes_the_anomaly(tenant):
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    row = aggregate(snapshot, total=60, baseline=10)
    snapshot_evaluate(snapshot=snapshot)

    row.deviation_from_7d_pct = 10.0
    row.save()
    result = snapshot_evaluate(snapshot=snapshot)

    evaluation = AnomalyEvaluation.objects.get(snapshot=snapshot)
    assert (evaluation.triggered, evaluation.anomaly_id) == (False, None)
    assert result["triggered"] == 0
    assert Anomaly.objects.get().status == AnomalyStatus.OPEN


def test_derived_cause_compares_with_the_preceding_period(tenant):
    # given 4 requests this hour against 2 in the hour before: traffic growth
    previous = PERIOD - timedelta(hours=1)
    for minute in (5, 10):
        CostRecordFactory(tenant=tenant, created_at=previous + timedelta(minutes=minute))
    for minute in (5, 10, 15, 20):
        CostRecordFactory(tenant=tenant, created_at=PERIOD + timedelta(minutes=minute))
    snapshot = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    aggregate(snapshot, total=60, baseline=10)

    (anomaly,) = snapshot_evaluate(snapshot=snapshot)["anomalies"]

    assert anomaly.derived_cause == "TRAFFIC_GROWTH"
    assert anomaly.contributors[0]["cents"] == 6.0  # the period only: 4 x 1.5


def test_evaluation_is_per_snapshot(tenant, other_tenant):
    mine = CostSnapshotFactory(tenant=tenant, period_start=PERIOD)
    theirs = CostSnapshotFactory(tenant=other_tenant, period_start=PERIOD)
    aggregate(mine, total=60, baseline=10)
    aggregate(theirs, total=60, baseline=10)

    snapshot_evaluate(snapshot=mine)

    assert Anomaly.objects.get().tenant == tenant
    assert not AnomalyEvaluation.objects.filter(snapshot=theirs).exists()
