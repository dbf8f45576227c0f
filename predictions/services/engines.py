"""Prediction engines. Pure: aggregates in, drafts out.

The selectors reduce a worker's runs to a few numbers in SQL; these functions apply the
thresholds and formulas. All ratios are doubles, rounded with Python's `round` (half to even).
"""

from dataclasses import dataclass, field
from decimal import Decimal

from predictions.choices import PredictionType, SubjectType

ENGINE_VERSION = "1"

WINDOW_DAYS = 7
FAILURE_CONFIDENCE_FACTOR = 1.5
ERROR_SAMPLE_RUNS = 5
ERROR_SAMPLE_MAX = 3
ERROR_SAMPLE_CHARS = 100
UNKNOWN_ERROR = "unknown"

COST_WINDOW_RUNS = 200
COST_RECENT_RUNS = 3
COST_MIN_RUNS = 3
COST_OVERRUN_THRESHOLD_PCT = 30.0
COST_CONFIDENCE_CAP = 0.95

FAILURE_NOTES = "ADVISORY: This is a prediction, not a fact."
COST_NOTES = "ADVISORY: This is a projection based on trends."


@dataclass(frozen=True)
class WorkerFailureStats:
    """A worker's runs in the failure window."""

    worker_id: str
    failures: int
    total: int
    # errors of the newest failed runs, newest first (None for a run without an error)
    recent_errors: list[str | None] = field(default_factory=list)
    # the tenant's recent failure-pattern feedback naming this worker
    feedback_patterns: int = 0


@dataclass(frozen=True)
class WorkerCostTrend:
    """A worker's newest completed, paid runs split into the recent few and the older rest."""

    worker_id: str
    recent_count: int
    recent_sum_cents: Decimal
    older_count: int
    older_sum_cents: Decimal


@dataclass(frozen=True)
class PredictionDraft:
    prediction_type: str
    subject_type: str
    subject_id: str
    confidence_score: float
    prediction_value: dict
    contributing_factors: list
    notes: str


def error_samples(errors: list[str | None]) -> list[str]:
    """First 100 chars of each error (`unknown` when missing), distinct, in order, at most 3."""
    samples: list[str] = []
    for error in errors[:ERROR_SAMPLE_RUNS]:
        sample = (error or "")[:ERROR_SAMPLE_CHARS] or UNKNOWN_ERROR
        if sample not in samples:
            samples.append(sample)
    return samples[:ERROR_SAMPLE_MAX]


def failure_likelihood(stats: WorkerFailureStats) -> PredictionDraft | None:
    """Predict a high failure likelihood when at least a third of the worker's runs failed."""
    if stats.failures < 1 or stats.total < 1:
        return None
    # Integer comparison: 1 failure in 3 runs is exactly at the threshold, with no
    # floating-point doubt about 1/3.
    if 3 * stats.failures < stats.total:
        return None
    rate = stats.failures / stats.total
    confidence = min(FAILURE_CONFIDENCE_FACTOR * rate, 1.0)
    factors: list[dict] = [
        {"type": "recent_failures", "count": stats.failures},
        {"type": "failure_rate", "value": round(rate, 3)},
        {"type": "error_samples", "samples": error_samples(stats.recent_errors)},
    ]
    if stats.feedback_patterns > 0:
        factors.append({"type": "feedback_patterns", "count": stats.feedback_patterns})
    return PredictionDraft(
        prediction_type=PredictionType.FAILURE_LIKELIHOOD.value,
        subject_type=SubjectType.WORKER.value,
        subject_id=stats.worker_id,
        confidence_score=round(confidence, 3),
        prediction_value={
            "predicted_outcome": "high_failure_likelihood",
            "failure_rate": round(rate, 3),
            "recent_failures": stats.failures,
            "total_runs": stats.total,
        },
        contributing_factors=factors,
        notes=FAILURE_NOTES,
    )


@dataclass(frozen=True)
class CostProjection:
    recent_avg: float
    historical_avg: float
    trend: float
    projected: float
    overrun_pct: float


def cost_projection(trend: WorkerCostTrend) -> CostProjection | None:
    """trend = avg(recent)/avg(older); projected = avg(recent)·trend; overrun vs avg(older)."""
    if trend.recent_count + trend.older_count < COST_MIN_RUNS or trend.recent_count < 1:
        return None
    recent_avg = float(trend.recent_sum_cents) / trend.recent_count
    # With no older runs the recent ones are their own history: trend 1, no overrun.
    if trend.older_count:
        historical_avg = float(trend.older_sum_cents) / trend.older_count
    else:
        historical_avg = recent_avg
    if historical_avg <= 0:
        return None
    multiplier = recent_avg / historical_avg
    projected = recent_avg * multiplier
    overrun = (projected - historical_avg) / historical_avg * 100
    return CostProjection(recent_avg, historical_avg, multiplier, projected, overrun)


def cost_overrun(trend: WorkerCostTrend) -> PredictionDraft | None:
    """Predict a cost overrun when the projected cost is at least 30 % above history."""
    projection = cost_projection(trend)
    if projection is None or projection.overrun_pct < COST_OVERRUN_THRESHOLD_PCT:
        return None
    return PredictionDraft(
        prediction_type=PredictionType.COST_OVERRUN.value,
        subject_type=SubjectType.WORKER.value,
        subject_id=trend.worker_id,
        confidence_score=round(min(projection.overrun_pct / 100, COST_CONFIDENCE_CAP), 3),
        prediction_value={
            "predicted_outcome": "cost_overrun",
            "projected_cost_cents": round(projection.projected, 2),
            "historical_avg_cents": round(projection.historical_avg, 2),
            "overrun_percent": round(projection.overrun_pct, 1),
        },
        contributing_factors=[
            {"type": "recent_avg_cost", "value": round(projection.recent_avg, 2)},
            {"type": "historical_avg_cost", "value": round(projection.historical_avg, 2)},
            {"type": "trend_multiplier", "value": round(projection.trend, 3)},
            {
                "type": "sample_size",
                "recent": trend.recent_count,
                "historical": trend.older_count,
            },
        ],
        notes=COST_NOTES,
    )
