"""The database side of the detection rules: read the spend, keep rule state, build candidates.

Spike: an entity whose spend on day D is at least 1.4 times its average active day of D - 14
... D - 2 breaches; two breach days in a row raise an anomaly. Drift: the tenant's average day
of the last seven at least 1.25 times its average active day of D - 28 ... D - 8, raised after
three such days in a row. Budgets: the day's and the month's spend against each active budget.
Outlier: day D - 1 of every entity against its seasonal, trend-aware expectation.
The arithmetic lives in `analytics.services.detection`; the spend comes from the run's daily
series (`DetectionContext`) and `analytics.selectors.detection`; this module writes the
breach history and drift tracking.
"""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from analytics.models import AnomalyType, Budget, BudgetPeriod, DriftTracking, EntityType, Tenant
from analytics.selectors.budgets import (
    budget_exhausted_at,
    budget_period_bounds,
    budget_period_eta,
)
from analytics.selectors.detection import (
    active_budgets_with_spend,
    spike_breach_days,
)
from analytics.selectors.incidents import TENANT, DetectionContext
from analytics.services import detection as engine
from analytics.services.anomaly_upsert import AnomalyCandidate
from analytics.services.explain import CauseWindows, ExplainSubject


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass(frozen=True)
class DetectionClock:
    """Day D, the instant T and the day boundaries every rule of one run shares."""

    as_of: date
    until: datetime  # T = min(now, D + 1 day 00:00)

    @classmethod
    def at(cls, as_of: date | None, now: datetime) -> "DetectionClock":
        as_of = as_of or now.astimezone(UTC).date()
        return cls(as_of=as_of, until=min(now, day_start(as_of + timedelta(days=1))))

    def start_of(self, days_before: int) -> datetime:
        """00:00 UTC of day D - days_before."""
        return day_start(self.as_of - timedelta(days=days_before))


