import pytest

from analytics.hashing import sha256_hex
from costsim.services.estimators import (
    RISK_THRESHOLD,
    V1_MITIGATIONS,
    V1_SKILLS,
    V2_SKILLS,
    estimate_v1,
    estimate_v2,
)

# The reference plan: V1 cost 5 cents, V2 cost 4 cents.
EXAMPLE_PLAN = [
    {"skill": "http_call", "params": {"url": "https://api.example.com"}},
    {"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}},
    {"skill": "json_transform", "params": {"query": "$.result"}},
]
LLM_X50 = [{"skill": "llm_invoke", "params": {"prompt": "Test"}, "iterations": 50}]


def _step(skill, iterations=1, **params):
    return {"skill": skill, "params": params, "iterations": iterations}


# V1 ---------------------------------------------------------------------------------


def test_v1_skill_table_matches_the_spec():
    # then
    assert len(V1_SKILLS) == 10
    assert {row.risk_type for row in V1_SKILLS.values()} | {"unknown"} == set(V1_MITIGATIONS)
    assert V1_SKILLS["llm_invoke"].cost_cents == 5
    assert V1_SKILLS["email_send"].cost_cents == 1
    assert RISK_THRESHOLD == 0.5


def test_v1_example_plan_is_feasible_with_one_reported_risk():
    # when
    result = estimate_v1(EXAMPLE_PLAN, budget_cents=100)

    # then
    assert result.status == "feasible"
    assert result.feasible is True
    assert result.estimated_cost_cents == 5
    assert result.estimated_duration_ms == 2510
    assert isinstance(result.estimated_duration_ms, int)
    assert result.budget_remaining_cents == 95
    assert result.budget_sufficient is True
    assert result.to_dict()["risks"] == [
        {
            "step_index": 0,
            "skill_id": "http_call",
            "risk_type": "timeout",
            "probability": 0.1,
            "description": "http_call x1 has 10% chance of timeout",
            "mitigation": "Add retry with exponential backoff",
        }
    ]
    assert result.metadata == {
        "plan_steps": 3,
        "cumulative_risk": 0.15355,
        "budget_utilization": 0.05,
    }
    assert result.alternatives == []
    assert result.warnings == []
    assert result.permission_gaps == []


def test_v1_result_has_exactly_the_spec_keys():
    # when
    data = estimate_v1(EXAMPLE_PLAN, budget_cents=100).to_dict()

    # then
    assert list(data) == [
        "feasible",
        "status",
        "estimated_cost_cents",
        "estimated_duration_ms",
        "budget_remaining_cents",
        "budget_sufficient",
        "permission_gaps",
        "risks",
        "step_estimates",
        "alternatives",
        "warnings",
        "metadata",
    ]
    assert data["step_estimates"][1] == {
        "step_index": 1,
        "skill_id": "llm_invoke",
        "iterations": 1,
        "base_cost_cents": 5,
        "cost_cents": 5,
        "base_latency_ms": 2000,
        "latency_ms": 2000,
        "risk_probability": 0.05,
        "risk_type": "rate_limit",
    }


def test_v1_fifty_llm_calls_exceed_the_budget_and_suggest_fewer_calls():
    # when
    result = estimate_v1(LLM_X50, budget_cents=100)

    # then
    assert result.status == "budget_insufficient"
    assert result.feasible is False
    assert result.estimated_cost_cents == 250
    assert result.budget_remaining_cents == -150
    assert result.budget_sufficient is False
    assert result.to_dict()["alternatives"] == [
        {"suggestion": "Reduce LLM calls", "potential_savings_cents": 250}
    ]
    assert result.metadata["budget_utilization"] == 2.5
    # The cumulative risk is above 50 % too, but the first matching status wins and only
    # its own warning (none for a budget problem) is given.
    assert result.metadata["cumulative_risk"] > RISK_THRESHOLD
    assert result.warnings == []


def test_v1_alternative_savings_count_only_llm_steps():
    # given
    plan = [_step("llm_invoke", 2, prompt="hi"), _step("mystery"), _step("email_send")]

    # when
    result = estimate_v1(plan, budget_cents=5)

    # then
    assert result.estimated_cost_cents == 10 + 10 + 1
    assert result.to_dict()["alternatives"] == [
        {"suggestion": "Reduce LLM calls", "potential_savings_cents": 10}
    ]


def test_v1_empty_plan_is_invalid():
    # when
    result = estimate_v1([], budget_cents=300)

    # then
    assert result.to_dict() == {
        "feasible": False,
        "status": "invalid_plan",
        "estimated_cost_cents": 0,
        "estimated_duration_ms": 0,
        "budget_remaining_cents": 300,
        "budget_sufficient": True,
        "permission_gaps": [],
        "risks": [],
        "step_estimates": [],
        "alternatives": [],
        "warnings": ["Empty plan provided"],
        "metadata": {},
    }


def test_v1_skill_outside_the_allowlist_is_a_permission_gap():
    # given
    plan = [{"skill": "http_call", "params": {}}, {"skill": "fs_write", "params": {}}]

    # when
    result = estimate_v1(plan, budget_cents=1000, allowed_skills=["http_call"])

    # then
    assert result.status == "permission_denied"
    assert result.feasible is False
    assert result.permission_gaps == ["fs_write"]
    assert result.estimated_cost_cents == 0
    assert result.estimated_duration_ms == 600


def test_v1_permission_gaps_keep_plan_order_and_duplicates():
    # given
    plan = [_step("kv_set"), _step("http_call"), _step("fs_write"), _step("kv_set")]

    # when
    result = estimate_v1(plan, allowed_skills=["http_call"])

    # then
    assert result.permission_gaps == ["kv_set", "fs_write", "kv_set"]


@pytest.mark.parametrize("allowed_skills", [None, []])
def test_v1_missing_or_empty_allowlist_restricts_nothing(allowed_skills):
    # when
    result = estimate_v1([_step("fs_write")], allowed_skills=allowed_skills)

    # then
    assert result.status == "feasible"
    assert result.permission_gaps == []


def test_v1_long_prompt_costs_a_cent_per_thousand_characters_above_the_minimum():
    # given
    short = _step("llm_invoke", prompt="x" * 5999)
    long = _step("llm_invoke", 2, prompt="x" * 7500)
    no_prompt = {"skill": "llm_invoke"}

    # when
    results = [estimate_v1([step]) for step in (short, long, no_prompt)]

    # then
    assert [r.step_estimates[0].base_cost_cents for r in results] == [5, 7, 5]
    assert [r.estimated_cost_cents for r in results] == [5, 14, 5]


def test_v1_http_timeout_gives_a_float_latency_capped_at_500():
    # given
    fast = _step("http_call", url="http://localhost:8000", timeout=0.2)
    slow = _step("http_call", 3, timeout=10)

    # when
    fast_result = estimate_v1([fast])
    slow_result = estimate_v1([slow])

    # then
    assert fast_result.estimated_duration_ms == 200.0
    assert isinstance(fast_result.estimated_duration_ms, float)
    assert slow_result.step_estimates[0].base_latency_ms == 500.0
    assert isinstance(slow_result.step_estimates[0].base_latency_ms, float)
    assert slow_result.estimated_duration_ms == 1500.0


def test_v1_duration_becomes_a_float_when_any_step_latency_is():
    # given
    plan = [_step("json_transform"), _step("http_call", timeout=0.25)]

    # when
    result = estimate_v1(plan)

    # then
    assert result.estimated_duration_ms == 260.0
    assert isinstance(result.estimated_duration_ms, float)
    assert isinstance(result.step_estimates[0].latency_ms, int)


def test_v1_reports_only_risks_above_five_percent_per_execution():
    # given: 0.05 exactly (llm_invoke, fs_read, email_send) stays unreported
    plan = [
        _step("llm_invoke"),
        _step("fs_read"),
        _step("email_send"),
        _step("shell_lite"),
        _step("webhook_send"),
        _step("mystery_skill"),
    ]

    # when
    result = estimate_v1(plan)

    # then
    assert [(r.skill_id, r.risk_type, r.mitigation) for r in result.risks] == [
        ("shell_lite", "timeout", "Add retry with exponential backoff"),
        ("webhook_send", "timeout", "Add retry with exponential backoff"),
        ("mystery_skill", "unknown", "Add error handling and monitoring"),
    ]
    assert [r.step_index for r in result.risks] == [3, 4, 5]


def test_v1_risk_is_compounded_over_iterations():
    # when
    result = estimate_v1([_step("http_call", 3)])

    # then: 1 - 0.9^3 = 0.271
    risk = result.risks[0]
    assert risk.probability == 0.271
    assert risk.description == "http_call x3 has 27% chance of timeout"
    assert result.step_estimates[0].risk_probability == 0.1
    assert result.metadata["cumulative_risk"] == 0.271


def test_v1_cumulative_risk_counts_unreported_steps():
    # given: json_transform (0.01) and kv_get (0.02) are never reported
    plan = [_step("json_transform"), _step("kv_get")]

    # when
    result = estimate_v1(plan)

    # then: 1 - 0.99 * 0.98
    assert result.risks == []
    assert result.metadata["cumulative_risk"] == 0.0298


def test_v1_high_cumulative_risk_is_refused_with_a_warning():
    # given: 1 - 0.8^4 = 0.5904
    plan = [_step("mystery")] * 4

    # when
    result = estimate_v1(plan)

    # then
    assert result.status == "risk_too_high"
    assert result.feasible is False
    assert result.warnings == ["Cumulative risk 59% exceeds threshold 50%"]
    assert result.metadata["cumulative_risk"] == 0.5904


def test_v1_status_precedence_is_budget_then_permission_then_risk():
    # given: every problem at once
    plan = [_step("mystery")] * 4

    # then
    assert estimate_v1(plan, budget_cents=39, allowed_skills=["x"]).status == (
        "budget_insufficient"
    )
    assert estimate_v1(plan, budget_cents=40, allowed_skills=["x"]).status == "permission_denied"
    assert estimate_v1(plan, budget_cents=40).status == "risk_too_high"


def test_v1_zero_budget_utilisation_divides_by_one_cent():
    # when
    free = estimate_v1([_step("http_call")], budget_cents=0)
    paid = estimate_v1([_step("email_send")], budget_cents=0)

    # then
    assert free.status == "feasible"
    assert free.metadata["budget_utilization"] == 0.0
    assert paid.status == "budget_insufficient"
    assert paid.metadata["budget_utilization"] == 1.0


# V2 ---------------------------------------------------------------------------------


def test_v2_example_plan_matches_the_spec_exactly():
    # when
    data = estimate_v2(EXAMPLE_PLAN, budget_cents=100).to_dict()
    runtime_ms = data.pop("runtime_ms")

    # then
    assert isinstance(runtime_ms, int)
    assert runtime_ms >= 0
    assert data == {
        "feasible": True,
        "status": "success",
        "estimated_cost_cents": 4,
        "estimated_duration_ms": 2309,
        "budget_remaining_cents": 96,
        "confidence_score": 0.728,
        "model_version": "2.0.0",
        "step_estimates": [
            {
                "step_index": 0,
                "skill_id": "http_call",
                "iterations": 1,
                "cost_cents": 0.0,
                "latency_ms": 500.0,
                "confidence": 0.8075,
            },
            {
                "step_index": 1,
                "skill_id": "llm_invoke",
                "iterations": 1,
                "cost_cents": 3.56,
                "latency_ms": 1804.0,
                "confidence": 0.92,
            },
            {
                "step_index": 2,
                "skill_id": "json_transform",
                "iterations": 1,
                "cost_cents": 0.0,
                "latency_ms": 5.0,
                "confidence": 0.98,
            },
        ],
        "risks": [
            {"step_index": 0, "skill_id": "http_call", "risk_type": "timeout", "probability": 0.12},
            {
                "step_index": 1,
                "skill_id": "llm_invoke",
                "risk_type": "rate_limit",
                "probability": 0.03,
            },
        ],
        "warnings": [],
        "metadata": {
            "plan_steps": 3,
            "cumulative_risk": 0.1464,
            "budget_utilization": 0.04,
            "adapter_version": "2.0.0",
            "commit_sha": "unknown",
        },
        "output_hash": "34d570a3bac19a8a87fea945f4a090b112b8c1a88622b31b13c8bfd6e9463066",
    }


def test_v2_step_figures_are_floats_and_totals_are_ints():
    # when
    result = estimate_v2(EXAMPLE_PLAN, budget_cents=100)

    # then
    assert all(isinstance(s.cost_cents, float) for s in result.step_estimates)
    assert all(isinstance(s.latency_ms, float) for s in result.step_estimates)
    assert isinstance(result.estimated_cost_cents, int)
    assert isinstance(result.estimated_duration_ms, int)


def test_v2_output_hash_covers_only_the_deterministic_fields():
    # given
    result = estimate_v2(EXAMPLE_PLAN, budget_cents=100)
    data = result.to_dict()

    # when
    other_deployment = estimate_v2(
        EXAMPLE_PLAN,
        budget_cents=100,
        model_version="9.9.9",
        adapter_version="9.9.9",
        commit_sha="abcdef123456",
    )

    # then
    assert result.output_hash == sha256_hex(
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
    assert other_deployment.output_hash == result.output_hash
    assert other_deployment.model_version == "9.9.9"
    assert other_deployment.metadata["adapter_version"] == "9.9.9"
    assert other_deployment.metadata["commit_sha"] == "abcdef123456"


def test_v2_fifty_llm_calls_exceed_the_budget():
    # when
    result = estimate_v2(LLM_X50, budget_cents=100)

    # then: 3.5128 cents and 1800.8 ms per call
    step = result.step_estimates[0]
    assert step.cost_cents == 175.64
    assert step.latency_ms == 90040.0
    assert step.confidence == 0.92
    assert result.estimated_cost_cents == 176
    assert result.estimated_duration_ms == 90040
    assert result.to_dict()["risks"] == [
        {
            "step_index": 0,
            "skill_id": "llm_invoke",
            "risk_type": "rate_limit",
            "probability": 0.7819,
        }
    ]
    assert result.status == "error"
    assert result.feasible is False
    assert result.warnings == ["Budget insufficient: need 176 cents, have 100"]
    assert result.budget_remaining_cents == -76
    assert result.metadata["budget_utilization"] == 1.76


def test_v2_unknown_skill_uses_the_fallback_row():
    # when
    result = estimate_v2([{"skill": "mystery"}])

    # then
    assert result.estimated_cost_cents == 5
    assert result.estimated_duration_ms == 500
    assert result.confidence_score == 0.6
    assert [(r.risk_type, r.probability) for r in result.risks] == [("unknown", 0.15)]
    assert result.status == "success"


@pytest.mark.parametrize("url", ["http://localhost:8000", "http://127.0.0.1/health"])
def test_v2_local_http_call_keeps_base_risk_and_confidence(url):
    # when
    result = estimate_v2([_step("http_call", url=url, timeout=0.2)])

    # then
    assert result.step_estimates[0].latency_ms == 200.0
    assert result.estimated_duration_ms == 200
    assert result.confidence_score == 0.85
    assert [(r.risk_type, r.probability) for r in result.risks] == [("timeout", 0.08)]


@pytest.mark.parametrize(
    "params",
    [{"url": "https://api.example.com"}, {"url": "https://localhost"}, {}],
    ids=["external", "https-localhost", "missing-url"],
)
def test_v2_external_http_call_raises_risk_and_lowers_confidence(params):
    # when
    result = estimate_v2([{"skill": "http_call", "params": params}])

    # then: the default 30 s timeout caps the latency at 500 ms
    assert result.step_estimates[0].latency_ms == 500.0
    assert result.confidence_score == 0.8075
    assert [(r.risk_type, r.probability) for r in result.risks] == [("timeout", 0.12)]


@pytest.mark.parametrize(
    ("prompt_chars", "cost", "latency", "confidence"),
    [
        (0, 3.5, 1800.0, 0.92),
        (2000, 3.5 + 1.6 + 4.8, 2200.0, 0.92),  # output capped at 4000 characters
        (2001, 3.5 + 1.6008 + 4.8, 2200.2, 0.874),  # > 2000: x0.95
        (4001, 3.5 + 3.2008 + 4.8, 2600.2, 0.7866),  # > 4000: x0.95 x0.90
    ],
)
def test_v2_llm_prompt_length_drives_cost_latency_and_confidence(
    prompt_chars, cost, latency, confidence
):
    # when
    result = estimate_v2([_step("llm_invoke", prompt="p" * prompt_chars)])

    # then
    step = result.step_estimates[0]
    assert step.cost_cents == round(cost, 2)
    assert step.latency_ms == latency
    assert step.confidence == confidence


def test_v2_missing_prompt_counts_as_empty():
    # when
    result = estimate_v2([{"skill": "llm_invoke"}])

    # then
    assert result.step_estimates[0].cost_cents == 3.5
    assert result.step_estimates[0].latency_ms == 1800.0


def test_v2_long_shell_command_raises_risk_and_lowers_confidence():
    # when
    short = estimate_v2([_step("shell_lite", command="x" * 100)])
    long = estimate_v2([_step("shell_lite", command="x" * 101)])

    # then
    assert [(r.risk_type, r.probability) for r in short.risks] == [("timeout", 0.07)]
    assert short.confidence_score == 0.88
    assert [(r.risk_type, r.probability) for r in long.risks] == [("timeout", 0.084)]
    assert long.confidence_score == 0.836


def test_v2_collects_only_risk_factors_above_two_percent():
    # given: fs_write (0.02), kv_* (0.01) and json_transform (0.005) are left out
    plan = [
        _step("fs_read"),
        _step("fs_write"),
        _step("kv_get"),
        _step("kv_set"),
        _step("json_transform"),
        _step("email_send"),
    ]

    # when
    result = estimate_v2(plan)

    # then
    assert [(r.skill_id, r.risk_type) for r in result.risks] == [
        ("fs_read", "read"),
        ("email_send", "delivery"),
    ]
    assert result.metadata["cumulative_risk"] == round(1 - 0.97 * 0.97, 4)


def test_v2_coefficient_table_matches_the_spec():
    # then
    assert len(V2_SKILLS) == 10
    assert dict(V2_SKILLS["fs_read"].risk_factors) == {"read": 0.03}
    assert dict(V2_SKILLS["kv_set"].risk_factors) == {"set": 0.01}
    assert V2_SKILLS["email_send"].cost_cents == 0.8


def test_v2_iterations_multiply_cost_and_latency_but_not_confidence():
    # when
    result = estimate_v2([_step("email_send", 3)])

    # then
    step = result.step_estimates[0]
    assert step.cost_cents == 2.4
    assert step.latency_ms == 1050.0
    assert step.confidence == 0.93
    assert result.confidence_score == 0.93
    assert result.risks[0].probability == round(1 - 0.97**3, 4)


def test_v2_totals_round_the_unrounded_sum():
    # given: each call costs 3.5032 cents, shown as 3.5
    plan = [_step("llm_invoke", prompt="x")] * 3

    # when
    result = estimate_v2(plan)

    # then: round(10.5096) = 11, although the shown step costs add up to 10.5
    assert [s.cost_cents for s in result.step_estimates] == [3.5, 3.5, 3.5]
    assert result.estimated_cost_cents == 11


@pytest.mark.parametrize(("timeout_s", "duration_ms"), [(0.0025, 2), (0.0035, 4), (0.0005, 0)])
def test_v2_totals_round_half_to_even(timeout_s, duration_ms):
    # when
    result = estimate_v2([_step("http_call", url="http://localhost", timeout=timeout_s)])

    # then
    assert result.estimated_duration_ms == duration_ms


def test_v2_confidence_score_is_the_product_of_step_confidences():
    # when
    result = estimate_v2([_step("mystery"), _step("mystery"), _step("kv_get")])

    # then
    assert result.confidence_score == round(0.6 * 0.6 * 0.97, 4)


def test_v2_permission_gap_warning_quotes_every_skill():
    # given
    plan = [_step("http_call"), _step("fs_write"), _step("kv_set")]

    # when
    result = estimate_v2(plan, allowed_skills=["http_call"])

    # then
    assert result.status == "error"
    assert result.feasible is False
    assert result.warnings == ["Permission denied for skills: ['fs_write', 'kv_set']"]


@pytest.mark.parametrize("allowed_skills", [None, []])
def test_v2_missing_or_empty_allowlist_restricts_nothing(allowed_skills):
    # when
    result = estimate_v2([_step("fs_write")], allowed_skills=allowed_skills)

    # then
    assert result.status == "success"


def test_v2_high_cumulative_risk_warning_has_one_decimal():
    # given: 1 - 0.85^5 = 0.5563
    plan = [_step("mystery")] * 5

    # when
    result = estimate_v2(plan)

    # then
    assert result.status == "error"
    assert result.warnings == ["Risk too high: 55.6% > 50.0%"]
    assert result.metadata["cumulative_risk"] == 0.5563


def test_v2_status_precedence_is_budget_then_permission_then_risk():
    # given: 25 cents, risk 55.6 %, not allowed
    plan = [_step("mystery")] * 5

    # then
    assert estimate_v2(plan, budget_cents=24, allowed_skills=["x"]).warnings == [
        "Budget insufficient: need 25 cents, have 24"
    ]
    assert estimate_v2(plan, budget_cents=25, allowed_skills=["x"]).warnings == [
        "Permission denied for skills: ['mystery', 'mystery', 'mystery', 'mystery', 'mystery']"
    ]
    assert estimate_v2(plan, budget_cents=25).warnings == ["Risk too high: 55.6% > 50.0%"]


def test_v2_empty_plan_is_a_schema_error():
    # when
    data = estimate_v2([], budget_cents=250, model_version="2.1.0").to_dict()
    runtime_ms = data.pop("runtime_ms")
    output_hash = data.pop("output_hash")

    # then
    assert isinstance(runtime_ms, int)
    assert data == {
        "feasible": False,
        "status": "schema_error",
        "estimated_cost_cents": 0,
        "estimated_duration_ms": 0,
        "budget_remaining_cents": 250,
        "confidence_score": 0.0,
        "model_version": "2.1.0",
        "step_estimates": [],
        "risks": [],
        "warnings": ["Empty plan provided"],
        "metadata": {},
    }
    assert output_hash == sha256_hex(
        {
            "feasible": False,
            "status": "schema_error",
            "estimated_cost_cents": 0,
            "estimated_duration_ms": 0,
            "step_estimates": [],
        }
    )


def test_estimators_do_not_modify_the_plan():
    # given
    plan = [_step("http_call", url="https://api.example.com"), {"skill": "llm_invoke"}]
    snapshot = [dict(step) for step in plan]

    # when
    estimate_v1(plan)
    estimate_v2(plan)

    # then
    assert plan == snapshot
