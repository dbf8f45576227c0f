"""Reference datasets for V2 validation, and the validation itself.

The five datasets are built in code and are fully deterministic, so validation results and
golden files only change when the estimators do. Every step carries a ``params`` object
(``{}`` for a bare skill) and no ``iterations``, so the plans hash the same everywhere.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from costsim.services.estimators import V2Result, estimate_v2

logger = logging.getLogger(__name__)

DATASETS_VERSION = "1.0.0"

# Validation weights of the normalised metrics in the dataset drift score.
MEAN_WEIGHT = 0.3
MEDIAN_WEIGHT = 0.3
STD_WEIGHT = 0.2
OUTLIER_WEIGHT = 0.2

# estimate(plan, budget_cents=...) -> V2Result; lets the caller pass configured versions.
Estimator = Callable[..., V2Result]


@dataclass(frozen=True)
class DatasetSample:
    id: str
    plan: list[dict[str, Any]]
    budget_cents: int
    expected_cost_cents: int | None = None
    expected_feasible: bool | None = None
    expected_confidence_min: float | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReferenceDataset:
    id: str
    name: str
    description: str
    samples: tuple[DatasetSample, ...]
    # max_mean_error, max_median_error, max_std_deviation (cents), max_outlier_pct,
    # max_drift_score (0-1 scale)
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def sample_count(self) -> int:
        return len(self.samples)

    def view(self) -> dict[str, Any]:
        """Return ``{id, name, description, sample_count, thresholds}``."""
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "sample_count": self.sample_count,
            "thresholds": dict(self.thresholds),
        }

    def detail_view(self) -> dict[str, Any]:
        """Return the view plus ``sample_tags``: every tag used, distinct and sorted."""
        tags = sorted({tag for sample in self.samples for tag in sample.tags})
        return {**self.view(), "sample_tags": tags}


class UnknownDataset(LookupError):
    def __init__(self, dataset_id: str):
        self.dataset_id = dataset_id
        super().__init__(f"Unknown dataset: {dataset_id}")


def _step(skill: str, **params: Any) -> dict[str, Any]:
    return {"skill": skill, "params": params}


def _thresholds(
    mean: float, median: float, std: float, outlier_pct: float, drift: float
) -> dict[str, float]:
    return {
        "max_mean_error": mean,
        "max_median_error": median,
        "max_std_deviation": std,
        "max_outlier_pct": outlier_pct,
        "max_drift_score": drift,
    }


def _low_variance() -> ReferenceDataset:
    samples = [
        DatasetSample(
            f"lv_http_{i}",
            [_step("http_call", url=f"https://api{i}.example.com")],
            100,
            expected_cost_cents=0,
            expected_feasible=True,
            expected_confidence_min=0.8,
            tags=("http", "simple"),
        )
        for i in range(10)
    ]
    samples += [
        DatasetSample(
            f"lv_json_{i}",
            [_step("json_transform", query=f"$.field{i}")],
            100,
            expected_cost_cents=0,
            expected_feasible=True,
            expected_confidence_min=0.95,
            tags=("json", "simple"),
        )
        for i in range(10)
    ]
    samples += [
        DatasetSample(
            f"lv_kv_get_{i}",
            [_step("kv_get", key=f"key{i}")],
            100,
            expected_cost_cents=0,
            expected_feasible=True,
            expected_confidence_min=0.95,
            tags=("kv", "simple"),
        )
        for i in range(5)
    ]
    samples += [
        DatasetSample(
            f"lv_kv_set_{i}",
            [_step("kv_set", key=f"key{i}", value=f"value{i}")],
            100,
            expected_cost_cents=0,
            expected_feasible=True,
            expected_confidence_min=0.95,
            tags=("kv", "simple"),
        )
        for i in range(5)
    ]
    return ReferenceDataset(
        "low_variance",
        "Low Variance Dataset",
        "Simple, predictable plans for baseline validation",
        tuple(samples),
        _thresholds(1.0, 0.5, 2.0, 0.02, 0.05),
    )


def _workflow_step(j: int) -> dict[str, Any]:
    # Steps cycle json_transform -> llm_invoke -> http_call.
    if j % 3 == 0:
        return _step("json_transform", query=f"$.step{j}")
    if j % 3 == 1:
        return _step("llm_invoke", prompt=f"Process step {j}")
    return _step("http_call", url=f"https://api.example.com/step{j}")


def _high_variance() -> ReferenceDataset:
    prompt_lengths = (100, 500, 1000, 2000, 4000, 8000)
    samples = [
        DatasetSample(
            f"hv_llm_{i}",
            [_step("llm_invoke", prompt="A" * length)],
            50,
            expected_feasible=True,
            expected_confidence_min=0.7,
            tags=("llm", "variable"),
        )
        for i, length in enumerate(prompt_lengths)
    ]
    samples += [
        DatasetSample(
            f"hv_workflow_{i}",
            [_workflow_step(j) for j in range(3 + i)],
            200,
            expected_feasible=True,
            expected_confidence_min=0.5,
            tags=("workflow", "complex"),
        )
        for i in range(5)
    ]
    samples += [
        DatasetSample(
            f"hv_external_{i}",
            # Timeouts in seconds: 10, 20, ... 50.
            [_step("http_call", url=f"https://external-api-{i}.com/data", timeout=10 + 10 * i)],
            100,
            expected_feasible=True,
            expected_confidence_min=0.6,
            tags=("http", "external", "variable"),
        )
        for i in range(5)
    ]
    return ReferenceDataset(
        "high_variance",
        "High Variance Dataset",
        "Complex, variable plans for stress testing",
        tuple(samples),
        _thresholds(10.0, 5.0, 15.0, 0.10, 0.15),
    )


def _mixed_city() -> ReferenceDataset:
    samples = [
        DatasetSample(
            f"mc_morning_{i}",
            [_step("kv_get", key=f"config_{i}"), _step("json_transform", query="$.settings")],
            50,
            expected_feasible=True,
            tags=("batch", "morning"),
        )
        for i in range(10)
    ]
    samples += [
        DatasetSample(
            f"mc_peak_{i}",
            [
                _step("http_call", url="https://data-api.example.com"),
                _step("llm_invoke", prompt="Analyze the response data"),
                _step("json_transform", query="$.result"),
                _step("kv_set", key=f"result_{i}"),
            ],
            100,
            expected_feasible=True,
            tags=("workflow", "peak"),
        )
        for i in range(5)
    ]
    samples += [
        DatasetSample(
            f"mc_afternoon_{i}",
            [
                _step("json_transform", query="$.notification"),
                _step("webhook_send", url=f"https://notify.example.com/{i}"),
            ],
            50,
            expected_feasible=True,
            tags=("notification", "afternoon"),
        )
        for i in range(5)
    ]
    samples += [
        DatasetSample(
            f"mc_evening_{i}",
            [
                _step("llm_invoke", prompt="Generate daily report"),
                _step("email_send", to=f"user{i}@example.com"),
            ],
            100,
            expected_feasible=True,
            tags=("report", "evening"),
        )
        for i in range(5)
    ]
    return ReferenceDataset(
        "mixed_city",
        "Mixed City Dataset",
        "Real-world mixed workload patterns",
        tuple(samples),
        _thresholds(5.0, 3.0, 10.0, 0.05, 0.10),
    )


def _noise_injected() -> ReferenceDataset:
    samples = (
        DatasetSample("ni_empty", [], 100, expected_feasible=False, tags=("edge_case", "empty")),
        DatasetSample(
            "ni_unknown_skill",
            [_step("unknown_skill_xyz")],
            100,
            expected_feasible=True,
            expected_confidence_min=0.3,
            tags=("edge_case", "unknown_skill"),
        ),
        DatasetSample(
            "ni_zero_budget",
            [_step("http_call", url="https://api.example.com")],
            0,
            expected_feasible=True,
            tags=("edge_case", "budget"),
        ),
        DatasetSample(
            "ni_tiny_budget",
            [_step("llm_invoke", prompt="Hello")],
            1,
            expected_feasible=False,
            tags=("edge_case", "budget"),
        ),
        DatasetSample(
            "ni_long_plan",
            [_step("json_transform", query="$.x") for _ in range(50)],
            100,
            expected_feasible=True,
            tags=("edge_case", "long_plan"),
        ),
        DatasetSample(
            "ni_long_prompt",
            [_step("llm_invoke", prompt="X" * 100_000)],
            1000,
            expected_feasible=True,
            expected_confidence_min=0.4,
            tags=("edge_case", "long_prompt"),
        ),
        DatasetSample(
            "ni_missing_params",
            [_step("http_call")],
            100,
            expected_feasible=True,
            tags=("edge_case", "params"),
        ),
        DatasetSample(
            "ni_duplicate",
            [_step("http_call", url="https://api.example.com") for _ in range(3)],
            100,
            expected_feasible=True,
            tags=("edge_case", "duplicate"),
        ),
    )
    return ReferenceDataset(
        "noise_injected",
        "Noise Injected Dataset",
        "Edge cases and invalid inputs for robustness testing",
        samples,
        _thresholds(20.0, 10.0, 25.0, 0.30, 0.25),
    )


def _historical() -> ReferenceDataset:
    tags = ("historical",)
    samples = (
        DatasetSample(
            "hist_api_integration",
            [
                _step("http_call", url="https://auth.example.com"),
                _step("http_call", url="https://data.example.com"),
                _step("json_transform", query="$.results"),
                _step("kv_set", key="cache_data"),
            ],
            100,
            expected_cost_cents=0,
            expected_feasible=True,
            tags=tags,
        ),
        DatasetSample(
            "hist_content_gen",
            [
                _step("kv_get", key="template"),
                _step("llm_invoke", prompt="Generate content based on template"),
                _step("json_transform", query="$.content"),
            ],
            100,
            expected_feasible=True,
            tags=tags,
        ),
        DatasetSample(
            "hist_data_pipeline",
            [
                _step("fs_read", path="/data/input.json"),
                _step("json_transform", query="$.records[*]"),
                _step("llm_invoke", prompt="Summarize this data"),
                _step("fs_write", path="/data/output.json"),
            ],
            150,
            expected_feasible=True,
            tags=tags,
        ),
        DatasetSample(
            "hist_notification",
            [
                _step("kv_get", key="user_prefs"),
                _step("json_transform", query="$.notification_settings"),
                _step("webhook_send", url="https://hooks.example.com"),
            ],
            50,
            expected_feasible=True,
            tags=tags,
        ),
        DatasetSample(
            "hist_monitoring",
            [
                _step("http_call", url="https://metrics.example.com"),
                _step("json_transform", query="$.metrics"),
                _step("shell_lite", command="echo 'Metrics logged'"),
            ],
            50,
            expected_feasible=True,
            tags=tags,
        ),
    )
    return ReferenceDataset(
        "historical",
        "Historical Dataset",
        "Real production workflow patterns",
        samples,
        _thresholds(5.0, 3.0, 8.0, 0.05, 0.10),
    )


# In a fixed order (low_variance first); validate-all and the list endpoint keep this order.
DATASETS: dict[str, ReferenceDataset] = {
    dataset.id: dataset
    for dataset in (
        _low_variance(),
        _high_variance(),
        _mixed_city(),
        _noise_injected(),
        _historical(),
    )
}


def dataset_get(dataset_id: str) -> ReferenceDataset:
    """Return the dataset, or raise UnknownDataset."""
    try:
        return DATASETS[dataset_id]
    except KeyError:
        raise UnknownDataset(dataset_id) from None


def dataset_views() -> list[dict[str, Any]]:
    """Return the view of every dataset, in table order."""
    return [dataset.view() for dataset in DATASETS.values()]


def _isoformat_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _normalised(value: float, limit: float) -> float:
    # A metric whose threshold is 0 does not contribute to the drift score.
    return value / limit if limit > 0 else 0.0


def validate_dataset(
    dataset_id: str,
    *,
    estimate: Estimator = estimate_v2,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run V2 on every sample of a dataset and judge it against the dataset's thresholds.

    ``estimate`` is called as ``estimate(plan, budget_cents=...)``; pass a partial of
    ``estimate_v2`` to record configured versions. Errors are absolute cent differences
    from ``expected_cost_cents``. A sample that raises counts as one outlier. Raise
    UnknownDataset for an unknown id.
    """
    dataset = dataset_get(dataset_id)
    thresholds = dataset.thresholds
    errors, outliers = _sample_errors(dataset, estimate)
    mean_error, median_error, std_deviation = _error_statistics(errors)
    outlier_pct = outliers / dataset.sample_count

    drift = min(
        1.0,
        MEAN_WEIGHT * _normalised(mean_error, thresholds["max_mean_error"])
        + MEDIAN_WEIGHT * _normalised(median_error, thresholds["max_median_error"])
        + STD_WEIGHT * _normalised(std_deviation, thresholds["max_std_deviation"])
        + OUTLIER_WEIGHT * _normalised(outlier_pct, thresholds["max_outlier_pct"]),
    )
    # Judged on the unrounded metrics; only the reported figures are rounded.
    acceptable = (
        mean_error <= thresholds["max_mean_error"]
        and median_error <= thresholds["max_median_error"]
        and std_deviation <= thresholds["max_std_deviation"]
        and outlier_pct <= thresholds["max_outlier_pct"]
        and drift <= thresholds["max_drift_score"]
    )

    return {
        "dataset_id": dataset.id,
        "dataset_name": dataset.name,
        "sample_count": dataset.sample_count,
        "mean_error": round(mean_error, 4),
        "median_error": round(median_error, 4),
        "std_deviation": round(std_deviation, 4),
        "outlier_pct": round(outlier_pct, 4),
        "drift_score": round(drift, 4),
        "verdict": "acceptable" if acceptable else "not_acceptable",
        "details": {
            "thresholds": dict(thresholds),
            "errors_count": len(errors),
            "outliers_count": outliers,
        },
        "timestamp": _isoformat_utc(now or datetime.now(UTC)),
    }


