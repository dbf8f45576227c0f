"""Anomaly writes: detection (spec/analytics.md §11), the shared upsert, and the lifecycle (§10.1).

Detection reads spend set-based, for every entity of the tenant at once (one query feeds rules
1 and 2, one the budgets, one the statistical rule), runs the numbers through the pure engine
in `analytics.services.detection`, explains every candidate in two batched queries and
upserts all anomalies with one INSERT ... ON CONFLICT on the natural-key indexes.
Re-detection updates measurements and never touches the status, so a resolved or dismissed
anomaly stays closed for its day.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection, transaction
from django.utils import timezone

from analytics import metrics
from analytics.api.errors import Conflict
from analytics.models import (
    Anomaly,
    AnomalyStatus,
    AnomalyType,
    Budget,
    BudgetPeriod,
    DriftTracking,
    EntityType,
    FeedbackLabel,
    Severity,
    Tenant,
)
from analytics.selectors.budgets import (
    budget_exhausted_at,
    budget_period_bounds,
    budget_period_status,
)
from analytics.services import detection as engine
from analytics.services.explain import CauseWindows, ExplainSubject, explain_many
from analytics.services.tenants import tenants_run_each
from analytics.signals import high_anomaly_detected

ALERTING_SEVERITIES = frozenset({Severity.HIGH, Severity.CRITICAL})


class AnomalyTransitionConflict(Conflict):
    """A lifecycle action that the anomaly's status does not allow (answered as 409)."""


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- The shared upsert -------------------------------------------------------------------


@dataclass
class AnomalyCandidate:
    """One anomaly as a rule sees it, before it meets the database."""

    anomaly_type: str
    severity: str
    entity_type: str
    entity_id: str | None
    anomaly_date: date
    current_value_cents: float
    expected_value_cents: float
    deviation_pct: float | None
    threshold_pct: float
    message: str
    explain: ExplainSubject
    breach_count: int = 1
    metadata: dict = field(default_factory=dict)
    budget_period: str | None = None
    budget_id: int | None = None
    snapshot_id: int | None = None

    def natural_key(self) -> tuple:
        if self.anomaly_type == AnomalyType.SNAPSHOT_SPIKE:
            return (self.snapshot_id, self.entity_type, self.entity_id)
        return (
            self.anomaly_type,
            self.entity_type,
            self.entity_id,
            self.anomaly_date,
            self.budget_period,
        )


_INSERT_COLUMNS = (
    "tenant_id",
    "anomaly_type",
    "severity",
    "status",
    "entity_type",
    "entity_id",
    "anomaly_date",
    "budget_period",
    "current_value_cents",
    "expected_value_cents",
    "deviation_pct",
    "threshold_pct",
    "message",
    "derived_cause",
    "breach_count",
    "metadata",
    "contributors",
    "snapshot_id",
    "budget_id",
    "detected_at",
    "last_detected_at",
    "acknowledged_by",
    "resolved_by",
    "resolution_notes",
    "feedback_by",
)
# Exactly the fields re-detection may change (§10); status and lifecycle columns are absent.
_UPDATE_COLUMNS = (
    "current_value_cents",
    "expected_value_cents",
    "deviation_pct",
    "severity",
    "message",
    "breach_count",
    "derived_cause",
    "metadata",
    "contributors",
    "last_detected_at",
)
# The conflict targets repeat the partial unique indexes' predicates so PostgreSQL can infer them.
_CONFLICT_TARGETS = {
    "daily": (
        "(tenant_id, anomaly_type, entity_type, entity_id, anomaly_date, budget_period) "
        "WHERE NOT (anomaly_type = 'SNAPSHOT_SPIKE')"
    ),
    "snapshot": "(snapshot_id, entity_type, entity_id) WHERE anomaly_type = 'SNAPSHOT_SPIKE'",
}


