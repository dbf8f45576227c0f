"""What a day's spend should have been: a seasonal, trend-aware model of a daily series.

Pure functions over plain numbers (no ORM, no settings), shared by the statistical detector,
the incident gate and root-cause ranking, so they cannot disagree about "expected".

The model of one series (a tenant's, or one user's, feature's or model's daily spend):

- weekday profile: each day's ratio to the centred 7-day mean, the median per weekday,
  normalised to a mean of 1 (only with three weeks of history; otherwise flat);
- trend: the median of the pairwise slopes between weekly medians of the de-seasonalised
  series (a robust straight line: a spike in one week does not tilt it, steady growth does);
- level: the median of the de-trended, de-seasonalised values of the last two weeks;
- spread: noise is multiplicative (a +10 % day is as likely at $500/day as at $20/day), so the
  spread is read from the relative residuals v / fitted - 1 over the whole history, pooled
  across weekdays, each against a weekday factor fitted without its own day; it is the larger
  of two robust readings (1.4826 x the median, the 90th percentile / 1.645), widened for the
  level's own error and for short histories. With eight weeks that is ~56 residuals.

Judging a window of days then gives its expected total, the excess, the excess in % and a z
score of the excess against the noise of that many days.
"""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

EXPECTATION_VERSION = "2.0.0"

HISTORY_DAYS = 56  # eight weeks of history when there is that much
MIN_FIT_DAYS = 14  # fewer days than this give no model at all
SEASONAL_MIN_DAYS = 21  # three weeks before the weekday profile is trusted
LEVEL_DAYS = 14  # the level is read from the last two weeks
ROBUST_SD = 1.4826  # median absolute deviation -> standard deviation for normal noise
TAIL_Z = 1.645  # the 90th percentile of |normal noise| in standard deviations
MEDIAN_VARIANCE = math.pi / 2  # a median of k normal values varies pi/2 times more than a mean
SMALL_SAMPLE = 4.0  # widens the spread of a short history (4 / number of residuals)
MAX_DAILY_TREND = 0.03  # a fitted trend beyond +-3 %/day of the level is capped


@dataclass(frozen=True)
class DailyModel:
    """A fitted series: expected(day) for days after (or inside) its history."""

    last_day: date  # the last history day
    level: float  # de-seasonalised spend on last_day
    slope: float  # de-seasonalised change per day, in cents
    weekday_factors: tuple[float, ...]  # Monday first; mean 1
    spread: float  # relative standard deviation of one day; 0 for a noiseless history
    history_days: int
    # The spread of the weekdays that spend less than the average day, read from those days
    # alone: fewer calls make a day relatively noisier. Never below `spread`.
    quiet_spread: float | None = None

    def expected(self, day: date) -> float:
        trend = self.level + self.slope * (day - self.last_day).days
        return max(trend, 0.0) * self.weekday_factors[day.weekday()]

    def spread_on(self, day: date) -> float:
        """The relative standard deviation of `day`: wider on the quiet weekdays."""
        if self.quiet_spread is not None and self.weekday_factors[day.weekday()] < 1:
            return max(self.spread, self.quiet_spread)
        return self.spread

    @property
    def trend_pct_per_day(self) -> float:
        return self.slope / self.level * 100 if self.level > 0 else 0.0


def _weekday_ratios(values: Sequence[float], first_weekday: int) -> dict[int, dict[int, float]]:
    """{weekday: {day index: the day's ratio to its centred 7-day mean}}."""
    prefix = [0.0]
    for value in values:
        prefix.append(prefix[-1] + value)
    ratios: dict[int, dict[int, float]] = {}
    for index in range(3, len(values) - 3):
        centred_mean = (prefix[index + 4] - prefix[index - 3]) / 7
        if centred_mean > 0:
            weekday = (first_weekday + index) % 7
            ratios.setdefault(weekday, {})[index] = values[index] / centred_mean
    return ratios


