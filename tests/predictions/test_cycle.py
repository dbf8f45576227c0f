"""The prediction cycle against PostgreSQL: windows, upserts, superseding, isolation."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction
from prometheus_client import REGISTRY

from analytics.models import RunRecord
from predictions.models import Prediction
from predictions.services import cycle as cycle_module
from predictions.services.cycle import prediction_cycle_run, prediction_cycles_run
from predictions.services.engines import failure_likelihood
from tests.factories import RunRecordFactory, TenantFactory, utc
from tests.feedback.factories import PatternFeedbackFactory
from tests.predictions.factories import PredictionFactory

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 2, 10, 20)


def _runs(tenant, worker_id, statuses, *, start=NOW, error="boom", step=timedelta(minutes=10)):
    """Runs newest first, `step` apart, ending at `start`."""
    return RunRecord.objects.bulk_create(
        RunRecordFactory.build(
            tenant=tenant,
            worker_id=worker_id,
            status=status,
            error=error if status in ("failed", "crashed") else None,
            created_at=start - step * (index + 1),
        )
        for index, status in enumerate(statuses)
    )


def _costs(tenant, worker_id, costs_newest_first, *, start=NOW):
    return RunRecord.objects.bulk_create(
        RunRecordFactory.build(
            tenant=tenant,
            worker_id=worker_id,
            cost_cents=Decimal(str(cost)),
            created_at=start - timedelta(minutes=index + 1),
        )
        for index, cost in enumerate(costs_newest_first)
    )


def _valid(tenant=None, **filters):
    queryset = Prediction.objects.filter(expires_at__gt=NOW, **filters)
    return queryset.filter(tenant=tenant) if tenant else queryset


@time_machine.travel(NOW, tick=False)
def test_failure_likelihood_boundaries_from_run_records(tenant):
    # given: 2 of 5, 1 of 4 and 1 of 3 failed (worked examples), plus a crash counted as failure
    _runs(tenant, "two-of-five", ["failed", "completed", "crashed", "completed", "completed"])
    _runs(tenant, "one-of-four", ["failed", "completed", "completed", "completed"])
    _runs(tenant, "one-of-three", ["completed", "failed", "running"])
    # when
    result = prediction_cycle_run(tenant=tenant)
    # then
    scores = {p.subject_id: p.confidence_score for p in result["failure_predictions"]}
    assert scores == {"one-of-three": 0.5, "two-of-five": 0.6}
    two_of_five = Prediction.objects.get(subject_id="two-of-five")
    assert two_of_five.prediction_value == {
        "predicted_outcome": "high_failure_likelihood",
        "failure_rate": 0.4,
        "recent_failures": 2,
        "total_runs": 5,
    }
    assert two_of_five.is_advisory is True
    assert two_of_five.cycle_hour == utc(2026, 3, 2, 10)
    assert two_of_five.expires_at == NOW + timedelta(hours=24)
    assert result["predictions_created"] == 2
    assert result["errors"] == []


@time_machine.travel(NOW, tick=False)
def test_failure_window_is_seven_days(tenant):
    # given: one failure exactly 7 days old (inside) and older successes (outside)
    RunRecordFactory(
        tenant=tenant, worker_id="w", status="failed", error="x", created_at=NOW - timedelta(days=7)
    )
    _runs(tenant, "w", ["completed"] * 5, start=NOW - timedelta(days=7))
    _runs(tenant, "w", ["completed"] * 2)
    # when
    [prediction] = prediction_cycle_run(tenant=tenant)["failure_predictions"]
    # then: 1 failure of 3 runs in the window
    assert prediction.prediction_value["total_runs"] == 3
    assert prediction.confidence_score == 0.5


@time_machine.travel(NOW, tick=False)
def test_error_samples_and_feedback_patterns_factors(tenant, other_tenant):
    # given: six failures, newest first; only the five newest are sampled
    for index, error in enumerate(["A" * 150, None, "", "B", "A" * 100 + "tail", "C"]):
        RunRecordFactory(
            tenant=tenant,
            worker_id="w",
            status="failed",
            error=error,
            created_at=NOW - timedelta(minutes=index + 1),
        )
    # recent failure-pattern feedback naming w (counted) and some that must not count
    PatternFeedbackFactory(
        tenant=tenant, metadata={"worker_ids": ["v", "w"]}, detected_at=NOW - timedelta(days=6)
    )
    PatternFeedbackFactory(
        tenant=tenant, metadata={"worker_ids": ["w"]}, detected_at=NOW - timedelta(days=8)
    )
    PatternFeedbackFactory(tenant=tenant, metadata={"worker_ids": ["v"]})
    PatternFeedbackFactory(tenant=tenant, pattern_type="cost_spike", metadata={"worker_ids": ["w"]})
    PatternFeedbackFactory(tenant=other_tenant, metadata={"worker_ids": ["w"]})
    # when
    [prediction] = prediction_cycle_run(tenant=tenant)["failure_predictions"]
    # then
    assert prediction.contributing_factors == [
        {"type": "recent_failures", "count": 6},
        {"type": "failure_rate", "value": 1.0},
        {"type": "error_samples", "samples": ["A" * 100, "unknown", "B"]},
        {"type": "feedback_patterns", "count": 1},
    ]


@time_machine.travel(NOW, tick=False)
def test_spec_cost_overrun_from_run_records(tenant):
    # given
    _costs(tenant, "grower", [13, 13, 13, 10, 10])
    _costs(tenant, "steady", [10, 10, 10, 10, 10])
    # when
    result = prediction_cycle_run(tenant=tenant)
    # then
    [prediction] = result["cost_predictions"]
    assert prediction.subject_id == "grower"
    assert prediction.confidence_score == 0.69
    assert prediction.prediction_value == {
        "predicted_outcome": "cost_overrun",
        "projected_cost_cents": 16.9,
        "historical_avg_cents": 10.0,
        "overrun_percent": 69.0,
    }
    assert prediction.notes == "ADVISORY: This is a projection based on trends."


@time_machine.travel(NOW, tick=False)
def test_cost_history_is_the_newest_two_hundred_paid_completed_runs(tenant):
    # given: 3 recent runs at 13, then 197 at 10, then 50 more at 1 that fall outside the
    # 200-run window; unpaid, failed and too old runs are ignored too
    _costs(tenant, "w", [13] * 3 + [10] * 197 + [1] * 50)
    RunRecordFactory(tenant=tenant, worker_id="w", cost_cents=Decimal(0), created_at=NOW)
    RunRecordFactory(
        tenant=tenant, worker_id="w", status="failed", cost_cents=Decimal(500), created_at=NOW
    )
    RunRecordFactory(
        tenant=tenant, worker_id="w", cost_cents=Decimal(500), created_at=NOW - timedelta(days=8)
    )
    # when
    [prediction] = prediction_cycle_run(tenant=tenant)["cost_predictions"]
    # then
    assert prediction.prediction_value["historical_avg_cents"] == 10.0
    assert prediction.contributing_factors[-1] == {
        "type": "sample_size",
        "recent": 3,
        "historical": 197,
    }


@time_machine.travel(NOW, tick=False)
def test_results_do_not_depend_on_a_row_cap(tenant):
    # given: 60 workers, each failing half its runs, and one worker with 600 runs
    RunRecord.objects.bulk_create(
        RunRecordFactory.build(
            tenant=tenant,
            worker_id=f"w{worker:03}",
            status=status,
            error="boom",
            created_at=NOW - timedelta(seconds=index + 1),
        )
        for worker in range(60)
        for index, status in enumerate(["failed", "completed"])
    )
    _runs(tenant, "busy", ["failed", "completed", "completed"] * 200, step=timedelta(seconds=1))
    # when
    result = prediction_cycle_run(tenant=tenant)
    # then
    assert len(result["failure_predictions"]) == 61
    busy = Prediction.objects.get(subject_id="busy")
    assert busy.prediction_value["total_runs"] == 600
    assert busy.prediction_value["recent_failures"] == 200


@time_machine.travel(NOW, tick=False)
def test_second_cycle_in_the_same_hour_updates_in_place(tenant):
    # given
    _runs(tenant, "w", ["failed", "completed", "completed"])
    [first] = prediction_cycle_run(tenant=tenant)["failure_predictions"]
    # when: forty minutes later, one more failure for the same worker
    later = NOW + timedelta(minutes=30)
    with time_machine.travel(later, tick=False):
        RunRecordFactory(
            tenant=tenant, worker_id="w", status="failed", error="boom", created_at=later
        )
        result = prediction_cycle_run(tenant=tenant)
    # then
    [second] = result["failure_predictions"]
    assert result["predictions_created"] == 1
    assert Prediction.objects.count() == 1
    assert second.id == first.id
    assert second.created_at == NOW
    assert second.updated_at == later
    assert second.expires_at == later + timedelta(hours=24)
    assert second.prediction_value["recent_failures"] == 2


@time_machine.travel(NOW, tick=False)
def test_next_hour_supersedes_the_previous_prediction(tenant):
    # given
    _runs(tenant, "w", ["failed", "completed"])
    [first] = prediction_cycle_run(tenant=tenant)["failure_predictions"]
    # when
    next_hour = NOW + timedelta(hours=1)
    with time_machine.travel(next_hour, tick=False):
        [second] = prediction_cycle_run(tenant=tenant)["failure_predictions"]
    # then
    first.refresh_from_db()
    assert second.id != first.id
    assert second.cycle_hour == utc(2026, 3, 2, 11)
    assert first.expires_at == next_hour
    valid = Prediction.objects.filter(expires_at__gt=next_hour)
    assert list(valid.values_list("id", flat=True)) == [second.id]


@time_machine.travel(NOW, tick=False)
def test_superseding_stays_within_subject_type_and_tenant(tenant, other_tenant):
    # given: valid predictions for the same worker id of another type and another tenant
    cost = PredictionFactory(
        tenant=tenant,
        subject_id="w",
        prediction_type="cost_overrun",
        created_at=NOW - timedelta(hours=2),
    )
    theirs = PredictionFactory(
        tenant=other_tenant, subject_id="w", created_at=NOW - timedelta(hours=2)
    )
    mine = PredictionFactory(tenant=tenant, subject_id="w", created_at=NOW - timedelta(hours=2))
    _runs(tenant, "w", ["failed", "completed"])
    # when
    prediction_cycle_run(tenant=tenant)
    # then
    for prediction in (cost, theirs, mine):
        prediction.refresh_from_db()
    assert mine.expires_at == NOW
    assert cost.expires_at > NOW
    assert theirs.expires_at > NOW


@time_machine.travel(NOW, tick=False)
def test_validity_comes_from_settings(tenant, settings):
    settings.PREDICTION_VALIDITY_HOURS = 2
    _runs(tenant, "w", ["failed"])
    [prediction] = prediction_cycle_run(tenant=tenant)["failure_predictions"]
    assert prediction.expires_at == NOW + timedelta(hours=2)
    with time_machine.travel(NOW + timedelta(hours=2), tick=False):
        assert prediction.is_valid is False


@time_machine.travel(NOW, tick=False)
def test_cycle_never_reads_another_tenant(tenant, other_tenant):
    _runs(other_tenant, "w", ["failed", "failed"])
    _costs(other_tenant, "w", [13, 13, 13, 10, 10])
    result = prediction_cycle_run(tenant=tenant)
    assert result["failure_predictions"] == result["cost_predictions"] == []
    assert not Prediction.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_cycle_leaves_run_records_untouched(tenant):
    # given
    _runs(tenant, "w", ["failed", "completed", "crashed"])
    _costs(tenant, "c", [13, 13, 13, 10, 10])
    before = list(RunRecord.objects.order_by("pk").values())
    # when
    prediction_cycle_run(tenant=tenant)
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        prediction_cycle_run(tenant=tenant)
    # then
    assert list(RunRecord.objects.order_by("pk").values()) == before


@time_machine.travel(NOW, tick=False)
def test_a_failing_emission_is_reported_and_the_cycle_goes_on(
    tenant, monkeypatch, django_capture_on_commit_callbacks
):
    # given: an engine bug makes one worker's confidence impossible
    _runs(tenant, "bad", ["failed"])
    _runs(tenant, "good", ["failed"])

    def broken(stats):
        draft = failure_likelihood(stats)
        if stats.worker_id == "bad":
            draft = type(draft)(**{**draft.__dict__, "confidence_score": 1.5})
        return draft

    monkeypatch.setattr(cycle_module, "failure_likelihood", broken)
    errors_before = REGISTRY.get_sample_value(
        "predictions_emission_errors_total", {"prediction_type": "failure_likelihood"}
    )
    # when
    with django_capture_on_commit_callbacks(execute=True):
        result = prediction_cycle_run(tenant=tenant)
    # then
    assert [p.subject_id for p in result["failure_predictions"]] == ["good"]
    [error] = result["errors"]
    assert error.startswith("failure_likelihood/bad: ")
    assert "1.0" in error
    assert list(Prediction.objects.values_list("subject_id", flat=True)) == ["good"]
    errors_after = REGISTRY.get_sample_value(
        "predictions_emission_errors_total", {"prediction_type": "failure_likelihood"}
    )
    assert errors_after == errors_before + 1


@time_machine.travel(NOW, tick=False)
def test_emitted_counter_counts_every_write(tenant, django_capture_on_commit_callbacks):
    _costs(tenant, "c", [13, 13, 13, 10, 10])

    def emitted():
        return REGISTRY.get_sample_value(
            "predictions_emitted_total", {"prediction_type": "cost_overrun"}
        )

    before = emitted()
    with django_capture_on_commit_callbacks(execute=True):
        prediction_cycle_run(tenant=tenant)
    with django_capture_on_commit_callbacks(execute=True):
        prediction_cycle_run(tenant=tenant)
    assert emitted() == before + 2


@pytest.mark.parametrize(
    "overrides",
    [{"is_advisory": False}, {"confidence_score": 1.01}, {"confidence_score": -0.01}],
)
def test_database_rejects_non_advisory_or_out_of_range_rows(tenant, overrides):
    with pytest.raises(IntegrityError), transaction.atomic():
        PredictionFactory(tenant=tenant, **overrides)


def test_database_rejects_a_second_row_for_the_same_hour(tenant):
    first = PredictionFactory(tenant=tenant, subject_id="w")
    with pytest.raises(IntegrityError), transaction.atomic():
        PredictionFactory(tenant=tenant, subject_id="w", created_at=first.created_at)


@time_machine.travel(NOW, tick=False)
def test_job_runs_every_active_tenant_and_survives_a_failing_one(tenant, monkeypatch):
    # given
    broken = TenantFactory(slug="broken")
    inactive = TenantFactory(slug="asleep", is_active=False)
    for owner in (tenant, broken, inactive):
        _runs(owner, "w", ["failed"])
    real = cycle_module.worker_failure_stats

    def failing_for_broken(*, tenant, since):
        if tenant.slug == "broken":
            raise RuntimeError("database hiccup")
        return real(tenant=tenant, since=since)

    monkeypatch.setattr(cycle_module, "worker_failure_stats", failing_for_broken)
    # when
    summary = prediction_cycles_run()
    # then
    assert summary.tenants == 2
    assert summary.failed_tenants == ["broken"]
    assert summary.totals["predictions_created"] == 1
    assert list(Prediction.objects.values_list("tenant__slug", flat=True)) == ["acme"]