def anomaly_candidates_upsert(
    *, tenant: Tenant, candidates: Sequence[AnomalyCandidate]
) -> list[tuple[Anomaly, bool]]:
    """Explain and upsert candidates by their natural keys; return (anomaly, created) in order.

    Must run inside a transaction: signals and the creation metric are sent on commit.
    All candidates share one natural key family (all SNAPSHOT_SPIKE or none).
    """
    if not candidates:
        return []
    kinds = {c.anomaly_type == AnomalyType.SNAPSHOT_SPIKE for c in candidates}
    if len(kinds) != 1:
        raise ValueError("snapshot and daily anomalies cannot be upserted together")
    target = _CONFLICT_TARGETS["snapshot" if kinds.pop() else "daily"]

    explanations = explain_many(tenant_id=tenant.pk, subjects=[c.explain for c in candidates])
    now = timezone.now()
    rows, params = [], []
    for candidate, explanation in zip(candidates, explanations, strict=True):
        rows.append("(" + ", ".join(["%s"] * len(_INSERT_COLUMNS)) + ")")
        params += [
            tenant.pk,
            candidate.anomaly_type,
            candidate.severity,
            AnomalyStatus.OPEN,
            candidate.entity_type,
            candidate.entity_id,
            candidate.anomaly_date,
            candidate.budget_period,
            candidate.current_value_cents,
            candidate.expected_value_cents,
            candidate.deviation_pct,
            candidate.threshold_pct,
            candidate.message,
            explanation.derived_cause,
            candidate.breach_count,
            json.dumps(candidate.metadata),
            json.dumps(explanation.contributors),
            candidate.snapshot_id,
            candidate.budget_id,
            now,
            now,
            "",
            "",
            "",
            "",
        ]
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column in _UPDATE_COLUMNS)
    # xmax is 0 only on a freshly inserted row version; an ON CONFLICT update sets it.
    # RETURNING * gives the stored rows (with their kept status) without a second query.
    sql = (
        f"INSERT INTO analytics_anomaly ({', '.join(_INSERT_COLUMNS)}) VALUES {', '.join(rows)} "
        f"ON CONFLICT {target} DO UPDATE SET {updates} "
        "RETURNING *, (xmax = 0) AS was_created"
    )
    by_key = {}
    for anomaly in Anomaly.objects.raw(sql, params):
        if anomaly.anomaly_type == AnomalyType.SNAPSHOT_SPIKE:
            key = (anomaly.snapshot_id, anomaly.entity_type, anomaly.entity_id)
        else:
            key = (
                anomaly.anomaly_type,
                anomaly.entity_type,
                anomaly.entity_id,
                anomaly.anomaly_date,
                anomaly.budget_period,
            )
        by_key[key] = anomaly
    results = []
    for candidate in candidates:
        anomaly = by_key[candidate.natural_key()]
        results.append((anomaly, anomaly.was_created))
    transaction.on_commit(lambda: _announce(results))
    return results


def _announce(results: list[tuple[Anomaly, bool]]) -> None:
    for anomaly, created in results:
        if created:
            metrics.anomalies_created_total.labels(
                anomaly_type=anomaly.anomaly_type, severity=anomaly.severity
            ).inc()
        if anomaly.severity in ALERTING_SEVERITIES:
            high_anomaly_detected.send(sender=Anomaly, anomaly=anomaly, created=created)


# --- Detection ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionClock:
    """D, T and the day boundaries every rule of one run shares (§11)."""

    as_of: date
    until: datetime  # T = min(now, D + 1 day 00:00)

    @classmethod
    def at(cls, as_of: date | None, now: datetime) -> "DetectionClock":
        as_of = as_of or now.astimezone(UTC).date()
        return cls(as_of=as_of, until=min(now, day_start(as_of + timedelta(days=1))))

    def start_of(self, days_before: int) -> datetime:
        """00:00 UTC of day D - days_before."""
        return day_start(self.as_of - timedelta(days=days_before))