def _median_without(ordered: Sequence[float], position: int) -> float:
    """The median of `ordered` (sorted) once the element at `position` is left out."""
    size = len(ordered) - 1

    def at(rank: int) -> float:  # the rank-th element of what is left
        return ordered[rank if rank < position else rank + 1]

    middle = size // 2
    return at(middle) if size % 2 else (at(middle - 1) + at(middle)) / 2


def _normalised(factors: Sequence[float]) -> tuple[float, ...]:
    mean = sum(factors) / 7
    if mean <= 0:
        return (1.0,) * 7
    # A weekday that never spends keeps a small factor, so its expected value is not zero.
    return tuple(max(factor / mean, 0.05) for factor in factors)


def _weekly_slope(adjusted: Sequence[float]) -> float:
    """Median of the pairwise slopes between weekly medians, counted back from the last day."""
    weeks = []
    end = len(adjusted)
    while end - 7 >= 0:
        weeks.append((end - 4, statistics.median(adjusted[end - 7 : end])))  # (centre, median)
        end -= 7
    if len(weeks) < 2:
        return 0.0
    slopes = [
        (later_value - value) / (later_centre - centre)
        for i, (later_centre, later_value) in enumerate(weeks)
        for centre, value in weeks[i + 1 :]
    ]
    return statistics.median(slopes)


# complexity: the seasonal-trend fit (weekday factors, slope, level, leave-one-out residuals,
# spread) is one numeric procedure over shared series
def fit(history: Sequence[float], *, last_day: date) -> DailyModel | None:
    """Fit the daily model to `history` (oldest first, ending on `last_day`; 0 for idle days).

    Only the last HISTORY_DAYS values are used, from the first day with spend on. None when
    that leaves fewer than MIN_FIT_DAYS.
    """
    values = [float(v) for v in history[-HISTORY_DAYS:]]
    # Days before the series' first spend are before it existed, not idle days.
    while values and values[0] <= 0:
        values.pop(0)
    n = len(values)
    if n < MIN_FIT_DAYS:
        return None
    first_weekday = (last_day - timedelta(days=n - 1)).weekday()
    weekday_of = [(first_weekday + i) % 7 for i in range(n)]
    ratios = _weekday_ratios(values, first_weekday) if n >= SEASONAL_MIN_DAYS else {}
    seasonal = len(ratios) == 7
    medians = [statistics.median(ratios[k].values()) for k in range(7)] if seasonal else [1.0] * 7
    factors = _normalised(medians) if seasonal else (1.0,) * 7
    adjusted = [value / factors[weekday_of[i]] for i, value in enumerate(values)]
    slope = _weekly_slope(adjusted)
    recent = [adjusted[i] - slope * (i - (n - 1)) for i in range(max(0, n - LEVEL_DAYS), n)]
    level = max(statistics.median(recent), 0.0)
    cap = MAX_DAILY_TREND * level
    slope = min(max(slope, -cap), cap)
    model = DailyModel(last_day, level, slope, factors, 0.0, n)

    # Residuals are taken against a weekday factor fitted without the day itself, so the
    # spread also carries the error of estimating the profile from a few weeks: it is the
    # error a forecast of a new day makes, not the smaller error of fitting known days.
    day_factor = [factors[weekday_of[i]] for i in range(n)]
    mean_factor = sum(medians) / 7
    if seasonal and mean_factor > 0:
        for by_day in ratios.values():
            if len(by_day) < 2:
                continue
            ordered = sorted(by_day.values())
            for index, ratio in by_day.items():
                loo = _median_without(ordered, ordered.index(ratio))
                day_factor[index] = max(loo / mean_factor, 0.05)
    residuals, quiet = [], []
    for i, value in enumerate(values):
        fitted = max(level + slope * (i - (n - 1)), 0.0) * day_factor[i]
        if fitted > 0:
            residual = value / fitted - 1
        elif value > 0:
            residual = 1.0  # spend where none was expected: a full miss
        else:
            continue
        residuals.append(residual)
        if factors[weekday_of[i]] < 1:
            quiet.append(residual)
    if not residuals:
        return model
    spread = _spread(residuals)
    # Noise is relative, but not only: a day with fewer calls is relatively noisier (a user's
    # weekend is a handful of calls). The weekdays below the average day get the spread of
    # their own residuals when that is wider.
    quiet_spread = _spread(quiet) if seasonal and quiet else None
    return DailyModel(last_day, level, slope, factors, spread, n, quiet_spread)


