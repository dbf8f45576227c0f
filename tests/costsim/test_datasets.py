from dataclasses import replace
from datetime import UTC, datetime

import pytest

from costsim.services.datasets import (
    DATASETS,
    UnknownDataset,
    dataset_get,
    dataset_views,
    validate_all,
    validate_dataset,
)
from costsim.services.estimators import estimate_v2

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def test_datasets_are_the_five_of_the_table_in_order():
    # then
    assert list(DATASETS) == [
        "low_variance",
        "high_variance",
        "mixed_city",
        "noise_injected",
        "historical",
    ]
    assert [d.sample_count for d in DATASETS.values()] == [30, 16, 25, 8, 5]


def test_sample_ids_are_unique_and_follow_the_spec_order():
    # then
    for dataset in DATASETS.values():
        ids = [s.id for s in dataset.samples]
        assert len(ids) == len(set(ids))
    assert [s.id for s in DATASETS["low_variance"].samples][::5] == [
        "lv_http_0",
        "lv_http_5",
        "lv_json_0",
        "lv_json_5",
        "lv_kv_get_0",
        "lv_kv_set_0",
    ]
    assert [s.id for s in DATASETS["noise_injected"].samples] == [
        "ni_empty",
        "ni_unknown_skill",
        "ni_zero_budget",
        "ni_tiny_budget",
        "ni_long_plan",
        "ni_long_prompt",
        "ni_missing_params",
        "ni_duplicate",
    ]
    assert [s.id for s in DATASETS["historical"].samples] == [
        "hist_api_integration",
        "hist_content_gen",
        "hist_data_pipeline",
        "hist_notification",
        "hist_monitoring",
    ]


def test_workflow_samples_cycle_json_llm_http():
    # given
    workflow = dataset_get("high_variance").samples[6 + 4]

    # then
    assert workflow.id == "hv_workflow_4"
    assert [step["skill"] for step in workflow.plan] == [
        "json_transform",
        "llm_invoke",
        "http_call",
        "json_transform",
        "llm_invoke",
        "http_call",
        "json_transform",
    ]
    assert workflow.plan[4] == {"skill": "llm_invoke", "params": {"prompt": "Process step 4"}}
    assert workflow.plan[5] == {
        "skill": "http_call",
        "params": {"url": "https://api.example.com/step5"},
    }
    assert workflow.budget_cents == 200


def test_high_variance_prompts_and_timeouts():
    # given
    samples = dataset_get("high_variance").samples

    # then
    assert [len(s.plan[0]["params"]["prompt"]) for s in samples[:6]] == [
        100,
        500,
        1000,
        2000,
        4000,
        8000,
    ]
    assert [s.plan[0]["params"]["timeout"] for s in samples[11:]] == [10, 20, 30, 40, 50]
    assert samples[12].plan[0]["params"]["url"] == "https://external-api-1.com/data"


def test_noise_injected_edge_cases():
    # given
    samples = {s.id: s for s in dataset_get("noise_injected").samples}

    # then
    assert samples["ni_empty"].plan == []
    assert samples["ni_empty"].expected_feasible is False
    assert samples["ni_unknown_skill"].plan == [{"skill": "unknown_skill_xyz", "params": {}}]
    assert samples["ni_zero_budget"].budget_cents == 0
    assert samples["ni_tiny_budget"].expected_feasible is False
    assert len(samples["ni_long_plan"].plan) == 50
    assert len(samples["ni_long_prompt"].plan[0]["params"]["prompt"]) == 100_000
    assert samples["ni_missing_params"].plan == [{"skill": "http_call", "params": {}}]
    assert len(samples["ni_duplicate"].plan) == 3
    assert all(s.tags[0] == "edge_case" for s in samples.values())


def test_dataset_views_list_every_dataset():
    # when
    views = dataset_views()

    # then
    assert views[0] == {
        "id": "low_variance",
        "name": "Low Variance Dataset",
        "description": "Simple, predictable plans for baseline validation",
        "sample_count": 30,
        "thresholds": {
            "max_mean_error": 1.0,
            "max_median_error": 0.5,
            "max_std_deviation": 2.0,
            "max_outlier_pct": 0.02,
            "max_drift_score": 0.05,
        },
    }
    assert [v["thresholds"]["max_drift_score"] for v in views] == [0.05, 0.15, 0.10, 0.25, 0.10]


def test_detail_view_adds_distinct_sorted_tags():
    # when
    detail = dataset_get("noise_injected").detail_view()

    # then
    assert detail["sample_tags"] == [
        "budget",
        "duplicate",
        "edge_case",
        "empty",
        "long_plan",
        "long_prompt",
        "params",
        "unknown_skill",
    ]
    assert dataset_get("historical").detail_view()["sample_tags"] == ["historical"]


def test_unknown_dataset_raises():
    # then
    with pytest.raises(UnknownDataset, match="Unknown dataset: nope") as excinfo:
        validate_dataset("nope")
    assert excinfo.value.dataset_id == "nope"
    with pytest.raises(UnknownDataset):
        dataset_get("nope")