@transaction.atomic
def anomalies_detect(*, tenant: Tenant, as_of: date | None = None) -> dict:
    """Run rules 1-5 for one tenant as of day `as_of` (default today, UTC).

    Returns {detected, created, updated, anomalies}; anomalies are in rule order.
    """
    clock = DetectionClock.at(as_of, timezone.now())
    recent = _recent_spend(tenant, clock)
    candidates = [
        *_absolute_spikes(tenant, clock, recent),
        *_sustained_drift(tenant, clock, recent),
        *(_budget_breaches(tenant, clock) if any(r.has_budgets for r in recent) else []),
        *_statistical_outliers(tenant, clock),
    ]
    results = anomaly_candidates_upsert(tenant=tenant, candidates=candidates)
    created = sum(1 for _, was_created in results if was_created)
    return {
        "detected": len(results),
        "created": created,
        "updated": len(results) - created,
        "anomalies": [anomaly for anomaly, _ in results],
    }


def anomalies_detect_active_tenants(
    *, as_of: date | None = None, tenants: Sequence[Tenant] | None = None, progress=None
) -> dict:
    """Detect for each active tenant (or the given ones), each in its own transaction.

    A failing tenant is logged and counted, and the others still run. `progress`, when
    given, is called with (tenant, result or None, error or None) after each tenant.
    """
    succeeded, failed = tenants_run_each(
        lambda tenant: anomalies_detect(tenant=tenant, as_of=as_of),
        label="Anomaly detection",
        tenants=tenants,
        on_tenant_done=progress,
    )
    totals = {"succeeded": len(succeeded), "failed": len(failed)}
    for key in ("detected", "created", "updated"):
        totals[key] = sum(result[key] for _, result in succeeded)
    outcome = "failed" if totals["failed"] else "success"
    metrics.job_runs_total.labels(job="detect_anomalies", outcome=outcome).inc()
    return totals


def _fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fetch_none(sql: str, params) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# Rules 1 and 2 --------------------------------------------------------------------------

# One scan of the tenant's last 28 days feeds both rules: per user, per feature and for the
# tenant, the spike's baseline and today's spend; on the tenant row also the drift's
# rolling week and baseline. The two EXISTS columns (InitPlans, run once) spare the drift
# and budget rules a round trip for tenants that never drifted or have no active budget.
_RECENT_SPEND_SQL = """
SELECT CASE WHEN GROUPING(user_id) = 0 THEN 'user'
            WHEN GROUPING(feature_tag) = 0 THEN 'feature'
            ELSE 'tenant' END AS entity_type,
       COALESCE(user_id, feature_tag) AS entity_id,
       SUM(cost_cents) FILTER (WHERE created_at >= %(spike_start)s
                                 AND created_at < %(spike_baseline_end)s)::float8,
       COUNT(DISTINCT day) FILTER (WHERE created_at >= %(spike_start)s
                                     AND created_at < %(spike_baseline_end)s),
       SUM(cost_cents) FILTER (WHERE created_at >= %(today_start)s)::float8,
       SUM(cost_cents) FILTER (WHERE created_at >= %(rolling_start)s)::float8,
       SUM(cost_cents) FILTER (WHERE created_at < %(drift_baseline_end)s)::float8,
       COUNT(DISTINCT day) FILTER (WHERE created_at < %(drift_baseline_end)s),
       (SELECT EXISTS (
            SELECT 1 FROM analytics_drifttracking
            WHERE tenant_id = %(tenant_id)s AND entity_type = 'tenant' AND entity_id IS NULL
       )),
       (SELECT EXISTS (
            SELECT 1 FROM analytics_budget WHERE tenant_id = %(tenant_id)s AND is_active
       ))
FROM (
    SELECT user_id, feature_tag, cost_cents, created_at,
           (created_at AT TIME ZONE 'UTC')::date AS day
    FROM analytics_costrecord
    WHERE tenant_id = %(tenant_id)s
      AND created_at >= %(drift_baseline_start)s
      AND created_at < %(until)s
) records
GROUP BY GROUPING SETS ((user_id), (feature_tag), ())
-- users, then features, then the tenant; ids in byte order
ORDER BY GROUPING(user_id), GROUPING(feature_tag), COALESCE(user_id, feature_tag) COLLATE "C"
"""


@dataclass(frozen=True)
class RecentSpend:
    """One entity's row of _RECENT_SPEND_SQL (drift columns are meaningful for the tenant)."""

    entity_type: str
    entity_id: str | None
    spike_baseline_spend: float | None
    spike_baseline_days: int
    today_spend: float | None
    rolling_spend: float | None
    drift_baseline_spend: float | None
    drift_baseline_days: int
    has_tracking: bool
    has_budgets: bool


