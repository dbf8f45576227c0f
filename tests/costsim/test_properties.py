from hypothesis import given
from hypothesis import strategies as st

from analytics.hashing import canonical_json, sha256_hex
from costsim.services.drift import VERDICTS, compare, drift_score, verdict_for
from costsim.services.estimators import V1_SKILLS, estimate_v1, estimate_v2

KNOWN_SKILLS = sorted(V1_SKILLS)
SKILL_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"
skills = st.one_of(
    st.sampled_from(KNOWN_SKILLS),
    st.text(alphabet=SKILL_ALPHABET, min_size=1, max_size=64),
)


def _text_of_length(max_size):
    # The engines only look at lengths; around the 100/2000/4000 character thresholds
    # a repeated character is as good as any text and far cheaper to generate.
    return st.integers(min_value=0, max_value=max_size).map(lambda n: "x" * n)


params = st.fixed_dictionaries(
    {},
    optional={
        "prompt": _text_of_length(6000),
        "url": st.sampled_from(
            ["https://api.example.com", "http://localhost:8000", "http://127.0.0.1", ""]
        ),
        "timeout": st.floats(min_value=0.001, max_value=120, allow_nan=False),
        "command": _text_of_length(200),
    },
)
steps = st.fixed_dictionaries(
    {"skill": skills},
    optional={"params": params, "iterations": st.integers(min_value=1, max_value=100)},
)
plans = st.lists(steps, max_size=20)
budgets = st.integers(min_value=0, max_value=100_000)
allowlists = st.one_of(st.none(), st.lists(st.sampled_from(KNOWN_SKILLS), max_size=4))

# JSON-like values for the hashing properties.
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


def _reverse_keys(value):
    if isinstance(value, dict):
        return {k: _reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reverse_keys(v) for v in value]
    return value


@given(plan=plans, budget=budgets, allowed=allowlists)
def test_v1_cost_and_duration_are_the_sums_of_the_steps(plan, budget, allowed):
    # when
    result = estimate_v1(plan, budget_cents=budget, allowed_skills=allowed)

    # then
    assert result.estimated_cost_cents == sum(s.cost_cents for s in result.step_estimates)
    assert result.estimated_duration_ms == sum(s.latency_ms for s in result.step_estimates)
    assert result.budget_remaining_cents == budget - result.estimated_cost_cents
    assert result.feasible is (result.status == "feasible")


@given(plan=plans, budget=budgets, allowed=allowlists)
def test_v2_totals_are_the_rounded_sums_of_the_steps(plan, budget, allowed):
    # when
    result = estimate_v2(plan, budget_cents=budget, allowed_skills=allowed)

    # then: step figures are rounded to 2 dp, so their sum may be off by 0.005 each
    slack = 0.5 + 0.005 * len(plan) + 1e-6
    assert abs(result.estimated_cost_cents - sum(s.cost_cents for s in result.step_estimates)) <= (
        slack
    )
    assert (
        abs(result.estimated_duration_ms - sum(s.latency_ms for s in result.step_estimates))
        <= slack
    )
    assert 0.0 <= result.confidence_score <= 1.0
    assert result.feasible is (result.status == "success")


@given(plan=plans, budget=budgets, allowed=allowlists)
def test_v2_output_hash_is_deterministic(plan, budget, allowed):
    # when
    first = estimate_v2(plan, budget_cents=budget, allowed_skills=allowed)
    second = estimate_v2(
        plan, budget_cents=budget, allowed_skills=allowed, commit_sha="other", model_version="x"
    )

    # then
    data = first.to_dict()
    assert first.output_hash == second.output_hash
    assert first.output_hash == sha256_hex(
        {
            key: data[key]
            for key in (
                "feasible",
                "status",
                "estimated_cost_cents",
                "estimated_duration_ms",
                "step_estimates",
            )
        }
    )


@given(plan=plans, budget=budgets, allowed=allowlists)
def test_drift_score_of_real_comparisons_is_within_bounds(plan, budget, allowed):
    # when
    comparison = compare(
        estimate_v1(plan, budget_cents=budget, allowed_skills=allowed),
        estimate_v2(plan, budget_cents=budget, allowed_skills=allowed),
    )

    # then
    assert 0.0 <= comparison.drift_score <= 1.0
    assert comparison.verdict == verdict_for(comparison.drift_score)


@given(
    pct=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    feasibility_match=st.booleans(),
)
def test_drift_score_is_within_zero_and_one(pct, feasibility_match):
    # when
    score = drift_score(cost_delta_pct=pct, feasibility_match=feasibility_match)

    # then
    assert 0.0 <= score <= 1.0
    if not feasibility_match:
        assert verdict_for(score) == "mismatch"


@given(
    low=st.floats(min_value=0, max_value=1, allow_nan=False),
    high=st.floats(min_value=0, max_value=1, allow_nan=False),
)
def test_verdict_is_monotone_in_the_drift_score(low, high):
    # given
    low, high = sorted((low, high))

    # then
    assert VERDICTS.index(verdict_for(low)) <= VERDICTS.index(verdict_for(high))


@given(value=json_values)
def test_hashes_do_not_depend_on_key_order(value):
    # given
    reordered = _reverse_keys(value)

    # then
    assert canonical_json(reordered) == canonical_json(value)
    assert sha256_hex(reordered) == sha256_hex(value)
