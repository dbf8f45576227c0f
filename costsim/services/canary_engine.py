"""Canary evaluation: V2 against V1 on a set of samples, gated on cost-distribution drift.

The pure part of the daily canary: estimate every sample with V1 and V2, compare them,
measure the cost-distribution distances and decide the verdict. The caller takes the leader
lock, picks the samples (recent provenance, else ``SYNTHETIC_SAMPLES``), persists the report
and feeds the circuit breaker; nothing here touches the database.

A run judges V2 only on at least ``min_samples`` evaluated provenance samples. With fewer,
or on the synthetic set, it reports ``insufficient_data``: the KL of a ten-bin histogram of
a handful of costs says nothing about V2 (one sample alone gives KL 23), so such a run is
neither a pass nor a failure and the caller does not tell the breaker.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from analytics.hashing import short_hash
from costsim.services.distances import distribution_distances, percentile_element
from costsim.services.drift import Comparison, compare
from costsim.services.estimators import (
    DEFAULT_BUDGET_CENTS,
    V2_ADAPTER_VERSION,
    V2_MODEL_VERSION,
    estimate_v1,
    estimate_v2,
)

logger = logging.getLogger(__name__)

CANARY_ENGINE_VERSION = "1.0.0"

DEFAULT_SAMPLE_COUNT = 100
DEFAULT_DRIFT_THRESHOLD = 0.2
# A sample whose drift score is above this is an outlier.
OUTLIER_DRIFT_SCORE = 0.5
# Gates on the share of evaluated samples (strictly above fails).
OUTLIER_MAX_PCT = 0.05
MAJOR_DRIFT_MAX_PCT = 0.10

SAMPLE_SOURCE_PROVENANCE = "provenance"
SAMPLE_SOURCE_SYNTHETIC = "synthetic"

STATUS_PASS = "pass"
STATUS_FAIL = "fail"
STATUS_ERROR = "error"
STATUS_SKIPPED = "skipped"
STATUS_INSUFFICIENT_DATA = "insufficient_data"

SKIPPED_REASON = "Skipped: another instance is the leader"
NO_SAMPLES_REASON = "No samples evaluated"

_DRIFTING_VERDICTS = ("major_drift", "mismatch")


@dataclass(frozen=True)
class CanarySample:
    sample_id: str
    input_hash: str
    plan: list[dict[str, Any]]
    budget_cents: int = DEFAULT_BUDGET_CENTS
    allowed_skills: list[str] | None = None


def _synthetic(sample_id: str, plan: list[dict[str, Any]], budget_cents: int) -> CanarySample:
    # Same digest as a provenance input_hash of a request without an allowlist.
    input_hash = short_hash({"plan": plan, "budget_cents": budget_cents})
    return CanarySample(sample_id, input_hash, plan, budget_cents)


# Used when no recent provenance qualifies. Four hand-written plans are a smoke
# test (V1 and V2 run end to end), not a sample of anyone's traffic, and V1 and V2 price
# synthetic_4 differently by design; a synthetic run therefore never judges V2.
SYNTHETIC_SAMPLES: list[CanarySample] = [
    _synthetic(
        "synthetic_1",
        [{"skill": "http_call", "params": {"url": "https://api.example.com"}}],
        100,
    ),
    _synthetic(
        "synthetic_2",
        [{"skill": "llm_invoke", "params": {"prompt": "Hello world"}}],
        100,
    ),
    _synthetic(
        "synthetic_3",
        [
            {"skill": "http_call", "params": {"url": "https://api.example.com"}},
            {"skill": "json_transform", "params": {"query": "$.data"}},
            {"skill": "llm_invoke", "params": {"prompt": "Analyze this"}},
        ],
        100,
    ),
    # Two long prompts on a 5 cent budget: both engines are expected to refuse it.
    _synthetic(
        "synthetic_4",
        [
            {"skill": "llm_invoke", "params": {"prompt": "A" * 5000}},
            {"skill": "llm_invoke", "params": {"prompt": "B" * 5000}},
        ],
        5,
    ),
]


@dataclass(frozen=True)
class SampleOutcome:
    sample_id: str
    input_hash: str
    v2_output_hash: str
    comparison: Comparison


def sample_evaluate(
    sample: CanarySample,
    *,
    model_version: str = V2_MODEL_VERSION,
    adapter_version: str = V2_ADAPTER_VERSION,
    commit_sha: str = "unknown",
) -> SampleOutcome:
    """Run V2, then V1, on one sample and compare them. Exceptions propagate."""
    v2 = estimate_v2(
        sample.plan,
        budget_cents=sample.budget_cents,
        allowed_skills=sample.allowed_skills,
        model_version=model_version,
        adapter_version=adapter_version,
        commit_sha=commit_sha,
    )
    v1 = estimate_v1(
        sample.plan, budget_cents=sample.budget_cents, allowed_skills=sample.allowed_skills
    )
    return SampleOutcome(sample.sample_id, sample.input_hash, v2.output_hash, compare(v1, v2))


def samples_evaluate(
    samples: Iterable[CanarySample],
    *,
    model_version: str = V2_MODEL_VERSION,
    adapter_version: str = V2_ADAPTER_VERSION,
    commit_sha: str = "unknown",
) -> list[SampleOutcome]:
    """Evaluate every sample; a sample that raises is logged and left out."""
    outcomes = []
    for sample in samples:
        try:
            outcome = sample_evaluate(
                sample,
                model_version=model_version,
                adapter_version=adapter_version,
                commit_sha=commit_sha,
            )
        except Exception:
            # One malformed historical input must not sink the whole canary; the sample
            # still counts in total_samples, so the loss is visible in the report.
            logger.exception("Canary sample %s failed", sample.sample_id)
            continue
        outcomes.append(outcome)
    return outcomes


def canary_failure_reasons(
    *,
    evaluated: int,
    kl_divergence: float,
    outlier_count: int,
    major_drift_samples: int,
    drift_threshold: float,
) -> list[str]:
    """Return why a canary fails, in gate order; an empty list means it passes.

    ``kl_divergence`` is the reported (4 dp) value. The JS distance is reported but does
    not gate.
    """
    if evaluated == 0:
        return [NO_SAMPLES_REASON]
    reasons = []
    if kl_divergence > drift_threshold:
        reasons.append(f"KL divergence {kl_divergence:.4f} > {drift_threshold}")
    outlier_pct = outlier_count / evaluated
    if outlier_pct > OUTLIER_MAX_PCT:
        reasons.append(f"Outlier percentage {outlier_pct:.2%} > {OUTLIER_MAX_PCT:.2%}")
    major_pct = major_drift_samples / evaluated
    if major_pct > MAJOR_DRIFT_MAX_PCT:
        reasons.append(f"Major drift samples {major_pct:.2%} > {MAJOR_DRIFT_MAX_PCT:.0%}")
    return reasons


def sample_shortfall(
    *, sample_source: str, total_samples: int, evaluated: int, min_samples: int
) -> tuple[str, list[str]] | None:
    """Return ``(status, reasons)`` when the samples cannot support a verdict, else None.

    - synthetic samples: ``insufficient_data`` whatever their number;
    - at least ``min_samples`` evaluated: None, the gates decide;
    - at least ``min_samples`` taken but most of them raised: ``error``, a failure (the data
      was there, the estimators could not read it);
    - otherwise: ``insufficient_data``, saying how many samples a verdict needs.
    """
    raised = total_samples - evaluated
    raised_note = [f"{raised} of {total_samples} samples could not be evaluated"] if raised else []
    if sample_source == SAMPLE_SOURCE_SYNTHETIC:
        return STATUS_INSUFFICIENT_DATA, [
            "Insufficient data: synthetic samples only check that V2 runs; judging V2 needs "
            f"{min_samples} evaluated samples of recent V2 traffic, found 0",
            *raised_note,
        ]
    if evaluated >= min_samples:
        return None
    if total_samples >= min_samples and raised > evaluated:
        return STATUS_ERROR, [NO_SAMPLES_REASON if evaluated == 0 else raised_note[0]]
    return STATUS_INSUFFICIENT_DATA, [
        f"Insufficient data: {evaluated} samples evaluated, judging V2 needs {min_samples}",
        *raised_note,
    ]


def _isoformat_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class CanaryReport:
    run_id: str
    timestamp: datetime
    status: str  # pass | fail | error | skipped | insufficient_data
    total_samples: int
    evaluated_samples: int  # total_samples minus the samples that raised
    min_samples: int | None  # the floor judged against; None on a skipped run
    matching_samples: int
    minor_drift_samples: int
    major_drift_samples: int  # major_drift and mismatch
    median_cost_diff: float  # cents, absolute
    p90_cost_diff: float  # cents, absolute
    kl_divergence: float | None  # 4 dp; None below min_samples
    js_distance: float | None  # 4 dp; None below min_samples
    outlier_count: int
    passed: bool
    failure_reasons: list[str]
    sample_source: str | None  # None only on a skipped run, which read no samples
    drift_threshold: float
    duration_ms: int
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    diffs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, *, include_samples: bool = True) -> dict[str, Any]:
        """Return the report in its JSON shape; lists of reports leave out
        ``comparisons`` and ``diffs`` (``include_samples=False``)."""
        data = {
            "run_id": self.run_id,
            "timestamp": _isoformat_utc(self.timestamp),
            "status": self.status,
            "total_samples": self.total_samples,
            "evaluated_samples": self.evaluated_samples,
            "min_samples": self.min_samples,
            "matching_samples": self.matching_samples,
            "minor_drift_samples": self.minor_drift_samples,
            "major_drift_samples": self.major_drift_samples,
            "median_cost_diff": self.median_cost_diff,
            "p90_cost_diff": self.p90_cost_diff,
            "kl_divergence": self.kl_divergence,
            "js_distance": self.js_distance,
            "outlier_count": self.outlier_count,
            "passed": self.passed,
            "failure_reasons": list(self.failure_reasons),
            "sample_source": self.sample_source,
            "drift_threshold": self.drift_threshold,
            "duration_ms": self.duration_ms,
        }
        if include_samples:
            data["comparisons"] = [dict(c) for c in self.comparisons]
            data["diffs"] = [dict(d) for d in self.diffs]
        return data


def _diff_record(outcome: SampleOutcome) -> dict[str, Any]:
    comparison = outcome.comparison
    return {
        "sample_id": outcome.sample_id,
        "input_hash": outcome.input_hash,
        "v2_output_hash": outcome.v2_output_hash,
        "cost_diff": comparison.cost_delta_cents,
        "duration_diff": comparison.duration_delta_ms,
        "diff_summary": (
            f"Drift: {comparison.drift_score:.4f}, Cost delta: {comparison.cost_delta_cents}"
        ),
    }


def canary_report(
    outcomes: Sequence[SampleOutcome],
    *,
    run_id: str,
    timestamp: datetime,
    total_samples: int,
    drift_threshold: float,
    sample_source: str,
    duration_ms: int,
    min_samples: int,
) -> CanaryReport:
    """Build the canary report from the evaluated samples.

    ``total_samples`` counts every sample taken, including those that raised and are
    missing from ``outcomes``. Fewer than ``min_samples`` outcomes, or synthetic samples,
    give an ``insufficient_data`` report without distances (``sample_shortfall``); the
    counts and cost differences of what was evaluated are still reported.
    """
    # An integral threshold from JSON (1) must still read "1.0" in the failure reason.
    drift_threshold = float(drift_threshold)
    comparisons = [o.comparison for o in outcomes]
    evaluated = len(comparisons)
    matching, minor, major, outliers = _verdict_counts(comparisons)
    median_cost_diff, p90_cost_diff = _cost_diff_percentiles(comparisons)

    kl = js = None
    shortfall = sample_shortfall(
        sample_source=sample_source,
        total_samples=total_samples,
        evaluated=evaluated,
        min_samples=min_samples,
    )
    if shortfall is not None:
        status, reasons = shortfall
    else:
        kl, js = distribution_distances(
            [c.v1_cost_cents for c in comparisons], [c.v2_cost_cents for c in comparisons]
        )
        kl, js = round(kl, 4), round(js, 4)
        reasons = canary_failure_reasons(
            evaluated=evaluated,
            kl_divergence=kl,
            outlier_count=outliers,
            major_drift_samples=major,
            drift_threshold=drift_threshold,
        )
        status = STATUS_FAIL if reasons else STATUS_PASS

    return CanaryReport(
        run_id=run_id,
        timestamp=timestamp,
        status=status,
        total_samples=total_samples,
        evaluated_samples=evaluated,
        min_samples=min_samples,
        matching_samples=matching,
        minor_drift_samples=minor,
        major_drift_samples=major,
        median_cost_diff=median_cost_diff,
        p90_cost_diff=p90_cost_diff,
        kl_divergence=kl,
        js_distance=js,
        outlier_count=outliers,
        passed=status == STATUS_PASS,
        failure_reasons=reasons,
        sample_source=sample_source,
        drift_threshold=drift_threshold,
        duration_ms=duration_ms,
        comparisons=[{"sample_id": o.sample_id, **o.comparison.to_dict()} for o in outcomes],
        diffs=[_diff_record(o) for o in outcomes if o.comparison.verdict in _DRIFTING_VERDICTS],
    )


def _verdict_counts(comparisons: Sequence[Comparison]) -> tuple[int, int, int, int]:
    """(matching, minor drift, major drift or worse, outliers) among the comparisons."""
    return (
        sum(1 for c in comparisons if c.verdict == "match"),
        sum(1 for c in comparisons if c.verdict == "minor_drift"),
        sum(1 for c in comparisons if c.verdict in _DRIFTING_VERDICTS),
        sum(1 for c in comparisons if c.drift_score > OUTLIER_DRIFT_SCORE),
    )


def _cost_diff_percentiles(comparisons: Sequence[Comparison]) -> tuple[float, float]:
    """Median and p90 of the absolute cost differences; 0 for none."""
    if not comparisons:
        return 0.0, 0.0
    cost_diffs = sorted(abs(c.cost_delta_cents) for c in comparisons)
    return float(percentile_element(cost_diffs, 0.5)), float(percentile_element(cost_diffs, 0.9))


def skipped_report(*, run_id: str, timestamp: datetime, drift_threshold: float) -> CanaryReport:
    """Return the report of a run that did not get the leader lock.

    It counts as passed, is not persisted and does not touch the breaker.
    """
    return CanaryReport(
        run_id=run_id,
        timestamp=timestamp,
        status=STATUS_SKIPPED,
        total_samples=0,
        evaluated_samples=0,
        min_samples=None,
        matching_samples=0,
        minor_drift_samples=0,
        major_drift_samples=0,
        median_cost_diff=0.0,
        p90_cost_diff=0.0,
        kl_divergence=0.0,
        js_distance=0.0,
        outlier_count=0,
        passed=True,
        failure_reasons=[SKIPPED_REASON],
        sample_source=None,
        drift_threshold=drift_threshold,
        duration_ms=0,
    )