@pytest.mark.parametrize("dataset_id", list(DATASETS))
def test_current_v2_validates_every_dataset_as_acceptable(dataset_id):
    # when
    result = validate_dataset(dataset_id, now=NOW)

    # then
    assert result["verdict"] == "acceptable"
    assert result["outlier_pct"] == 0.0
    assert result["details"]["outliers_count"] == 0


def test_validation_result_shape():
    # when
    result = validate_dataset("historical", now=NOW)

    # then
    assert result == {
        "dataset_id": "historical",
        "dataset_name": "Historical Dataset",
        "sample_count": 5,
        "mean_error": 0.0,
        "median_error": 0.0,
        "std_deviation": 0.0,
        "outlier_pct": 0.0,
        "drift_score": 0.0,
        "verdict": "acceptable",
        "details": {
            "thresholds": {
                "max_mean_error": 5.0,
                "max_median_error": 3.0,
                "max_std_deviation": 8.0,
                "max_outlier_pct": 0.05,
                "max_drift_score": 0.10,
            },
            "errors_count": 1,
            "outliers_count": 0,
        },
        "timestamp": "2026-03-02T10:00:00Z",
    }


def test_validation_metrics_from_cost_errors():
    # given: V2 off by 0, 1, 2, ... 29 cents on low_variance (all expect 0 cents)
    calls = []

    def drifting_estimate(plan, *, budget_cents):
        result = estimate_v2(plan, budget_cents=budget_cents)
        calls.append(plan)
        return replace(result, estimated_cost_cents=len(calls) - 1)

    # when
    result = validate_dataset("low_variance", estimate=drifting_estimate, now=NOW)

    # then: mean 14.5, median element 15, population std sqrt((30^2 - 1) / 12)
    assert result["mean_error"] == 14.5
    assert result["median_error"] == 15.0
    assert result["std_deviation"] == 8.6554
    assert result["drift_score"] == 1.0
    assert result["verdict"] == "not_acceptable"
    assert result["details"]["errors_count"] == 30


def test_validation_counts_outliers_for_feasibility_confidence_and_exceptions():
    # given: the first sample raises, the second is infeasible with low confidence
    calls = []

    def flaky_estimate(plan, *, budget_cents):
        calls.append(plan)
        if len(calls) == 1:
            raise RuntimeError("boom")
        result = estimate_v2(plan, budget_cents=budget_cents)
        if len(calls) == 2:
            return replace(result, feasible=False, confidence_score=0.1)
        return result

    # when
    result = validate_dataset("historical", estimate=flaky_estimate, now=NOW)

    # then: 1 + 1 (feasibility; historical has no confidence minimum) of 5 samples
    assert result["details"]["outliers_count"] == 2
    assert result["outlier_pct"] == 0.4
    # the raising sample was the only one with an expected cost
    assert result["details"]["errors_count"] == 0
    # 0.2 x 0.4 / 0.05 = 1.6, capped
    assert result["drift_score"] == 1.0
    assert result["verdict"] == "not_acceptable"


def test_low_confidence_is_an_outlier():
    # given
    def unsure_estimate(plan, *, budget_cents):
        return replace(estimate_v2(plan, budget_cents=budget_cents), confidence_score=0.0)

    # when
    result = validate_dataset("noise_injected", estimate=unsure_estimate, now=NOW)

    # then: ni_unknown_skill and ni_long_prompt have a confidence minimum
    assert result["details"]["outliers_count"] == 2
    assert result["outlier_pct"] == 0.25
    # 0.2 x 0.25 / 0.30
    assert result["drift_score"] == 0.1667
    assert result["verdict"] == "acceptable"


def test_validate_all_summarises_the_five_datasets():
    # when
    summary = validate_all(now=NOW)

    # then
    assert summary["all_passed"] is True
    assert summary["timestamp"] == "2026-03-02T10:00:00Z"
    assert list(summary["results"]) == list(DATASETS)
    assert summary["results"]["mixed_city"] == {
        "dataset_name": "Mixed City Dataset",
        "sample_count": 25,
        "mean_error": 0.0,
        "drift_score": 0.0,
        "verdict": "acceptable",
    }


def test_validate_all_fails_when_one_dataset_fails():
    # given
    def refusing_estimate(plan, *, budget_cents):
        return replace(estimate_v2(plan, budget_cents=budget_cents), feasible=False)

    # when
    summary = validate_all(estimate=refusing_estimate, now=NOW)

    # then
    assert summary["all_passed"] is False
    assert summary["results"]["low_variance"]["verdict"] == "not_acceptable"


def test_timestamp_defaults_to_now_in_utc():
    # when
    result = validate_dataset("historical")

    # then
    assert result["timestamp"].endswith("Z")
    assert datetime.fromisoformat(result["timestamp"]).tzinfo is not None
