"""Pattern detectors. Pure: aggregates in, findings out.

The selectors do the grouping in SQL and hand over one aggregate per error signature or
per worker; these functions decide whether it is a pattern and word the feedback.
"""

from dataclasses import dataclass, field
from decimal import Decimal

from analytics.money import plain_decimal
from feedback.choices import FeedbackSeverity, PatternType

ENGINE_VERSION = "1"

DESCRIPTION_SAMPLE_CHARS = 200
METADATA_SAMPLE_CHARS = 500


@dataclass(frozen=True)
class FailureGroup:
    """Failed runs of one tenant sharing an error signature inside the look-back window."""

    signature: str
    run_ids: list[str]  # newest first by created_at
    worker_ids: list[str]  # distinct, sorted
    newest_worker_id: str
    sample_error: str  # the newest member's error

    @property
    def count(self) -> int:
        return len(self.run_ids)


@dataclass(frozen=True)
class WorkerCostWindow:
    """A worker's newest completed, paid runs: the newest one against the rest."""

    worker_id: str
    run_count: int
    newest_run_id: str
    recent_cost_cents: Decimal
    others_cost_sum_cents: Decimal

    @property
    def others_count(self) -> int:
        return self.run_count - 1


@dataclass(frozen=True)
class PatternFinding:
    """One feedback row as detection wants it stored."""

    pattern_type: str
    signature: str
    description: str
    provenance: list[str]
    occurrence_count: int
    time_window_minutes: int | None
    threshold_used: str
    metadata: dict = field(default_factory=dict)
    severity: str = FeedbackSeverity.WARNING


def failure_pattern_finding(
    group: FailureGroup, *, window_hours: int, threshold: int
) -> PatternFinding | None:
    """Return a finding when at least `threshold` failed runs share the group's signature."""
    if group.count < threshold:
        return None
    sample = group.sample_error[:METADATA_SAMPLE_CHARS]
    return PatternFinding(
        pattern_type=PatternType.FAILURE_PATTERN,
        signature=group.signature,
        description=(
            f"Repeated failure detected: {group.count} occurrences. "
            f"Sample: {sample[:DESCRIPTION_SAMPLE_CHARS]}"
        ),
        provenance=list(group.run_ids),
        occurrence_count=group.count,
        time_window_minutes=window_hours * 60,
        threshold_used=f"threshold={threshold}",
        metadata={
            "worker_id": group.newest_worker_id,
            "worker_ids": sorted(set(group.worker_ids)),
            "sample_error": sample,
        },
    )


def cost_spike_percent(window: WorkerCostWindow) -> float | None:
    """(recent − avg of the others) / avg × 100, or None when there is nothing to compare."""
    if window.others_count < 1:
        return None
    average = float(window.others_cost_sum_cents) / window.others_count
    if average <= 0:
        return None
    return (float(window.recent_cost_cents) - average) / average * 100


def cost_spike_finding(
    window: WorkerCostWindow, *, threshold_pct: float, min_runs: int
) -> PatternFinding | None:
    """Return a finding when the worker's newest run costs `threshold_pct` % above the rest."""
    if window.run_count < min_runs:
        return None
    spike = cost_spike_percent(window)
    if spike is None or spike < threshold_pct:
        return None
    average = float(window.others_cost_sum_cents) / window.others_count
    recent = window.recent_cost_cents
    return PatternFinding(
        pattern_type=PatternType.COST_SPIKE,
        signature=f"cost_spike_{window.worker_id}",
        description=(
            f"Cost spike detected: {spike:.1f}% increase. "
            f"Recent: {plain_decimal(recent)}¢, Avg: {average:.2f}¢"
        ),
        provenance=[window.newest_run_id],
        occurrence_count=1,
        time_window_minutes=None,
        threshold_used=f"spike_threshold={threshold_pct:.1f}%",
        metadata={
            "worker_id": window.worker_id,
            "avg_cost_cents": round(average, 2),
            "recent_cost_cents": json_number(recent),
            "baseline_run_count": window.others_count,
        },
    )


def json_number(value: Decimal) -> int | float:
    """A cent amount as a JSON-friendly number: 30 stays an integer, 12.5 a float.

    Stored run costs have at most 6 fractional digits, so any amount below 10^9 cents
    survives the float round trip digit for digit.
    """
    if value == value.to_integral_value():
        return int(value)
    return float(value)