def _spread(residuals: Sequence[float]) -> float:
    """The relative spread of one new day, read from the relative residuals of the history."""
    # The larger of two robust readings of the same spread: the median absolute residual
    # (x 1.4826) and the 90th percentile (/ 1.645). They agree for normal noise; the second
    # is larger when a series has heavy tails (a user with a few erratic calls a day), which
    # would otherwise clear the z threshold on ordinary bad days.
    magnitudes = sorted(abs(r) for r in residuals)
    tail = magnitudes[min(len(magnitudes) - 1, int(0.9 * len(magnitudes)))]
    spread = max(ROBUST_SD * statistics.median(magnitudes), tail / TAIL_Z)
    # The level is itself a median of LEVEL_DAYS noisy days; a short history estimates the
    # spread from few residuals. Both widen what a new day may do.
    return (
        spread * math.sqrt(1 + MEDIAN_VARIANCE / LEVEL_DAYS) * (1 + SMALL_SAMPLE / len(residuals))
    )


@dataclass(frozen=True)
class WindowJudgement:
    """Actual against expected spend over a window of days."""

    actual: float
    expected: float
    impact: float  # actual - expected
    impact_pct: float | None  # None when nothing was expected
    z_score: float  # +inf for a positive excess over a noiseless history

    def passes(self, *, min_cents: float, min_pct: float, z_threshold: float) -> bool:
        """Material (both money floors) and beyond the noise (z threshold)."""
        pct_ok = self.impact_pct is None or self.impact_pct >= min_pct
        return (
            self.impact >= min_cents and self.impact > 0 and pct_ok and self.z_score >= z_threshold
        )


def judge_window(
    *,
    actual: Sequence[float],
    expected: Sequence[float],
    spread: float,
    spreads: Sequence[float] | None = None,
) -> WindowJudgement:
    """Compare actual daily spend with expected over the same days.

    The noise of a window's total is the root of the sum of each day's squared noise, a day's
    noise being its spread (`spreads`, one a day, or the one `spread`) times its expected
    spend.
    """
    total_actual = float(sum(actual))
    total_expected = float(sum(expected))
    impact = total_actual - total_expected
    spreads = spreads if spreads is not None else [spread] * len(expected)
    noise = math.sqrt(sum((s * e) ** 2 for s, e in zip(spreads, expected, strict=True)))
    z_score = impact / noise if noise > 0 else (math.inf if impact > 0 else 0.0)
    impact_pct = impact / total_expected * 100 if total_expected > 0 else None
    return WindowJudgement(total_actual, total_expected, impact, impact_pct, z_score)


def entity_z_threshold(z_threshold: float, entities: int) -> float:
    """The z threshold one of a tenant's `entities` entities must pass.

    A tenant is one test a day, its users, features and models many more. Each entity test is
    made as much stricter as keeps the chance that any of them raises a false alarm equal to
    the chance the tenant's own test does (Bonferroni): with z 3.5 and 10 entities, 4.07.
    """
    if entities <= 1:
        return z_threshold
    normal = statistics.NormalDist()
    tail = (1 - normal.cdf(z_threshold)) / entities
    return max(z_threshold, normal.inv_cdf(1 - tail)) if tail > 0 else z_threshold


# --- Planned activity ---------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """A planned change: between the two days, the scope's expected spend is x factor."""

    starts_on: date
    ends_on: date
    entity_type: str  # "tenant" scales every scope of the tenant
    entity_id: str | None
    factor: float

    def covers(self, day: date) -> bool:
        return self.starts_on <= day <= self.ends_on


Scope = tuple[str, str | None]  # (entity_type, entity_id); ("tenant", None) is the tenant