def _sample_errors(dataset: ReferenceDataset, estimate: Estimator) -> tuple[list[int], int]:
    """The absolute cent errors of the samples with an expected cost, and the outliers."""
    errors: list[int] = []
    outliers = 0
    for sample in dataset.samples:
        try:
            result = estimate(sample.plan, budget_cents=sample.budget_cents)
        except Exception:
            logger.exception("Dataset %s sample %s failed", dataset.id, sample.id)
            outliers += 1
            continue
        if sample.expected_cost_cents is not None:
            errors.append(abs(result.estimated_cost_cents - sample.expected_cost_cents))
        if sample.expected_feasible is not None and result.feasible != sample.expected_feasible:
            outliers += 1
        if (
            sample.expected_confidence_min is not None
            and result.confidence_score < sample.expected_confidence_min
        ):
            outliers += 1
    return errors, outliers


def _error_statistics(errors: list[int]) -> tuple[float, float, float]:
    """Mean, median and standard deviation of the errors; 0 for none."""
    if not errors:
        return 0.0, 0.0, 0.0
    mean_error = sum(errors) / len(errors)
    median_error = float(sorted(errors)[len(errors) // 2])
    # Population standard deviation: the errors are the whole dataset, not a sample.
    std_deviation = math.sqrt(sum((e - mean_error) ** 2 for e in errors) / len(errors))
    return mean_error, median_error, std_deviation


def validate_all(
    *,
    estimate: Estimator = estimate_v2,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Validate the five datasets in table order and summarise them."""
    now = now or datetime.now(UTC)
    results = {}
    for dataset_id in DATASETS:
        validation = validate_dataset(dataset_id, estimate=estimate, now=now)
        results[dataset_id] = {
            "dataset_name": validation["dataset_name"],
            "sample_count": validation["sample_count"],
            "mean_error": validation["mean_error"],
            "drift_score": validation["drift_score"],
            "verdict": validation["verdict"],
        }
    return {
        "all_passed": all(r["verdict"] == "acceptable" for r in results.values()),
        "results": results,
        "timestamp": _isoformat_utc(now),
    }
