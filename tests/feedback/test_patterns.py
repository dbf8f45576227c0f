"""Pattern detection and acknowledgement services against PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from prometheus_client import REGISTRY

from analytics.models import RunRecord
from feedback.models import PatternFeedback, PatternType
from feedback.services import patterns as patterns_module
from feedback.services.patterns import (
    feedback_acknowledge,
    feedbacks_acknowledge,
    patterns_detect,
    patterns_detect_for_tenants,
)
from tests.factories import RunRecordFactory, TenantFactory, utc
from tests.feedback.factories import PatternFeedbackFactory

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 2, 12, 20)
TIMEOUT = "Timeout after 30s calling job {uuid} at 2026-03-02T10:15:00"
UUIDS = [
    "3F2504E0-4F89-11D3-9A0C-0305E82C3301",
    "3F2504E0-4F89-11D3-9A0C-0305E82C3302",
    "3F2504E0-4F89-11D3-9A0C-0305E82C3303",
    "3F2504E0-4F89-11D3-9A0C-0305E82C3304",
]


def _timeout_runs(tenant, count, *, start=0, worker_id="worker-a"):
    return [
        RunRecordFactory(
            tenant=tenant,
            run_id=f"timeout-{index}",
            worker_id=worker_id,
            status="failed",
            error=TIMEOUT.format(uuid=UUIDS[index]),
            created_at=NOW - timedelta(minutes=10 * (index + 1)),
        )
        for index in range(start, start + count)
    ]


def _spiky_worker(tenant, worker_id="worker-s", costs=(30, 10, 10, 10, 10)):
    return [
        RunRecordFactory(
            tenant=tenant,
            worker_id=worker_id,
            cost_cents=Decimal(cost),
            created_at=NOW - timedelta(hours=index + 1),
        )
        for index, cost in enumerate(costs)
    ]


def _run_rows():
    return list(RunRecord.objects.order_by("pk").values())


def _counter(pattern_type, result):
    return REGISTRY.get_sample_value(
        "feedback_patterns_total", {"pattern_type": pattern_type, "result": result}
    )


@time_machine.travel(NOW, tick=False)
def test_repeated_failures_become_one_failure_pattern(tenant):
    # given: three timeouts differing only in the job id, on two workers
    _timeout_runs(tenant, 2, worker_id="worker-b")
    _timeout_runs(tenant, 1, start=2, worker_id="worker-a")
    # when
    result = patterns_detect(tenant=tenant)
    # then
    assert result == {
        "failure_patterns": 1,
        "cost_spikes": 0,
        "feedback_created": 1,
        "feedback_updated": 0,
    }
    feedback = PatternFeedback.objects.get(tenant=tenant)
    sample = TIMEOUT.format(uuid=UUIDS[0])
    assert feedback.pattern_type == PatternType.FAILURE_PATTERN
    assert feedback.signature == "6e7320b81f76e5bd"
    assert feedback.severity == "warning"
    assert feedback.description == f"Repeated failure detected: 3 occurrences. Sample: {sample}"
    assert feedback.provenance == ["timeout-0", "timeout-1", "timeout-2"]
    assert feedback.occurrence_count == 3
    assert feedback.time_window_minutes == 24 * 60
    assert feedback.threshold_used == "threshold=3"
    assert feedback.metadata == {
        "worker_id": "worker-b",
        "worker_ids": ["worker-a", "worker-b"],
        "sample_error": sample,
    }
    assert feedback.detected_at == NOW
    assert feedback.acknowledged is False


@time_machine.travel(NOW, tick=False)
def test_two_failures_are_below_the_default_threshold(tenant):
    _timeout_runs(tenant, 2)
    assert patterns_detect(tenant=tenant)["failure_patterns"] == 0
    assert not PatternFeedback.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_threshold_and_window_come_from_settings(tenant, settings):
    # given: two recent failures and one three hours old
    settings.FAILURE_PATTERN_THRESHOLD = 2
    settings.FAILURE_PATTERN_WINDOW_HOURS = 1
    _timeout_runs(tenant, 2)
    RunRecordFactory(
        tenant=tenant,
        status="failed",
        error=TIMEOUT.format(uuid=UUIDS[3]),
        created_at=NOW - timedelta(hours=3),
    )
    # when
    patterns_detect(tenant=tenant)
    # then
    feedback = PatternFeedback.objects.get(tenant=tenant)
    assert feedback.occurrence_count == 2
    assert feedback.threshold_used == "threshold=2"
    assert feedback.time_window_minutes == 60


@time_machine.travel(NOW, tick=False)
def test_spec_cost_spike_is_written_as_feedback(tenant):
    # given
    runs = _spiky_worker(tenant)
    # when
    result = patterns_detect(tenant=tenant)
    # then
    assert result["cost_spikes"] == 1
    feedback = PatternFeedback.objects.get(tenant=tenant, pattern_type=PatternType.COST_SPIKE)
    assert feedback.signature == "cost_spike_worker-s"
    assert feedback.description == "Cost spike detected: 200.0% increase. Recent: 30¢, Avg: 10.00¢"
    assert feedback.provenance == [runs[0].run_id]
    assert feedback.occurrence_count == 1
    assert feedback.time_window_minutes is None
    assert feedback.threshold_used == "spike_threshold=50.0%"
    assert feedback.metadata == {
        "worker_id": "worker-s",
        "avg_cost_cents": 10.0,
        "recent_cost_cents": 30,
        "baseline_run_count": 4,
    }


@time_machine.travel(NOW, tick=False)
def test_second_run_updates_the_same_rows(tenant):
    # given
    _timeout_runs(tenant, 3)
    _spiky_worker(tenant)
    first = patterns_detect(tenant=tenant)
    ids = set(PatternFeedback.objects.values_list("id", flat=True))
    # when
    with time_machine.travel(NOW + timedelta(minutes=30), tick=False):
        _timeout_runs(tenant, 1, start=3)
        second = patterns_detect(tenant=tenant)
    # then
    assert first["feedback_created"] == 2
    assert second == {
        "failure_patterns": 1,
        "cost_spikes": 1,
        "feedback_created": 0,
        "feedback_updated": 2,
    }
    assert set(PatternFeedback.objects.values_list("id", flat=True)) == ids
    pattern = PatternFeedback.objects.get(pattern_type=PatternType.FAILURE_PATTERN)
    assert pattern.occurrence_count == 4
    assert len(pattern.provenance) == 4
    assert pattern.detected_at == NOW + timedelta(minutes=30)
    assert pattern.created_at == NOW


@time_machine.travel(NOW, tick=False)
def test_acknowledged_pattern_reopens_when_new_runs_join(tenant):
    # given: an acknowledged pattern
    _timeout_runs(tenant, 3)
    patterns_detect(tenant=tenant)
    feedback = PatternFeedback.objects.get()
    feedback_acknowledge(feedback=feedback, actor="user:ops")
    # when: a fourth matching failure arrives
    _timeout_runs(tenant, 1, start=3)
    result = patterns_detect(tenant=tenant)
    # then
    feedback.refresh_from_db()
    assert result["feedback_updated"] == 1
    assert feedback.acknowledged is False
    assert feedback.acknowledged_at is None
    assert feedback.acknowledged_by is None


@time_machine.travel(NOW, tick=False)
def test_acknowledgement_stays_when_no_new_run_appears(tenant):
    # given
    _timeout_runs(tenant, 3)
    patterns_detect(tenant=tenant)
    feedback = feedback_acknowledge(feedback=PatternFeedback.objects.get(), actor="user:ops")
    # when: detection runs again over the same runs
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        patterns_detect(tenant=tenant)
    # then
    feedback.refresh_from_db()
    assert feedback.acknowledged is True
    assert feedback.acknowledged_at == NOW
    assert feedback.acknowledged_by == "user:ops"
    assert feedback.detected_at == NOW + timedelta(minutes=5)


@time_machine.travel(NOW, tick=False)
def test_acknowledgement_stays_when_runs_only_leave_the_window(tenant):
    # given: acknowledged with four runs; one of them then ages out of the window
    _timeout_runs(tenant, 4)
    patterns_detect(tenant=tenant)
    feedback = feedback_acknowledge(feedback=PatternFeedback.objects.get(), actor="user:ops")
    # when
    with time_machine.travel(NOW + timedelta(hours=23, minutes=25), tick=False):
        patterns_detect(tenant=tenant)
    # then
    feedback.refresh_from_db()
    assert feedback.occurrence_count == 3
    assert feedback.acknowledged is True


@time_machine.travel(NOW, tick=False)
def test_detection_never_crosses_tenants(tenant, other_tenant):
    # given: the other tenant has the same failures, a spike and its own feedback row
    _timeout_runs(other_tenant, 3)
    _spiky_worker(other_tenant)
    theirs = PatternFeedbackFactory(
        tenant=other_tenant, signature="6e7320b81f76e5bd", occurrence_count=9, provenance=["x"] * 9
    )
    _timeout_runs(tenant, 1, start=3)
    # when
    result = patterns_detect(tenant=tenant)
    # then
    assert result == {
        "failure_patterns": 0,
        "cost_spikes": 0,
        "feedback_created": 0,
        "feedback_updated": 0,
    }
    assert not PatternFeedback.objects.filter(tenant=tenant).exists()
    theirs.refresh_from_db()
    assert theirs.occurrence_count == 9


@time_machine.travel(NOW, tick=False)
def test_same_signature_in_two_tenants_gives_two_rows(tenant, other_tenant):
    _timeout_runs(tenant, 3)
    RunRecordFactory.reset_sequence(1000)
    for index in range(3):
        RunRecordFactory(
            tenant=other_tenant, status="failed", error=TIMEOUT.format(uuid=UUIDS[index])
        )
    patterns_detect(tenant=tenant)
    patterns_detect(tenant=other_tenant)
    assert PatternFeedback.objects.filter(signature="6e7320b81f76e5bd").count() == 2


@time_machine.travel(NOW, tick=False)
def test_detection_leaves_run_records_untouched(tenant):
    # given
    _timeout_runs(tenant, 3)
    _spiky_worker(tenant)
    before = _run_rows()
    # when
    patterns_detect(tenant=tenant)
    patterns_detect(tenant=tenant)
    # then
    assert _run_rows() == before


@time_machine.travel(NOW, tick=False)
def test_metrics_count_created_and_updated_rows_after_commit(
    tenant, django_capture_on_commit_callbacks
):
    # given
    _timeout_runs(tenant, 3)
    created_before = _counter("failure_pattern", "created")
    updated_before = _counter("failure_pattern", "updated")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        patterns_detect(tenant=tenant)
    with django_capture_on_commit_callbacks(execute=True):
        patterns_detect(tenant=tenant)
    # then
    assert _counter("failure_pattern", "created") == created_before + 1
    assert _counter("failure_pattern", "updated") == updated_before + 1


def test_metrics_label_sets_exist_before_any_detection():
    for pattern_type in ("failure_pattern", "cost_spike"):
        for result in ("created", "updated"):
            assert _counter(pattern_type, result) is not None


def test_acknowledge_records_actor_and_time(tenant):
    # given
    feedback = PatternFeedbackFactory(tenant=tenant)
    # when
    with time_machine.travel(NOW, tick=False):
        acknowledged = feedback_acknowledge(feedback=feedback, actor="api-key:ck_abcdefgh")
    # then
    assert acknowledged.acknowledged is True
    assert acknowledged.acknowledged_at == NOW
    assert acknowledged.acknowledged_by == "api-key:ck_abcdefgh"


def test_acknowledging_twice_keeps_the_first_acknowledgement(tenant):
    feedback = PatternFeedbackFactory(tenant=tenant)
    with time_machine.travel(NOW, tick=False):
        feedback_acknowledge(feedback=feedback, actor="user:first")
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        again = feedback_acknowledge(feedback=feedback, actor="user:second")
    assert again.acknowledged_by == "user:first"
    assert again.acknowledged_at == NOW


def test_bulk_acknowledge_counts_only_open_rows(tenant):
    PatternFeedbackFactory.create_batch(2, tenant=tenant)
    PatternFeedbackFactory(
        tenant=tenant, acknowledged=True, acknowledged_at=NOW, acknowledged_by="user:x"
    )
    changed = feedbacks_acknowledge(feedbacks=PatternFeedback.objects.all(), actor="user:ops")
    assert changed == 2
    assert PatternFeedback.objects.filter(acknowledged_by="user:ops").count() == 2


@time_machine.travel(NOW, tick=False)
def test_job_runs_every_active_tenant_and_survives_a_failing_one(tenant, monkeypatch):
    # given: three active tenants (one broken) and an inactive one, all with a pattern
    broken = TenantFactory(slug="broken")
    healthy = TenantFactory(slug="zeta")
    inactive = TenantFactory(slug="asleep", is_active=False)
    for owner, worker in ((tenant, "a"), (broken, "b"), (healthy, "z"), (inactive, "i")):
        for index in range(3):
            RunRecordFactory(
                tenant=owner, run_id=f"{worker}-{index}", status="failed", error="boom 1"
            )
    real = patterns_module.failure_groups

    def failing_for_broken(*, tenant, **kwargs):
        if tenant.slug == "broken":
            raise RuntimeError("database hiccup")
        return real(tenant=tenant, **kwargs)

    monkeypatch.setattr(patterns_module, "failure_groups", failing_for_broken)
    # when
    summary = patterns_detect_for_tenants()
    # then
    assert summary.tenants == 3
    assert summary.failed_tenants == ["broken"]
    assert summary.totals["feedback_created"] == 2
    owners = set(PatternFeedback.objects.values_list("tenant__slug", flat=True))
    assert owners == {"acme", "zeta"}