def _recent_spend(tenant: Tenant, clock: DetectionClock) -> list[RecentSpend]:
    rows = _fetch(
        _RECENT_SPEND_SQL,
        {
            "tenant_id": tenant.pk,
            "drift_baseline_start": clock.start_of(engine.DRIFT_BASELINE_FIRST_DAY),
            "drift_baseline_end": clock.start_of(engine.DRIFT_BASELINE_LAST_DAY - 1),
            "spike_start": clock.start_of(engine.SPIKE_LOOKBACK_DAYS),
            "spike_baseline_end": clock.start_of(1),  # days D - 14 ... D - 2
            "rolling_start": clock.start_of(engine.DRIFT_ROLLING_DAYS - 1),
            "today_start": clock.start_of(0),
            "until": clock.until,
        },
    )
    return [
        RecentSpend(*row)
        for row in rows
        if row[0] == EntityType.TENANT or row[1] is not None  # no "NULL user" entity
    ]


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

# Breach days in the streak window of every breaching entity; the streak itself (gaps end
# it) is counted by the engine.
_BREACH_DAYS_SQL = """
SELECT b.entity_type, b.entity_id, array_agg(b.breach_date)
FROM analytics_breachhistory b
JOIN unnest(%(entity_type)s::text[], %(entity_id)s::text[]) AS e(entity_type, entity_id)
  ON e.entity_type = b.entity_type AND e.entity_id IS NOT DISTINCT FROM b.entity_id
WHERE b.tenant_id = %(tenant_id)s
  AND b.breach_type = 'ABSOLUTE_SPIKE'
  AND b.breach_date BETWEEN %(first_day)s AND %(last_day)s
GROUP BY b.entity_type, b.entity_id
"""


