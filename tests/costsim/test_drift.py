from dataclasses import replace

import pytest

from costsim.services.drift import compare, cost_delta_pct, drift_score, verdict_for
from costsim.services.estimators import estimate_v1, estimate_v2

EXAMPLE_PLAN = [
    {"skill": "http_call", "params": {"url": "https://api.example.com"}},
    {"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}},
    {"skill": "json_transform", "params": {"query": "$.result"}},
]


def _results(v1_cost, v2_cost, v1_feasible, v2_feasible):
    """Real results of a one-step plan with the fields under test overridden."""
    plan = [{"skill": "http_call", "params": {}}]
    v1 = replace(estimate_v1(plan), estimated_cost_cents=v1_cost, feasible=v1_feasible)
    v2 = replace(estimate_v2(plan), estimated_cost_cents=v2_cost, feasible=v2_feasible)
    return v1, v2


@pytest.mark.parametrize(
    ("v1_cost", "v2_cost", "v1_feasible", "v2_feasible", "pct", "score", "verdict"),
    [
        (100, 105, True, True, 0.05, 0.03, "match"),
        (100, 125, True, True, 0.25, 0.15, "minor_drift"),
        (100, 150, True, True, 0.5, 0.3, "major_drift"),
        (100, 100, True, False, 0.0, 0.4, "mismatch"),
        (0, 50, True, True, 50.0, 0.6, "mismatch"),
        (0, 0, True, True, 0.0, 0.0, "match"),
    ],
)
def test_drift_table_of_the_spec(v1_cost, v2_cost, v1_feasible, v2_feasible, pct, score, verdict):
    # given
    v1, v2 = _results(v1_cost, v2_cost, v1_feasible, v2_feasible)

    # when
    comparison = compare(v1, v2)

    # then
    assert comparison.cost_delta_pct == pct
    assert comparison.drift_score == score
    assert comparison.verdict == verdict
    assert comparison.cost_delta_cents == v2_cost - v1_cost
    assert comparison.feasibility_match is (v1_feasible == v2_feasible)


@pytest.mark.parametrize(
    ("score", "verdict"),
    [
        (0.0, "match"),
        (0.05, "match"),
        (0.0501, "minor_drift"),
        (0.15, "minor_drift"),
        (0.1501, "major_drift"),
        (0.3, "major_drift"),
        (0.3001, "mismatch"),
        (1.0, "mismatch"),
    ],
)
def test_verdict_bounds_are_inclusive(score, verdict):
    # then
    assert verdict_for(score) == verdict


def test_a_feasibility_flip_alone_is_always_a_mismatch():
    # when
    score = drift_score(cost_delta_pct=0.0, feasibility_match=False)

    # then
    assert score == 0.4
    assert verdict_for(score) == "mismatch"


def test_cost_gap_is_capped_at_100_percent_in_the_score_but_not_in_the_pct():
    # given
    v1, v2 = _results(10, 1000, True, False)

    # when
    comparison = compare(v1, v2)

    # then
    assert comparison.cost_delta_pct == 99.0
    assert comparison.drift_score == 1.0


def test_drift_score_uses_the_unrounded_cost_gap():
    # given: 4/7 = 0.571428..., 0.6 x 0.5714 would give 0.3428
    pct = cost_delta_pct(7, 3)

    # when
    score = drift_score(cost_delta_pct=pct, feasibility_match=True)

    # then
    assert score == 0.3429
    assert compare(*_results(7, 3, True, True)).cost_delta_pct == 0.5714


def test_example_plan_comparison_is_minor_drift():
    # given
    v1 = estimate_v1(EXAMPLE_PLAN, budget_cents=100)
    v2 = estimate_v2(EXAMPLE_PLAN, budget_cents=100)

    # when
    comparison = compare(v1, v2)

    # then
    assert comparison.to_dict() == {
        "verdict": "minor_drift",
        "v1_cost_cents": 5,
        "v2_cost_cents": 4,
        "cost_delta_cents": -1,
        "cost_delta_pct": 0.2,
        "v1_duration_ms": 2510,
        "v2_duration_ms": 2309,
        "duration_delta_ms": -201,
        "v1_feasible": True,
        "v2_feasible": True,
        "feasibility_match": True,
        "drift_score": 0.12,
        "details": {
            "v1_status": "feasible",
            "v2_status": "success",
            "v2_confidence": 0.728,
            "v1_risks_count": 1,
            "v2_risks_count": 2,
        },
    }


def test_fifty_llm_calls_comparison_is_major_drift():
    # given
    plan = [{"skill": "llm_invoke", "params": {"prompt": "Test"}, "iterations": 50}]

    # when
    comparison = compare(estimate_v1(plan, budget_cents=100), estimate_v2(plan, budget_cents=100))

    # then: both refuse the plan, so feasibility matches
    assert comparison.cost_delta_cents == -74
    assert comparison.cost_delta_pct == 0.296
    assert comparison.drift_score == 0.1776
    assert comparison.verdict == "major_drift"
    assert comparison.feasibility_match is True


def test_unknown_skill_comparison_sits_on_the_major_drift_bound():
    # given
    plan = [{"skill": "mystery"}]

    # when
    comparison = compare(estimate_v1(plan), estimate_v2(plan))

    # then
    assert (comparison.v1_cost_cents, comparison.v2_cost_cents) == (10, 5)
    assert comparison.cost_delta_pct == 0.5
    assert comparison.drift_score == 0.3
    assert comparison.verdict == "major_drift"


def test_local_http_call_comparison_is_a_match():
    # given
    plan = [{"skill": "http_call", "params": {"url": "http://localhost:8000", "timeout": 0.2}}]

    # when
    comparison = compare(estimate_v1(plan), estimate_v2(plan))

    # then
    assert comparison.v1_duration_ms == 200.0
    assert comparison.v2_duration_ms == 200
    assert comparison.duration_delta_ms == 0
    assert comparison.verdict == "match"
    assert comparison.drift_score == 0.0


def test_empty_plan_comparison_matches_two_refusals():
    # when
    comparison = compare(estimate_v1([]), estimate_v2([]))

    # then
    assert comparison.details.v1_status == "invalid_plan"
    assert comparison.details.v2_status == "schema_error"
    assert comparison.feasibility_match is True
    assert comparison.verdict == "match"
