"""The anomaly detection engine: pure functions, no ORM, no settings.

The database side lives elsewhere: `analytics.selectors.detection` reads the spend,
`analytics.services.anomaly_rules` and `analytics.services.evaluation` turn it into candidates
and write the rule state. Everything here works on plain numbers so the rules can be checked
without a database and replayed for backtests.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

DETECTOR_VERSION = "1.0.0"

# Severity vocabulary (the values of analytics.models.choices.Severity); plain strings keep
# this module free of model imports.
LOW, MEDIUM, HIGH, CRITICAL = "LOW", "MEDIUM", "HIGH", "CRITICAL"

# Rule 1: ABSOLUTE_SPIKE
SPIKE_RATIO = 1.40
SPIKE_THRESHOLD_PCT = 140.0
SPIKE_MIN_STREAK = 2
SPIKE_LOOKBACK_DAYS = 14
STREAK_CAP = 7

# Rule 2: SUSTAINED_DRIFT
DRIFT_RATIO = 1.25
DRIFT_THRESHOLD_PCT = 125.0
DRIFT_MIN_DAYS = 3
DRIFT_ROLLING_DAYS = 7
DRIFT_BASELINE_FIRST_DAY = 28  # baseline days D - 28 ... D - 8
DRIFT_BASELINE_LAST_DAY = 8

# Rules 3/4: budgets
BUDGET_EXCEEDED_THRESHOLD_PCT = 100.0
BUDGET_WARNING_HIGH_FROM_PCT = 90.0

# Rule 5: STATISTICAL_OUTLIER (z threshold, floors and history come from the settings)
OUTLIER_ACTIVE_WINDOW_DAYS = 28
OUTLIER_MIN_ACTIVE_DAYS = 7  # an entity needs spend on 7 of the 28 days before
OUTLIER_THRESHOLD_PCT = 20.0


def classify(pct: float) -> str:
    """Severity of rules 1, 2 and 5 from a percentage (deviation, drift or impact)."""
    if pct >= 40:
        return HIGH
    if pct >= 25:
        return MEDIUM
    return LOW


def snapshot_severity(deviation_pct: float) -> str:
    """Severity of a snapshot evaluation; independent of the trigger threshold."""
    if deviation_pct >= 500:
        return CRITICAL
    if deviation_pct >= 400:
        return HIGH
    if deviation_pct >= 300:
        return MEDIUM
    return LOW


def snapshot_triggered(deviation_pct: float, threshold_pct: float) -> bool:
    return deviation_pct >= threshold_pct


ENTITY_LABELS = {"tenant": "Tenant", "user": "User", "feature": "Feature", "model": "Model"}


def entity_label(entity_type: str, entity_id: str | None) -> str:
    """`Tenant`, `User {id}`, `Feature {id}` or `Model {id}`, as messages name an entity."""
    label = ENTITY_LABELS[entity_type]
    return label if entity_id is None else f"{label} {entity_id}"


def ratio_to_pct(ratio: float) -> float:
    """(ratio - 1) * 100: how far above 100 % of the baseline a value is."""
    return (ratio - 1) * 100


# --- Rule 1 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpikeBreach:
    """One entity's day at or above SPIKE_RATIO times its baseline."""

    deviation_pct: float
    today: float
    baseline: float  # average spend per active day of the baseline window


def spike_breach(
    *, baseline_spend: float | None, baseline_days: int, today_spend: float | None
) -> SpikeBreach | None:
    """Today's breach, or None below the ratio, without a baseline or without spend today.

    The baseline averages over the days that had spend, so a quiet day does not lower it.
    """
    if not baseline_days or not baseline_spend or not today_spend:
        return None
    baseline = baseline_spend / baseline_days
    ratio = today_spend / baseline
    if ratio < SPIKE_RATIO:
        return None
    return SpikeBreach(ratio_to_pct(ratio), today_spend, baseline)


def consecutive_streak(breach_dates: Iterable[date], end: date, cap: int = STREAK_CAP) -> int:
    """Number of consecutive days end, end - 1, ... present in `breach_dates`, at most `cap`.

    A gap ends the streak, so breaches on D and D - 2 give 1, not 2.
    """
    present = set(breach_dates)
    streak = 0
    day = end
    while streak < cap and day in present:
        streak += 1
        day -= timedelta(days=1)
    return streak


# --- Rule 2 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReading:
    """The tenant's recent week against its older baseline, both as daily averages."""

    rolling: float  # over all DRIFT_ROLLING_DAYS days, quiet ones included
    baseline: float  # over the active days of the baseline window
    ratio: float
    drift_pct: float


def drift_reading(
    *, rolling_spend: float | None, baseline_spend: float | None, baseline_days: int
) -> DriftReading | None:
    """The rolling/baseline ratio, or None when the baseline window had no spend."""
    if not baseline_days or not baseline_spend:
        return None
    rolling = (rolling_spend or 0.0) / float(DRIFT_ROLLING_DAYS)
    baseline = baseline_spend / baseline_days
    ratio = rolling / baseline
    return DriftReading(rolling, baseline, ratio, ratio_to_pct(ratio))


@dataclass(frozen=True)
class DriftState:
    """The tracking row of one entity as far as the streak is concerned."""

    is_active: bool
    drift_days_count: int
    first_drift_date: date | None
    last_check_date: date | None