def _absolute_spikes(
    tenant: Tenant, clock: DetectionClock, spend: list[RecentSpend]
) -> list[AnomalyCandidate]:
    breaches = []
    for row in spend:  # users, features, then the tenant
        if not row.spike_baseline_days or not row.spike_baseline_spend or not row.today_spend:
            continue
        baseline = row.spike_baseline_spend / row.spike_baseline_days
        ratio = row.today_spend / baseline
        if ratio >= engine.SPIKE_RATIO:
            breaches.append(
                (
                    row.entity_type,
                    row.entity_id,
                    engine.ratio_to_pct(ratio),
                    row.today_spend,
                    baseline,
                )
            )
    if not breaches:
        return []

    columns = list(zip(*breaches, strict=True))
    _fetch_none(
        _BREACH_UPSERT_SQL,
        {
            "tenant_id": tenant.pk,
            "breach_date": clock.as_of,
            "now": timezone.now(),
            "entity_type": list(columns[0]),
            "entity_id": list(columns[1]),
            "deviation": list(columns[2]),
            "current": list(columns[3]),
            "baseline": list(columns[4]),
        },
    )
    breach_days = {
        (entity_type, entity_id): days
        for entity_type, entity_id, days in _fetch(
            _BREACH_DAYS_SQL,
            {
                "tenant_id": tenant.pk,
                "entity_type": list(columns[0]),
                "entity_id": list(columns[1]),
                "first_day": clock.as_of - timedelta(days=engine.STREAK_CAP - 1),
                "last_day": clock.as_of,
            },
        )
    }

    candidates = []
    for entity_type, entity_id, deviation, today, baseline in breaches:
        streak = engine.consecutive_streak(breach_days[(entity_type, entity_id)], clock.as_of)
        if streak < engine.SPIKE_MIN_STREAK:
            continue
        label = engine.entity_label(entity_type, entity_id)
        candidates.append(
            AnomalyCandidate(
                anomaly_type=AnomalyType.ABSOLUTE_SPIKE,
                severity=engine.classify(deviation),
                entity_type=entity_type,
                entity_id=entity_id,
                anomaly_date=clock.as_of,
                current_value_cents=today,
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


# Rule 2 ----------------------------------------------------------------------------------

_DRIFT_STOP_SQL = """
UPDATE analytics_drifttracking
SET is_active = FALSE, last_check_date = %(as_of)s, updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s AND entity_type = 'tenant' AND entity_id IS NULL
  AND (last_check_date IS NULL OR last_check_date <= %(as_of)s)
"""


def _sustained_drift(
    tenant: Tenant, clock: DetectionClock, spend: list[RecentSpend]
) -> list[AnomalyCandidate]:
    row = next((r for r in spend if r.entity_type == EntityType.TENANT), None)
    if row is None or not row.drift_baseline_days or not row.drift_baseline_spend:
        return []
    rolling = (row.rolling_spend or 0.0) / float(engine.DRIFT_ROLLING_DAYS)
    baseline = row.drift_baseline_spend / row.drift_baseline_days
    ratio = rolling / baseline
    drift = engine.ratio_to_pct(ratio)

    if ratio < engine.DRIFT_RATIO:
        # The streak ends (a conditional UPDATE: an older backtest day changes nothing).
        if row.has_tracking:
            _fetch_none(
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
    state = engine.drift_step(previous, as_of=clock.as_of, ratio=ratio)
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


# Rules 3/4 -------------------------------------------------------------------------------

# Every active budget of the tenant with its daily and month-to-date spend, in one query.
_BUDGET_SPEND_SQL = """
SELECT b.*,
       COALESCE(SUM(r.cost_cents) FILTER (WHERE r.created_at >= %(day_start)s), 0) AS day_spend,
       COALESCE(SUM(r.cost_cents), 0) AS month_spend
FROM analytics_budget b
LEFT JOIN analytics_costrecord r
  ON r.tenant_id = b.tenant_id
 AND r.created_at >= %(month_start)s
 AND r.created_at < %(until)s
 AND CASE b.budget_type
         WHEN 'feature' THEN r.feature_tag = b.entity_id
         WHEN 'user' THEN r.user_id = b.entity_id
         ELSE TRUE
     END
WHERE b.tenant_id = %(tenant_id)s AND b.is_active
GROUP BY b.id
ORDER BY b.id
"""

_ONE_MICROSECOND = timedelta(microseconds=1)
BUDGET_SCOPE_DESC = {"tenant": "tenant", "feature": "feature '{id}'", "user": "user '{id}'"}


def _budget_breaches(tenant: Tenant, clock: DetectionClock) -> list[AnomalyCandidate]:
    day_begin = clock.start_of(0)
    month_begin = day_start(clock.as_of.replace(day=1))
    budgets = Budget.objects.raw(
        _BUDGET_SPEND_SQL,
        {
            "tenant_id": tenant.pk,
            "day_start": day_begin,
            "month_start": month_begin,
            "until": clock.until,
        },
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
    """Burn-down ETA (§5.2) of the period containing D, evaluated at T."""
    # The period containing D: T itself may already be the first instant of the next one.
    period_start, period_end = budget_period_bounds(period=period, at=at - _ONE_MICROSECOND)
    if at < period_end:
        return budget_period_status(budget=budget, period=period, at=at)["eta_exhausted_at"]
    # A backtest evaluates a past day at its very end, where the status selector would pick
    # the next period; a linear projection from there always lands past the period end.
    if spend >= limit:
        return budget_exhausted_at(budget=budget, start=period_start, end=at, limit=limit)
    return None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


# Rule 5 ----------------------------------------------------------------------------------

# The 28-day history plus day E of every eligible entity, zero-filled by generate_series.
# Only tenants whose records reach back to day E - 28 are judged (the uncorrelated EXISTS
# runs once). Within one entity type the only NULL id left is the tenant's, so COALESCE
# gives a non-null key the final join can hash on.
_OUTLIER_HISTORY_SQL = """
WITH records AS (
    SELECT (created_at AT TIME ZONE 'UTC')::date AS day, model, feature_tag, user_id, cost_cents
    FROM analytics_costrecord
    WHERE tenant_id = %(tenant_id)s
      AND created_at >= %(history_start)s
      AND created_at < %(evaluated_end)s
      AND EXISTS (
          SELECT 1 FROM analytics_costrecord
          WHERE tenant_id = %(tenant_id)s AND created_at < %(history_first_end)s
      )
),
grouped AS (
    SELECT CASE WHEN GROUPING(model) = 0 THEN 'model'
                WHEN GROUPING(feature_tag) = 0 THEN 'feature'
                WHEN GROUPING(user_id) = 0 THEN 'user'
                ELSE 'tenant' END AS entity_type,
           COALESCE(model, feature_tag, user_id) AS entity_id,
           day,
           SUM(cost_cents)::float8 AS cents
    FROM records
    GROUP BY GROUPING SETS ((day), (day, model), (day, feature_tag), (day, user_id))
),
daily AS (
    SELECT entity_type, entity_id, COALESCE(entity_id, '') AS entity_key, day, cents
    FROM grouped
    WHERE entity_type = 'tenant' OR entity_id IS NOT NULL
),
eligible AS (
    SELECT entity_type, entity_key, entity_id
    FROM daily
    GROUP BY entity_type, entity_key, entity_id
    HAVING SUM(cents) FILTER (WHERE day = %(evaluated)s) > 0
       AND (entity_type = 'tenant'
            OR COUNT(*) FILTER (WHERE day < %(evaluated)s AND cents > 0) >= %(min_active_days)s)
)
SELECT e.entity_type, e.entity_id, array_agg(COALESCE(d.cents, 0) ORDER BY g.day)
FROM eligible e
CROSS JOIN LATERAL (
    SELECT %(history_first)s::date + offset_days AS day
    FROM generate_series(0, %(history_days)s) AS offset_days
) g
LEFT JOIN daily d
  ON d.entity_type = e.entity_type AND d.entity_key = e.entity_key AND d.day = g.day
GROUP BY e.entity_type, e.entity_key, e.entity_id
ORDER BY array_position(ARRAY['tenant', 'model', 'feature', 'user'], e.entity_type),
         e.entity_id COLLATE "C"
"""


def _statistical_outliers(tenant: Tenant, clock: DetectionClock) -> list[AnomalyCandidate]:
    evaluated = clock.as_of - timedelta(days=1)
    history_first = evaluated - timedelta(days=engine.OUTLIER_HISTORY_DAYS)
    rows = _fetch(
        _OUTLIER_HISTORY_SQL,
        {
            "tenant_id": tenant.pk,
            "history_start": day_start(history_first),
            "history_first_end": day_start(history_first + timedelta(days=1)),
            "history_first": history_first,
            "history_days": engine.OUTLIER_HISTORY_DAYS,
            "evaluated": evaluated,
            "evaluated_end": day_start(clock.as_of),
            "min_active_days": engine.OUTLIER_MIN_ACTIVE_DAYS,
        },
    )
    candidates = []
    for entity_type, entity_id, series in rows:
        value = series[-1]
        result = engine.robust_outlier(evaluated=evaluated, value=value, history=series[:-1])
        if not result.is_anomaly:
            continue
        label = engine.entity_label(entity_type, entity_id)
        candidates.append(
            AnomalyCandidate(
                anomaly_type=AnomalyType.STATISTICAL_OUTLIER,
                severity=result.severity,
                entity_type=entity_type,
                entity_id=entity_id,
                anomaly_date=evaluated,
                current_value_cents=value,
                expected_value_cents=result.expected,
                deviation_pct=engine.finite_or_none(result.impact_pct),
                threshold_pct=engine.OUTLIER_THRESHOLD_PCT,
                message=(
                    f"{label} spent {value:.2f} cents on {evaluated.isoformat()} vs "
                    f"{result.expected:.2f} expected (+{result.impact_pct:.1f}%, "
                    f"robust z {result.z_score:.2f})"
                ),
                metadata={
                    "method": result.method,
                    "z_score": engine.finite_or_none(result.z_score, 4),
                    "expected_cents": result.expected,
                    "mad_cents": result.mad,
                    "impact_cents": result.impact,
                    "impact_pct": engine.finite_or_none(result.impact_pct),
                    "history_days": engine.OUTLIER_HISTORY_DAYS,
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


# --- Lifecycle (§10.1) -------------------------------------------------------------------

CLOSED_STATUSES = (AnomalyStatus.RESOLVED, AnomalyStatus.DISMISSED)
OPEN_STATUSES = (AnomalyStatus.OPEN, AnomalyStatus.ACKNOWLEDGED)
RESOLUTIONS = (AnomalyStatus.RESOLVED, AnomalyStatus.DISMISSED)


def _closed_conflict(anomaly: Anomaly, action: str) -> AnomalyTransitionConflict:
    return AnomalyTransitionConflict(
        f"Cannot {action} an anomaly that is {anomaly.status}.",
        [{"field": "status", "reason": f"anomaly is {anomaly.status}"}],
    )


@transaction.atomic
def anomaly_acknowledge(*, anomaly: Anomaly, actor: str) -> Anomaly:
    """open → acknowledged; acknowledged stays as it is; resolved/dismissed → 409."""
    # The status condition in the UPDATE makes concurrent actions race safely: whichever
    # commits first wins and the other sees the row count it deserves.
    Anomaly.objects.filter(pk=anomaly.pk, status=AnomalyStatus.OPEN).update(
        status=AnomalyStatus.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor
    )
    anomaly.refresh_from_db()
    if anomaly.status in CLOSED_STATUSES:
        raise _closed_conflict(anomaly, "acknowledge")
    return anomaly


@transaction.atomic
def anomaly_resolve(*, anomaly: Anomaly, actor: str, resolution: str, notes: str = "") -> Anomaly:
    """open/acknowledged → resolved or dismissed; an already closed anomaly → 409."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    changed = Anomaly.objects.filter(pk=anomaly.pk, status__in=OPEN_STATUSES).update(
        status=resolution, resolved_at=timezone.now(), resolved_by=actor, resolution_notes=notes
    )
    anomaly.refresh_from_db()
    if not changed:
        raise _closed_conflict(anomaly, "resolve")
    return anomaly


@transaction.atomic
def anomaly_label(*, anomaly: Anomaly, actor: str, label: str) -> Anomaly:
    """Record (or overwrite) the feedback label, whatever the status."""
    if label not in FeedbackLabel.values:
        raise ValueError(f"label must be one of {', '.join(FeedbackLabel.values)}")
    Anomaly.objects.filter(pk=anomaly.pk).update(
        feedback_label=label, feedback_at=timezone.now(), feedback_by=actor
    )
    anomaly.refresh_from_db()
    return anomaly


@transaction.atomic
def anomalies_acknowledge(*, anomalies, actor: str) -> dict:
    """Bulk acknowledge: {acknowledged, unchanged, conflicts} (closed ones are conflicts)."""
    total = anomalies.count()
    acknowledged = anomalies.filter(status=AnomalyStatus.OPEN).update(
        status=AnomalyStatus.ACKNOWLEDGED, acknowledged_at=timezone.now(), acknowledged_by=actor
    )
    conflicts = anomalies.filter(status__in=CLOSED_STATUSES).count()
    return {
        "acknowledged": acknowledged,
        "unchanged": total - acknowledged - conflicts,
        "conflicts": conflicts,
    }


@transaction.atomic
def anomalies_resolve(*, anomalies, actor: str, resolution: str, notes: str = "") -> dict:
    """Bulk resolve or dismiss the open/acknowledged ones: {changed, conflicts}."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {', '.join(RESOLUTIONS)}")
    total = anomalies.count()
    changed = anomalies.filter(status__in=OPEN_STATUSES).update(
        status=resolution, resolved_at=timezone.now(), resolved_by=actor, resolution_notes=notes
    )
    return {"changed": changed, "conflicts": total - changed}


@transaction.atomic
def anomalies_label(*, anomalies, actor: str, label: str) -> dict:
    """Bulk feedback label: {labelled}."""
    if label not in FeedbackLabel.values:
        raise ValueError(f"label must be one of {', '.join(FeedbackLabel.values)}")
    labelled = anomalies.update(feedback_label=label, feedback_at=timezone.now(), feedback_by=actor)
    return {"labelled": labelled}
