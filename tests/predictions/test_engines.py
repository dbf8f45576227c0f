"""Prediction engines. Pure: no database."""

from decimal import Decimal

import pytest

from predictions.services.engines import (
    WorkerCostTrend,
    WorkerFailureStats,
    cost_overrun,
    cost_projection,
    error_samples,
    failure_likelihood,
)


def _stats(failures, total, errors=(), patterns=0):
    return WorkerFailureStats(
        worker_id="worker-a",
        failures=failures,
        total=total,
        recent_errors=list(errors),
        feedback_patterns=patterns,
    )


def _trend(costs_newest_first):
    costs = [Decimal(str(cost)) for cost in costs_newest_first]
    recent, older = costs[:3], costs[3:]
    return WorkerCostTrend(
        worker_id="worker-c",
        recent_count=len(recent),
        recent_sum_cents=sum(recent, Decimal(0)),
        older_count=len(older),
        older_sum_cents=sum(older, Decimal(0)),
    )


def test_spec_example_two_of_five_failed_is_emitted_with_confidence_0_6():
    draft = failure_likelihood(_stats(2, 5, ["boom", "boom"]))
    assert draft.confidence_score == 0.6
    assert draft.prediction_value == {
        "predicted_outcome": "high_failure_likelihood",
        "failure_rate": 0.4,
        "recent_failures": 2,
        "total_runs": 5,
    }
    assert draft.contributing_factors == [
        {"type": "recent_failures", "count": 2},
        {"type": "failure_rate", "value": 0.4},
        {"type": "error_samples", "samples": ["boom"]},
    ]
    assert draft.notes == "ADVISORY: This is a prediction, not a fact."
    assert (draft.prediction_type, draft.subject_type, draft.subject_id) == (
        "failure_likelihood",
        "worker",
        "worker-a",
    )


def test_spec_example_one_of_four_is_not_emitted():
    assert failure_likelihood(_stats(1, 4)) is None


def test_spec_example_one_of_three_is_exactly_at_the_threshold():
    draft = failure_likelihood(_stats(1, 3))
    assert draft.confidence_score == 0.5
    assert draft.prediction_value["failure_rate"] == 0.333


@pytest.mark.parametrize(
    ("failures", "total", "confidence"),
    [(2, 6, 0.5), (2, 7, None), (3, 9, 0.5), (3, 10, None), (3, 4, 1.0), (5, 5, 1.0), (0, 3, None)],
)
def test_threshold_is_a_third_and_confidence_is_capped_at_one(failures, total, confidence):
    draft = failure_likelihood(_stats(failures, total))
    assert (draft.confidence_score if draft else None) == confidence


def test_feedback_patterns_factor_only_when_there_are_some():
    with_patterns = failure_likelihood(_stats(2, 5, patterns=2))
    assert with_patterns.contributing_factors[-1] == {"type": "feedback_patterns", "count": 2}
    without = failure_likelihood(_stats(2, 5, patterns=0))
    assert [factor["type"] for factor in without.contributing_factors] == [
        "recent_failures",
        "failure_rate",
        "error_samples",
    ]


def test_error_samples_are_cut_distinct_ordered_and_at_most_three():
    long_error = "e" * 150
    errors = [None, "", long_error, "e" * 100 + "different tail", "second", "third"]
    # the first five: None and "" are both "unknown"; the two long ones share 100 chars
    assert error_samples(errors) == ["unknown", "e" * 100, "second"]


def test_spec_example_cost_overrun():
    # given: newest-first costs [13, 13, 13, 10, 10]
    trend = _trend([13, 13, 13, 10, 10])
    # when
    projection = cost_projection(trend)
    draft = cost_overrun(trend)
    # then
    assert round(projection.trend, 3) == 1.3
    assert round(projection.projected, 2) == 16.9
    assert round(projection.overrun_pct, 1) == 69.0
    assert draft.confidence_score == 0.69
    assert draft.prediction_value == {
        "predicted_outcome": "cost_overrun",
        "projected_cost_cents": 16.9,
        "historical_avg_cents": 10.0,
        "overrun_percent": 69.0,
    }
    assert draft.contributing_factors == [
        {"type": "recent_avg_cost", "value": 13.0},
        {"type": "historical_avg_cost", "value": 10.0},
        {"type": "trend_multiplier", "value": 1.3},
        {"type": "sample_size", "recent": 3, "historical": 2},
    ]
    assert draft.notes == "ADVISORY: This is a projection based on trends."


def test_overrun_confidence_is_capped_at_0_95():
    draft = cost_overrun(_trend([30, 30, 30, 10]))
    assert draft.prediction_value["overrun_percent"] == 800.0
    assert draft.confidence_score == 0.95


def test_overrun_below_thirty_percent_is_not_emitted():
    # trend 1.14 -> projected 12.996 -> overrun 29.96 %
    assert cost_overrun(_trend([11.4, 11.4, 11.4, 10])) is None
    # trend 1.15 -> projected 13.225 -> overrun 32.25 %
    assert cost_overrun(_trend([11.5, 11.5, 11.5, 10])) is not None


def test_three_runs_only_compare_with_themselves():
    assert cost_projection(_trend([50, 10, 10])).overrun_pct == 0
    assert cost_overrun(_trend([50, 10, 10])) is None


def test_fewer_than_three_runs_give_nothing():
    assert cost_projection(_trend([50, 10])) is None
