"""Comparison of a V1 and a V2 estimate of the same plan, and the drift score.

Pure: results in, a frozen comparison out.
"""

from dataclasses import asdict, dataclass
from typing import Any

from costsim.services.estimators import V1Result, V2Result

DRIFT_ENGINE_VERSION = "1.0.0"

# Weights of the drift score: the relative cost gap (capped at 100 %) and a feasibility flip.
COST_WEIGHT = 0.6
FEASIBILITY_WEIGHT = 0.4

# Upper bounds (inclusive) of each verdict, applied to the drift score rounded to 4 dp.
MATCH_MAX = 0.05
MINOR_DRIFT_MAX = 0.15
MAJOR_DRIFT_MAX = 0.30

VERDICTS = ("match", "minor_drift", "major_drift", "mismatch")


@dataclass(frozen=True)
class ComparisonDetails:
    v1_status: str
    v2_status: str
    v2_confidence: float
    v1_risks_count: int
    v2_risks_count: int


@dataclass(frozen=True)
class Comparison:
    verdict: str
    v1_cost_cents: int
    v2_cost_cents: int
    cost_delta_cents: int  # v2 - v1, signed
    cost_delta_pct: float  # |delta| / max(v1, 1), 4 dp, not capped
    v1_duration_ms: int | float
    v2_duration_ms: int
    duration_delta_ms: int | float  # v2 - v1, signed
    v1_feasible: bool
    v2_feasible: bool
    feasibility_match: bool
    drift_score: float  # 0..1, 4 dp
    details: ComparisonDetails

    def to_dict(self) -> dict[str, Any]:
        """Return the comparison in its JSON shape."""
        return asdict(self)


def cost_delta_pct(v1_cost_cents: int, v2_cost_cents: int) -> float:
    """Return |v2 - v1| / max(v1, 1), unrounded.

    A free V1 estimate divides by one cent, so any V2 cost on a free plan shows as a
    large relative gap instead of a division by zero.
    """
    return abs(v2_cost_cents - v1_cost_cents) / max(v1_cost_cents, 1)


def drift_score(*, cost_delta_pct: float, feasibility_match: bool) -> float:
    """Return the drift score in [0, 1], rounded to 4 dp, from the unrounded cost gap."""
    score = COST_WEIGHT * min(cost_delta_pct, 1.0)
    if not feasibility_match:
        score += FEASIBILITY_WEIGHT
    return round(score, 4)


def verdict_for(score: float) -> str:
    """Return the verdict of a (rounded) drift score; every bound is inclusive."""
    if score <= MATCH_MAX:
        return "match"
    if score <= MINOR_DRIFT_MAX:
        return "minor_drift"
    if score <= MAJOR_DRIFT_MAX:
        return "major_drift"
    return "mismatch"


def compare(v1: V1Result, v2: V2Result) -> Comparison:
    """Compare the V1 and V2 results of the same plan, budget and allowlist."""
    pct = cost_delta_pct(v1.estimated_cost_cents, v2.estimated_cost_cents)
    feasibility_match = v1.feasible == v2.feasible
    score = drift_score(cost_delta_pct=pct, feasibility_match=feasibility_match)
    return Comparison(
        verdict=verdict_for(score),
        v1_cost_cents=v1.estimated_cost_cents,
        v2_cost_cents=v2.estimated_cost_cents,
        cost_delta_cents=v2.estimated_cost_cents - v1.estimated_cost_cents,
        cost_delta_pct=round(pct, 4),
        v1_duration_ms=v1.estimated_duration_ms,
        v2_duration_ms=v2.estimated_duration_ms,
        duration_delta_ms=v2.estimated_duration_ms - v1.estimated_duration_ms,
        v1_feasible=v1.feasible,
        v2_feasible=v2.feasible,
        feasibility_match=feasibility_match,
        drift_score=score,
        details=ComparisonDetails(
            v1_status=v1.status,
            v2_status=v2.status,
            v2_confidence=v2.confidence_score,
            v1_risks_count=len(v1.risks),
            v2_risks_count=len(v2.risks),
        ),
    )