def _execute(sql: str, params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@dataclass(frozen=True)
class RecentSpend:
    """One entity's recent spend (the drift columns are meaningful for the tenant only)."""

    entity_type: str
    entity_id: str | None
    spike_baseline_spend: float
    spike_baseline_days: int
    today_spend: float
    rolling_spend: float
    drift_baseline_spend: float
    drift_baseline_days: int


# The spike rule lists users, then features, then the tenant, each kind in byte order.
_SPIKE_ORDER = {"user": 0, "feature": 1, "tenant": 2}


def recent_spend(*, context: DetectionContext, clock: DetectionClock) -> list[RecentSpend]:
    """The spend the spike and drift rules judge, per user, per feature and for the tenant.

    Read from the run's daily series (spend up to T, and records per day), so the rules cost
    no query of their own.
    """
    series = context.series()
    day = clock.as_of

    def back(days: int) -> date:
        return day - timedelta(days=days)

    rows = []
    scopes = [scope for scope in series.values if scope[0] in _SPIKE_ORDER]
    scopes.sort(key=lambda scope: (_SPIKE_ORDER[scope[0]], (scope[1] or "").encode()))
    spike_first, spike_last = back(engine.SPIKE_LOOKBACK_DAYS), back(2)  # D - 14 ... D - 2
    drift_first = back(engine.DRIFT_BASELINE_FIRST_DAY)
    drift_last = back(engine.DRIFT_BASELINE_LAST_DAY)  # D - 28 ... D - 8
    for scope in scopes:
        rows.append(
            RecentSpend(
                entity_type=scope[0],
                entity_id=scope[1],
                spike_baseline_spend=series.total(scope, spike_first, spike_last),
                spike_baseline_days=series.active_days(scope, spike_first, spike_last),
                today_spend=series.total(scope, day, day),
                rolling_spend=series.total(scope, back(engine.DRIFT_ROLLING_DAYS - 1), day),
                drift_baseline_spend=series.total(scope, drift_first, drift_last),
                drift_baseline_days=series.active_days(scope, drift_first, drift_last),
            )
        )
    return rows


# Rule 1: absolute spikes ----------------------------------------------------------------

_BREACH_UPSERT_SQL = """
INSERT INTO analytics_breachhistory
    (tenant_id, entity_type, entity_id, breach_type, breach_date, deviation_pct,
     current_value_cents, baseline_value_cents, created_at, updated_at)
SELECT %(tenant_id)s, entity_type, entity_id, 'ABSOLUTE_SPIKE', %(breach_date)s, deviation,
       current_cents, baseline_cents, %(now)s, %(now)s
FROM unnest(%(entity_type)s::text[], %(entity_id)s::text[], %(deviation)s::float8[],
            %(current)s::float8[], %(baseline)s::float8[])
    AS b(entity_type, entity_id, deviation, current_cents, baseline_cents)
ON CONFLICT ON CONSTRAINT breach_natural_key DO UPDATE
SET deviation_pct = EXCLUDED.deviation_pct,
    current_value_cents = EXCLUDED.current_value_cents,
    baseline_value_cents = EXCLUDED.baseline_value_cents,
    updated_at = EXCLUDED.updated_at
"""


# complexity: records today's breaches, reads their streaks back and raises the long ones; the three
# steps share the one list of breaches
def absolute_spike_candidates(
    *, tenant: Tenant, clock: DetectionClock, spend: list[RecentSpend]
) -> list[AnomalyCandidate]:
    """Record today's breaches in the breach history; raise those on a long enough streak."""
    breaches = []
    for row in spend:  # users, features, then the tenant
        breach = engine.spike_breach(
            baseline_spend=row.spike_baseline_spend,
            baseline_days=row.spike_baseline_days,
            today_spend=row.today_spend,
        )
        if breach is not None:
            breaches.append((row.entity_type, row.entity_id, breach))
    if not breaches:
        return []

    entity_types = [entity_type for entity_type, _, _ in breaches]
    entity_ids = [entity_id for _, entity_id, _ in breaches]
    _execute(
        _BREACH_UPSERT_SQL,
        {
            "tenant_id": tenant.pk,
            "breach_date": clock.as_of,
            "now": timezone.now(),
            "entity_type": entity_types,
            "entity_id": entity_ids,
            "deviation": [breach.deviation_pct for _, _, breach in breaches],
            "current": [breach.today for _, _, breach in breaches],
            "baseline": [breach.baseline for _, _, breach in breaches],
        },
    )
    breach_days = spike_breach_days(
        tenant=tenant,
        entity_types=entity_types,
        entity_ids=entity_ids,
        first_day=clock.as_of - timedelta(days=engine.STREAK_CAP - 1),
        last_day=clock.as_of,
    )

    candidates = []
    for entity_type, entity_id, breach in breaches:
        streak = engine.consecutive_streak(breach_days[(entity_type, entity_id)], clock.as_of)
        if streak < engine.SPIKE_MIN_STREAK:
            continue
        deviation, baseline = breach.deviation_pct, breach.baseline
        label = engine.entity_label(entity_type, entity_id)
        candidates.append(
            AnomalyCandidate(
                anomaly_type=AnomalyType.ABSOLUTE_SPIKE,
                severity=engine.classify(deviation),
                entity_type=entity_type,
                entity_id=entity_id,
                anomaly_date=clock.as_of,
                current_value_cents=breach.today,
                expected_value_cents=baseline,
                deviation_pct=deviation,
                threshold_pct=engine.SPIKE_THRESHOLD_PCT,
                breach_count=streak,
                message=(
                    f"{label} spending {deviation:.1f}% above baseline "
                    f"for {streak} consecutive days"
                ),
                metadata={
                    "lookback_days": engine.SPIKE_LOOKBACK_DAYS,
                    "baseline_daily_avg": baseline,
                    "consecutive_breaches": streak,
                },
                explain=ExplainSubject(
                    entity_type,
                    entity_id,
                    clock.start_of(0),
                    clock.until,
                    cause=CauseWindows(clock.start_of(1), clock.start_of(0), clock.until),
                ),
            )
        )
    return candidates


# Rule 2: sustained drift ----------------------------------------------------------------

_DRIFT_STOP_SQL = """
UPDATE analytics_drifttracking
SET is_active = FALSE, last_check_date = %(as_of)s, updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s AND entity_type = 'tenant' AND entity_id IS NULL
  AND (last_check_date IS NULL OR last_check_date <= %(as_of)s)
"""


def sustained_drift_candidates(
    *, tenant: Tenant, clock: DetectionClock, spend: list[RecentSpend], has_tracking: bool
) -> list[AnomalyCandidate]:
    """Advance the tenant's drift streak for day D; raise it once it is long enough."""
    row = next((r for r in spend if r.entity_type == EntityType.TENANT), None)
    if row is None:
        return []
    reading = engine.drift_reading(
        rolling_spend=row.rolling_spend,
        baseline_spend=row.drift_baseline_spend,
        baseline_days=row.drift_baseline_days,
    )
    if reading is None:
        return []
    rolling, baseline, drift = reading.rolling, reading.baseline, reading.drift_pct

    if reading.ratio < engine.DRIFT_RATIO:
        # The streak ends (a conditional UPDATE: an older backtest day changes nothing).
        if has_tracking:
            _execute(
                _DRIFT_STOP_SQL,
                {"tenant_id": tenant.pk, "as_of": clock.as_of, "now": timezone.now()},
            )
        return []

    natural_key = {"tenant": tenant, "entity_type": EntityType.TENANT, "entity_id": None}
    # Concurrent runs may both be about to start a streak: create the row first (a no-op
    # when it exists), then lock it so the streak advances exactly once per day.
    DriftTracking.objects.bulk_create([DriftTracking(**natural_key)], ignore_conflicts=True)
    tracking = DriftTracking.objects.select_for_update().get(**natural_key)
    previous = engine.DriftState(
        tracking.is_active,
        tracking.drift_days_count,
        tracking.first_drift_date,
        tracking.last_check_date,
    )
    state = engine.drift_step(previous, as_of=clock.as_of, ratio=reading.ratio)
    if state is None:
        return []
    tracking.is_active = state.is_active
    tracking.drift_days_count = state.drift_days_count
    tracking.first_drift_date = state.first_drift_date
    tracking.last_check_date = state.last_check_date
    tracking.rolling_7d_avg_cents = rolling
    tracking.baseline_avg_cents = baseline
    tracking.drift_pct = drift
    tracking.save()

    if not state.is_active or state.drift_days_count < engine.DRIFT_MIN_DAYS:
        return []
    count = state.drift_days_count
    return [
        AnomalyCandidate(
            anomaly_type=AnomalyType.SUSTAINED_DRIFT,
            severity=engine.classify(drift),
            entity_type=EntityType.TENANT,
            entity_id=None,
            anomaly_date=clock.as_of,
            current_value_cents=rolling,
            expected_value_cents=baseline,
            deviation_pct=drift,
            threshold_pct=engine.DRIFT_THRESHOLD_PCT,
            breach_count=count,
            message=f"Sustained drift detected: {drift:.1f}% above baseline for {count} days",
            metadata={"rolling_7d_avg": rolling, "baseline_avg": baseline, "drift_days": count},
            explain=ExplainSubject(
                EntityType.TENANT,
                None,
                clock.start_of(engine.DRIFT_ROLLING_DAYS - 1),
                clock.until,
                cause=CauseWindows(clock.start_of(1), clock.start_of(0), clock.until),
            ),
        )
    ]


# Rules 3/4: budgets ---------------------------------------------------------------------

_ONE_MICROSECOND = timedelta(microseconds=1)
BUDGET_SCOPE_DESC = {"tenant": "tenant", "feature": "feature '{id}'", "user": "user '{id}'"}


def budget_breach_candidates(*, tenant: Tenant, clock: DetectionClock) -> list[AnomalyCandidate]:
    """A warning or exceeded candidate for each budget period over its threshold on day D."""
    day_begin = clock.start_of(0)
    month_begin = day_start(clock.as_of.replace(day=1))
    budgets = active_budgets_with_spend(
        tenant=tenant, day_start=day_begin, month_start=month_begin, until=clock.until
    )
    candidates = []
    for budget in budgets:
        periods = (
            (BudgetPeriod.DAILY, budget.daily_limit_cents, budget.day_spend, day_begin),
            (BudgetPeriod.MONTHLY, budget.monthly_limit_cents, budget.month_spend, month_begin),
        )
        for period, limit, period_spend, period_start in periods:
            if limit is None:
                continue
            verdict = engine.budget_verdict(
                spend=float(period_spend), limit=limit, warn_threshold_pct=budget.warn_threshold_pct
            )
            if verdict is None:
                continue
            known = getattr(budget, f"{period}_exhausted_at")
            if known and period_spend >= limit:
                eta = datetime.fromisoformat(known.replace("Z", "+00:00"))
            else:
                eta = _budget_eta(
                    budget=budget, period=period, spend=period_spend, limit=limit, at=clock.until
                )
            desc = BUDGET_SCOPE_DESC[budget.budget_type].format(id=budget.entity_id)
            state = "EXCEEDED" if verdict.anomaly_type == AnomalyType.BUDGET_EXCEEDED else "WARNING"
            candidates.append(
                AnomalyCandidate(
                    anomaly_type=verdict.anomaly_type,
                    severity=verdict.severity,
                    entity_type=budget.budget_type,
                    entity_id=budget.entity_id,
                    anomaly_date=clock.as_of,
                    budget_period=period,
                    budget_id=budget.pk,
                    current_value_cents=float(period_spend),
                    expected_value_cents=float(limit),
                    deviation_pct=verdict.usage_pct,
                    threshold_pct=verdict.threshold_pct,
                    message=(f"{period.label} budget {state} for {desc}: {verdict.usage_pct:.1f}%"),
                    metadata={
                        "period": str(period),
                        "limit_cents": limit,
                        "warn_threshold_pct": budget.warn_threshold_pct,
                        "eta_exhausted_at": _iso(eta),
                    },
                    explain=ExplainSubject(
                        budget.budget_type, budget.entity_id, period_start, clock.until
                    ),
                )
            )
    return candidates


def _budget_eta(*, budget: Budget, period: str, spend, limit: int, at: datetime):
    """When the period containing D runs out at the current burn rate, judged at T."""
    # The period containing D: T itself may already be the first instant of the next one.
    period_start, period_end = budget_period_bounds(period=period, at=at - _ONE_MICROSECOND)
    if at < period_end:
        return budget_period_eta(
            budget=budget, period=period, at=at, spend=Decimal(spend), limit=limit
        )
    # A backtest evaluates a past day at its very end, where the status selector would pick
    # the next period; a linear projection from there always lands past the period end.
    if spend >= limit:
        return budget_exhausted_at(budget=budget, start=period_start, end=at, limit=limit)
    return None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


# Rule 5: statistical outliers ------------------------------------------------------------


# Rule 5 lists the tenant, then its models, features and users, each kind in byte order.
_OUTLIER_ORDER = {"tenant": 0, "model": 1, "feature": 2, "user": 3}


# complexity: each eligibility rule (history, monitored type, active days, a model, the thresholds)
# skips an entity in the one loop over the series
def statistical_outlier_candidates(
    *, context: DetectionContext, clock: DetectionClock
) -> list[AnomalyCandidate]:
    """Judge day D - 1 of every monitored entity against its seasonal, trend-aware expectation.

    Only tenants with `min_history_days` of spend before that day are judged; an entity other
    than the tenant also needs spend on 7 of the 28 days before (brand-new spend shows up in
    the root causes of the tenant's incident instead).
    """
    settings = context.settings
    evaluated = clock.as_of - timedelta(days=1)
    series = context.series()
    tenant_first = series.first_active_day(TENANT)
    if tenant_first is None or (evaluated - tenant_first).days < settings.min_history_days:
        return []
    min_cents, min_pct = settings.floors("outlier")
    active_from = evaluated - timedelta(days=engine.OUTLIER_ACTIVE_WINDOW_DAYS)
    candidates = []
    for scope in sorted(series.values, key=lambda s: (_OUTLIER_ORDER[s[0]], (s[1] or "").encode())):
        entity_type, entity_id = scope
        value = series.between(scope, evaluated, evaluated)[0]
        if value <= 0 or not settings.monitors(entity_type):
            continue
        if scope != TENANT:
            window = series.between(scope, active_from, evaluated - timedelta(days=1))
            if sum(1 for v in window if v > 0) < engine.OUTLIER_MIN_ACTIVE_DAYS:
                continue
        model = context.model(scope, evaluated)
        judgement = context.judge(scope, evaluated, evaluated)
        if model is None or judgement is None:
            continue
        if not judgement.passes(
            min_cents=min_cents, min_pct=min_pct, z_threshold=settings.z_threshold
        ):
            continue
        expected = judgement.expected
        impact_pct = judgement.impact_pct
        z_text = "inf" if math.isinf(judgement.z_score) else f"{judgement.z_score:.2f}"
        pct_text = "inf" if impact_pct is None else f"{impact_pct:.1f}"
        label = engine.entity_label(entity_type, entity_id)
        candidates.append(
            AnomalyCandidate(
                anomaly_type=AnomalyType.STATISTICAL_OUTLIER,
                severity=engine.classify(math.inf if impact_pct is None else impact_pct),
                entity_type=entity_type,
                entity_id=entity_id,
                anomaly_date=evaluated,
                current_value_cents=value,
                expected_value_cents=expected,
                deviation_pct=impact_pct,
                threshold_pct=engine.OUTLIER_THRESHOLD_PCT,
                message=(
                    f"{label} spent {value:.2f} cents on {evaluated.isoformat()} vs "
                    f"{expected:.2f} expected (+{pct_text}%, z {z_text})"
                ),
                metadata={
                    "method": "seasonal_trend",
                    "z_score": engine.finite_or_none(judgement.z_score, 4),
                    "expected_cents": round(expected, 4),
                    "spread_pct": round(model.spread * 100, 2),
                    "trend_pct_per_day": round(model.trend_pct_per_day, 3),
                    "impact_cents": round(judgement.impact, 4),
                    "impact_pct": None if impact_pct is None else round(impact_pct, 4),
                    "history_days": model.history_days,
                },
                explain=ExplainSubject(
                    entity_type,
                    entity_id,
                    day_start(evaluated),
                    day_start(clock.as_of),
                    cause=CauseWindows(
                        day_start(evaluated - timedelta(days=1)),
                        day_start(evaluated),
                        day_start(clock.as_of),
                    ),
                ),
            )
        )
    return candidates