# complexity: tenant-wide and entity plans combine differently for the tenant and for an entity
def planned_expected(
    *,
    scope: Scope,
    day: date,
    expected: dict[Scope, float],
    plans: Sequence[Plan],
) -> float:
    """The expected spend of `scope` on `day` once the plans covering that day are applied.

    `expected` holds each scope's unplanned expectation for the day. A tenant-wide plan scales
    every scope; an entity plan scales that entity, and the tenant by the extra spend the
    entity is planned to add.
    """
    base = expected.get(scope, 0.0)
    active = [plan for plan in plans if plan.covers(day)]
    if not active:
        return base
    tenant_factor = math.prod(p.factor for p in active if p.entity_type == "tenant")
    if scope[0] != "tenant":
        own = math.prod(p.factor for p in active if (p.entity_type, p.entity_id) == scope)
        return base * tenant_factor * own
    extra = 0.0
    for plan in active:
        if plan.entity_type != "tenant":
            extra += (plan.factor - 1) * expected.get((plan.entity_type, plan.entity_id), 0.0)
    return max(base * tenant_factor + extra * tenant_factor, 0.0)


# --- Root causes --------------------------------------------------------------------------

ROOT_CAUSE_LIMIT = 25  # every entity with a material share; grouping reads them all
ROOT_CAUSE_MIN_SHARE = 0.05
# When a feature and the model it calls (or the user who calls it) carry the same increase,
# the feature is the more actionable answer, then the user: a model is mostly a consequence.
DIMENSION_PREFERENCE = {"feature": 1.0, "user": 0.95, "model": 0.9}


# An entity's recent level is read from the days just before a window: the drift rule's
# three days, so an entity whose spend has already been running above its model for that
# long (an ongoing drift the fitted level still lags) is measured against where it is now.
RECENT_LEVEL_DAYS = 3


def recent_level_factor(*, actual: Sequence[float], expected: Sequence[float]) -> float:
    """How far above its expectation an entity has been running lately, at least 1.

    The median of the days' actual / expected ratios: one unusual day among them (a spike
    two days earlier) does not lift it, a level that moved for all of them does. A day with
    nothing expected says nothing and is left out.
    """
    ratios = [a / e for a, e in zip(actual, expected, strict=True) if e > 0]
    return max(statistics.median(ratios), 1.0) if ratios else 1.0


@dataclass(frozen=True)
class EntityChange:
    entity_type: str
    entity_id: str
    expected: float
    actual: float

    @property
    def delta(self) -> float:
        return self.actual - self.expected


def rank_root_causes(changes: Sequence[EntityChange], *, total_increase: float) -> list[dict]:
    """The entities behind an increase, best explanation first.

    share = the entity's increase / the scope's increase (above 1 when others went down, as
    the old model after a switch). Entities are ranked by their share weighted by how much
    of the entity's own spend is new (delta / actual): a model that every
    feature uses carries the same increase as the one feature that grew, but only a small part
    of its spend is new, so the feature ranks first. Entities that did not grow, or explain
    less than 5 % of the increase, are left out.
    """
    if total_increase <= 0:
        return []
    ranked = []
    for change in changes:
        if change.delta <= 0 or change.actual <= 0:
            continue
        share = change.delta / total_increase
        if share < ROOT_CAUSE_MIN_SHARE:
            continue
        score = share * (change.delta / change.actual)
        score *= DIMENSION_PREFERENCE.get(change.entity_type, 1.0)
        ranked.append((score, change, share))
    ranked.sort(key=lambda item: (-item[0], item[1].entity_type, item[1].entity_id))
    return [
        {
            "entity_type": change.entity_type,
            "entity_id": change.entity_id,
            "expected_cents": round(change.expected, 4),
            "actual_cents": round(change.actual, 4),
            "delta_cents": round(change.delta, 4),
            "share": round(share, 4),
        }
        for _, change, share in ranked[:ROOT_CAUSE_LIMIT]
    ]
