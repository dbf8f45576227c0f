"""Pattern detectors. Pure: no database."""

from decimal import Decimal

from feedback.choices import PatternType
from feedback.services.detectors import (
    FailureGroup,
    WorkerCostWindow,
    cost_spike_finding,
    cost_spike_percent,
    failure_pattern_finding,
)


def _window(costs_newest_first: list[str], worker_id="worker-a") -> WorkerCostWindow:
    costs = [Decimal(cost) for cost in costs_newest_first]
    return WorkerCostWindow(
        worker_id=worker_id,
        run_count=len(costs),
        newest_run_id="run-newest",
        recent_cost_cents=costs[0],
        others_cost_sum_cents=sum(costs[1:], Decimal(0)),
    )


def test_spec_example_cost_spike_description():
    # given: newest-first costs [30, 10, 10, 10, 10]
    window = _window(["30", "10", "10", "10", "10"])
    # when
    finding = cost_spike_finding(window, threshold_pct=50.0, min_runs=5)
    # then
    assert cost_spike_percent(window) == 200.0
    assert finding.description == "Cost spike detected: 200.0% increase. Recent: 30¢, Avg: 10.00¢"
    assert finding.pattern_type == PatternType.COST_SPIKE
    assert finding.severity == "warning"
    assert finding.signature == "cost_spike_worker-a"
    assert finding.provenance == ["run-newest"]
    assert finding.occurrence_count == 1
    assert finding.time_window_minutes is None
    assert finding.threshold_used == "spike_threshold=50.0%"
    assert finding.metadata == {
        "worker_id": "worker-a",
        "avg_cost_cents": 10.0,
        "recent_cost_cents": 30,
        "baseline_run_count": 4,
    }


def test_recent_cost_renders_as_plain_decimal():
    window = _window(["12.500000", "4", "4", "4", "4"])
    finding = cost_spike_finding(window, threshold_pct=50.0, min_runs=5)
    assert "Recent: 12.5¢, Avg: 4.00¢" in finding.description
    assert finding.metadata["recent_cost_cents"] == 12.5


def test_spike_exactly_at_threshold_is_emitted_and_just_below_is_not():
    # 15 over an average of 10 is exactly +50 %
    assert cost_spike_finding(_window(["15", "10", "10", "10", "10"]), threshold_pct=50, min_runs=5)
    assert not cost_spike_finding(
        _window(["14.99", "10", "10", "10", "10"]), threshold_pct=50, min_runs=5
    )


def test_worker_with_fewer_runs_than_minimum_is_skipped():
    assert (
        cost_spike_finding(_window(["30", "10", "10", "10"]), threshold_pct=50, min_runs=5) is None
    )


def test_cost_drop_is_not_a_spike():
    assert (
        cost_spike_finding(_window(["1", "10", "10", "10", "10"]), threshold_pct=0, min_runs=5)
        is None
    )


def test_failure_pattern_finding_fields():
    # given
    group = FailureGroup(
        signature="f7da4002d70dd952",
        run_ids=["run-3", "run-2", "run-1"],
        worker_ids=["worker-b", "worker-a"],
        newest_worker_id="worker-b",
        sample_error="HTTP 503 from upstream (attempt 2) " + "x" * 600,
    )
    # when
    finding = failure_pattern_finding(group, window_hours=24, threshold=3)
    # then
    sample = group.sample_error[:500]
    assert finding.pattern_type == PatternType.FAILURE_PATTERN
    assert finding.severity == "warning"
    assert finding.description == (
        f"Repeated failure detected: 3 occurrences. Sample: {group.sample_error[:200]}"
    )
    assert finding.signature == "f7da4002d70dd952"
    assert finding.provenance == ["run-3", "run-2", "run-1"]
    assert finding.occurrence_count == 3
    assert finding.time_window_minutes == 1440
    assert finding.threshold_used == "threshold=3"
    assert finding.metadata == {
        "worker_id": "worker-b",
        "worker_ids": ["worker-a", "worker-b"],
        "sample_error": sample,
    }


def test_failure_group_below_threshold_is_not_a_pattern():
    group = FailureGroup("sig", ["run-1", "run-2"], ["w"], "w", "boom")
    assert failure_pattern_finding(group, window_hours=24, threshold=3) is None
    assert failure_pattern_finding(group, window_hours=24, threshold=2) is not None