def drift_step(previous: DriftState | None, *, as_of: date, ratio: float) -> DriftState | None:
    """Advance a drift streak by one check on day `as_of` (the DRIFT rule).

    Returns the new state, or None when nothing must be written: a check older than the
    row's last check (backfills never rewind a streak) or a missing row below the ratio.
    """
    if previous is not None and previous.last_check_date and as_of < previous.last_check_date:
        return None
    if ratio >= DRIFT_RATIO:
        if previous is not None and previous.is_active:
            if previous.last_check_date == as_of:
                return previous
            if previous.last_check_date == as_of - timedelta(days=1):
                return DriftState(
                    True, previous.drift_days_count + 1, previous.first_drift_date, as_of
                )
        return DriftState(True, 1, as_of, as_of)
    if previous is None:
        return None
    return DriftState(False, previous.drift_days_count, previous.first_drift_date, as_of)


# --- Rules 3/4 ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetVerdict:
    anomaly_type: str  # BUDGET_WARNING or BUDGET_EXCEEDED
    severity: str
    usage_pct: float
    threshold_pct: float


def budget_verdict(
    *, spend: float, limit: float, warn_threshold_pct: float
) -> BudgetVerdict | None:
    """Which budget anomaly, if any, a period's spend raises."""
    usage = spend / limit * 100
    if usage >= 100:
        return BudgetVerdict("BUDGET_EXCEEDED", HIGH, usage, BUDGET_EXCEEDED_THRESHOLD_PCT)
    if usage >= warn_threshold_pct:
        severity = MEDIUM if usage < BUDGET_WARNING_HIGH_FROM_PCT else HIGH
        return BudgetVerdict("BUDGET_WARNING", severity, usage, float(warn_threshold_pct))
    return None


# --- Rule 5 and incidents ------------------------------------------------------------------
# The statistical rule judges day D - 1 against the seasonal, trend-aware expectation of
# `analytics.services.expectation`; its z threshold and floors are the tenant's settings.


def incident_severity(
    *, impact_pct: float | None, impact_cents: float, min_impact_cents: float
) -> str:
    """An incident's severity from its impact on the tenant's spend, capped for small money.

    >= 100 % CRITICAL, >= 50 % HIGH, >= 25 % MEDIUM, else LOW; an impact under ten times the
    money floor is at most MEDIUM, so a doubling of a few dollars does not page anyone.
    """
    pct = math.inf if impact_pct is None else impact_pct
    if pct >= 100:
        severity = CRITICAL
    elif pct >= 50:
        severity = HIGH
    elif pct >= 25:
        severity = MEDIUM
    else:
        severity = LOW
    if impact_cents < 10 * min_impact_cents and severity in (HIGH, CRITICAL):
        return MEDIUM
    return severity


KIND_WORDS = {"spike": "Spike", "drift": "Drift", "outlier": "Outlier", "budget": "Budget"}


def incident_title(
    *,
    kind: str,
    scope_label: str,
    impact_cents: float,
    impact_pct: float | None,
    started_on: date,
    last_seen_on: date,
) -> str:
    """`Spike: Tenant spent $42.10 (+85.0%) more than expected on 2026-03-03–2026-03-04`."""
    pct = "" if impact_pct is None else f" ({impact_pct:+.1f}%)"
    days = (
        started_on.isoformat()
        if started_on == last_seen_on
        else f"{started_on.isoformat()} to {last_seen_on.isoformat()}"
    )
    verb = "more" if impact_cents >= 0 else "less"
    return (
        f"{KIND_WORDS[kind]}: {scope_label} spent ${abs(impact_cents) / 100:,.2f}{pct} "
        f"{verb} than expected on {days}"
    )


def finite_or_none(value: float, digits: int | None = None) -> float | None:
    """JSON has no infinity: infinite values are stored as null."""
    if math.isinf(value) or math.isnan(value):
        return None
    return round(value, digits) if digits is not None else value


# --- Explanations: derived cause and contributors ----------------------------------------


@dataclass(frozen=True)
class WindowStats:
    """Counts of one entity's records in a window, as the derived-cause rules need them."""

    requests: int = 0
    retries: int = 0
    avg_input_tokens: float | None = None
    tagged_spend: float = 0.0
    top_feature_spend: float = 0.0


RETRY_GROWTH = 1.5
PROMPT_GROWTH = 1.3
FEATURE_SURGE_SHARE = 0.6
TRAFFIC_GROWTH = 1.3


# complexity: the causes are tried in a fixed order, each a ratio guarded against a zero or missing
# denominator
def derive_cause(*, current: WindowStats, previous: WindowStats, is_tenant: bool) -> str:
    """The first derived cause, in the order below, that a window shows against the previous one."""
    if (
        current.retries > 0
        and previous.retries > 0
        and current.retries / previous.retries > RETRY_GROWTH
    ):
        return "RETRY_LOOP"
    if (
        previous.avg_input_tokens
        and current.avg_input_tokens is not None
        and current.avg_input_tokens / previous.avg_input_tokens > PROMPT_GROWTH
    ):
        return "PROMPT_GROWTH"
    if (
        is_tenant
        and current.tagged_spend > 0
        and current.top_feature_spend / current.tagged_spend > FEATURE_SURGE_SHARE
    ):
        return "FEATURE_SURGE"
    if previous.requests > 0 and current.requests / previous.requests > TRAFFIC_GROWTH:
        return "TRAFFIC_GROWTH"
    return "UNKNOWN"


def contributor_share(cents: float, scope_total: float) -> float:
    """share = round(cents / total, 4); an all-zero scope gives every key a share of 0."""
    return round(cents / scope_total, 4) if scope_total else 0.0
