"""Distances between two cost distributions, shared by the canary and the divergence report.

Both lists are binned on one common ten-bin histogram. Results are
unrounded; callers round to 4 dp.
"""

import math
from collections.abc import Sequence
from typing import TypeVar

DISTANCES_VERSION = "1.0.0"

BIN_COUNT = 10
# Smoothing of the KL ratio, so an empty bin of Q gives a large but finite divergence.
KL_EPSILON = 1e-10

T = TypeVar("T")


def _histogram(values: Sequence[float], lo: float, width: float) -> list[float]:
    counts = [0] * BIN_COUNT
    for value in values:
        # The maximum lands on index 10 and belongs to the last bin.
        counts[min(math.floor((value - lo) / width), BIN_COUNT - 1)] += 1
    return [count / len(values) for count in counts]


def distribution_distances(p: Sequence[float], q: Sequence[float]) -> tuple[float, float]:
    """Return ``(kl_divergence, js_distance)`` of the value lists P and Q, unrounded.

    Either list empty, or every value equal, gives ``(0.0, 0.0)``. Values below 1 are counted
    as 1 before binning. KL is at least 0; the JS distance (base 2) is within [0, 1].
    """
    if not p or not q:
        return 0.0, 0.0
    p_values = [max(float(v), 1.0) for v in p]
    q_values = [max(float(v), 1.0) for v in q]
    lo = min(min(p_values), min(q_values))
    hi = max(max(p_values), max(q_values))
    if lo == hi:
        return 0.0, 0.0

    width = (hi - lo) / BIN_COUNT
    p_hist = _histogram(p_values, lo, width)
    q_hist = _histogram(q_values, lo, width)

    kl = sum(
        p_i * math.log((p_i + KL_EPSILON) / (q_i + KL_EPSILON))
        for p_i, q_i in zip(p_hist, q_hist, strict=True)
        if p_i > KL_EPSILON
    )

    return max(0.0, kl), _js_distance(p_hist, q_hist)


def _js_distance(p_hist: list[float], q_hist: list[float]) -> float:
    """The Jensen-Shannon distance (base 2) of two histograms of equal bins."""
    js_divergence = 0.0
    for p_i, q_i in zip(p_hist, q_hist, strict=True):
        m_i = (p_i + q_i) / 2
        if p_i > 0:
            js_divergence += 0.5 * p_i * math.log2(p_i / m_i)
        if q_i > 0:
            js_divergence += 0.5 * q_i * math.log2(q_i / m_i)
    # Float error can push the divergence a hair outside [0, 1]; the bound is exact in theory.
    return min(1.0, math.sqrt(max(0.0, js_divergence)))


def percentile_element(sorted_values: Sequence[T], fraction: float) -> T:
    """Return element ⌊fraction·m⌋ (0-based) of an ascending, non-empty list of m values.

    No interpolation: the median is ``fraction=0.5`` and p90 ``fraction=0.9``. A fraction of
    1.0 returns the last element. Raise ValueError on an empty list; callers decide what an
    empty window reports.
    """
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    index = math.floor(fraction * len(sorted_values))
    return sorted_values[min(index, len(sorted_values) - 1)]
