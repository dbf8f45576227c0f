"""Reads behind incidents: monitor settings, daily series of every entity, plans, lists.

`DetectionContext` is what one detection run knows about its tenant: the effective settings,
the plans and the daily series, read once and lazily, with the fitted expectation of any
scope on demand.
"""

import math
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Case, IntegerField, Prefetch, QuerySet, Value, When
from django.utils import timezone

from analytics.db import read_connection
from analytics.models import (
    Anomaly,
    DetectionSettings,
    FeedbackLabel,
    Incident,
    PlannedActivity,
    Severity,
    Tenant,
)
from analytics.services import expectation
from analytics.services.expectation import Plan, Scope, WindowJudgement

DIMENSIONS = ("user", "feature", "model")
TENANT: Scope = ("tenant", None)
# Days of spend read before the judged day: the model's history plus a drift's rolling week.
SERIES_DAYS = expectation.HISTORY_DAYS + 7


# --- Monitor settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class EffectiveSettings:
    """A tenant's detection settings with the project defaults filled in."""

    spike_min_impact_cents: float
    spike_min_impact_pct: float
    drift_min_impact_cents: float
    drift_min_impact_pct: float
    outlier_min_impact_cents: float
    outlier_min_impact_pct: float
    entity_min_tenant_pct: float
    z_threshold: float
    min_history_days: int
    monitored_dimensions: tuple[str, ...]
    suppression_days: int

    def floors(self, kind: str) -> tuple[float, float]:
        """(minimum impact in cents, minimum impact in %) of an incident kind."""
        return getattr(self, f"{kind}_min_impact_cents"), getattr(self, f"{kind}_min_impact_pct")

    def monitors(self, entity_type: str) -> bool:
        return entity_type == "tenant" or entity_type in self.monitored_dimensions


SETTING_NAMES = tuple(field.name for field in fields(EffectiveSettings))


def detection_settings_defaults() -> dict:
    return dict(settings.ANALYTICS_DETECTION_DEFAULTS)


def detection_settings_effective(*, tenant: Tenant) -> EffectiveSettings:
    stored = DetectionSettings.objects.filter(tenant=tenant).values(*SETTING_NAMES).first()
    return _effective(stored)


def _effective(stored: dict | None) -> EffectiveSettings:
    """The project defaults overlaid with a tenant's stored (non-null) settings."""
    values = detection_settings_defaults()
    for name, value in (stored or {}).items():
        if name in values and value is not None:
            values[name] = value
    values["monitored_dimensions"] = tuple(values["monitored_dimensions"])
    return EffectiveSettings(**{name: values[name] for name in SETTING_NAMES})


# A tenant's stored settings and the plans overlapping a range of days, in one round trip:
# detection reads both for every tenant on every run.
_MONITORS_SQL = """
SELECT CASE WHEN %(lock_class)s::int IS NOT NULL
            THEN pg_advisory_xact_lock(%(lock_class)s::int, %(tenant_id)s) END,
       (SELECT row_to_json(s) FROM analytics_detectionsettings s
        WHERE s.tenant_id = %(tenant_id)s),
       (SELECT json_agg(json_build_array(p.starts_on, p.ends_on, p.entity_type, p.entity_id,
                                         p.expected_factor) ORDER BY p.id)
        FROM analytics_plannedactivity p
        WHERE p.tenant_id = %(tenant_id)s
          AND p.starts_on <= %(last_day)s AND p.ends_on >= %(first_day)s),
       EXISTS (SELECT 1 FROM analytics_drifttracking
               WHERE tenant_id = %(tenant_id)s AND entity_type = 'tenant' AND entity_id IS NULL),
       EXISTS (SELECT 1 FROM analytics_budget WHERE tenant_id = %(tenant_id)s AND is_active)
"""


@dataclass(frozen=True)
class Monitors:
    """What shapes one tenant's detection run, read in one round trip."""

    settings: EffectiveSettings
    plans: list[Plan]
    has_drift_tracking: bool  # the drift rule has a streak row to update
    has_budgets: bool  # the budget rules have something to judge


def detection_monitors(
    *, tenant: Tenant, first_day: date, last_day: date, lock_class: int | None = None
) -> Monitors:
    """The tenant's effective settings, plans overlapping first_day ... last_day and flags.

    With `lock_class`, the same round trip first takes the transaction-scoped advisory lock
    (lock_class, tenant id), which detection holds while it writes the tenant's incidents.
    The reads share the statement's snapshot, taken before the lock: fine for settings,
    plans and the two flags, which no concurrent detection run writes in a way that matters.
    """
    params = {
        "tenant_id": tenant.pk,
        "first_day": first_day,
        "last_day": last_day,
        "lock_class": lock_class,
    }
    with read_connection().cursor() as cursor:
        cursor.execute(_MONITORS_SQL, params)
        _, stored, plans, has_drift_tracking, has_budgets = cursor.fetchone()
    return Monitors(
        settings=_effective(stored),
        plans=[
            Plan(date.fromisoformat(start), date.fromisoformat(end), kind, entity_id, factor)
            for start, end, kind, entity_id, factor in plans or []
        ],
        has_drift_tracking=has_drift_tracking,
        has_budgets=has_budgets,
    )


# --- Daily series -------------------------------------------------------------------------

# Zero-filled daily spend of the tenant and of every user, feature and model it has, one
# row per entity with an array of days; one scan of the tenant's records in the range.
_ENTITY_SERIES_SQL = """
WITH grouped AS (
    SELECT CASE WHEN GROUPING(user_id) = 0 THEN 'user'
                WHEN GROUPING(feature_tag) = 0 THEN 'feature'
                WHEN GROUPING(model) = 0 THEN 'model'
                ELSE 'tenant' END AS entity_type,
           COALESCE(user_id, feature_tag, model) AS entity_id,
           day,
           -- unpriced records (NULL cost) count as 0
           COALESCE(SUM(cost_cents), 0)::float8 AS cents,
           COUNT(*) AS records
    FROM (
        SELECT user_id, feature_tag, model, cost_cents,
               (created_at AT TIME ZONE 'UTC')::date AS day
        FROM analytics_costrecord
        WHERE tenant_id = %(tenant_id)s
          AND created_at >= %(start)s
          AND created_at < %(end)s
    ) records
    GROUP BY GROUPING SETS ((day), (user_id, day), (feature_tag, day), (model, day))
)
SELECT entity_type, entity_id, array_agg(day), array_agg(cents), array_agg(records)
FROM grouped
WHERE entity_type = 'tenant' OR entity_id IS NOT NULL
GROUP BY entity_type, entity_id
"""


@dataclass
class EntitySeries:
    """Daily spend from `first_day` on, per scope; a scope without records reads as zeros."""

    first_day: date
    last_day: date
    values: dict[Scope, list[float]]
    records: dict[Scope, list[int]]  # records per day: a day with records of 0 cents counts

    def of(self, scope: Scope) -> list[float]:
        return self.values.get(scope) or [0.0] * ((self.last_day - self.first_day).days + 1)

    def between(self, scope: Scope, first: date, last: date) -> list[float]:
        """The values of days first ... last (days outside the fetched range read as 0)."""
        series = self.of(scope)
        start = (first - self.first_day).days
        stop = (last - self.first_day).days + 1
        inside = series[max(start, 0) : max(min(stop, len(series)), 0)]
        before = [0.0] * max(min(stop, 0) - start, 0)
        after = [0.0] * max(stop - max(start, len(series)), 0)
        return before + inside + after

    def total(self, scope: Scope, first: date, last: date) -> float:
        return math.fsum(self.between(scope, first, last))

    def active_days(self, scope: Scope, first: date, last: date) -> int:
        """Days of first ... last with at least one record of the scope."""
        start = max((first - self.first_day).days, 0)
        stop = (last - self.first_day).days + 1
        return sum(1 for count in self.records.get(scope, ())[start:stop] if count)

    def first_active_day(self, scope: Scope) -> date | None:
        for index, value in enumerate(self.values.get(scope, ())):
            if value > 0:
                return self.first_day + timedelta(days=index)
        return None


def entity_daily_series(
    *, tenant_id: int, first_day: date, last_day: date, until: datetime | None = None
) -> EntitySeries:
    """Daily spend and record counts of the tenant and its entities, first_day ... last_day.

    Records from `until` on (the rest of a running day) are left out.
    """
    start = datetime.combine(first_day, time.min, tzinfo=UTC)
    end = datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=UTC)
    end = min(end, until) if until else end
    length = (last_day - first_day).days + 1
    with read_connection().cursor() as cursor:
        cursor.execute(_ENTITY_SERIES_SQL, {"tenant_id": tenant_id, "start": start, "end": end})
        rows = cursor.fetchall()
    values: dict[Scope, list[float]] = {}
    records: dict[Scope, list[int]] = {}
    for entity_type, entity_id, days, cents, counts in rows:
        series, per_day = [0.0] * length, [0] * length
        for day, amount, count in zip(days, cents, counts, strict=True):
            series[(day - first_day).days] = amount
            per_day[(day - first_day).days] = count
        values[(entity_type, entity_id)] = series
        records[(entity_type, entity_id)] = per_day
    return EntitySeries(first_day, last_day, values, records)


def false_alarms_since(*, tenant: Tenant, since: date) -> list[Incident]:
    """Incidents labelled NO that were still seen on or after `since`, with their anomalies
    (suppression compares scopes with theirs)."""
    return list(
        Incident.objects.filter(
            tenant=tenant, feedback_label=FeedbackLabel.NO, last_seen_on__gte=since
        ).prefetch_related("anomalies")
    )


# The incidents whose window touches a range of days, each with the (entity_type, entity_id)
# of its anomalies, locked for update: one statement for the grouping step.
_INCIDENTS_NEAR_SQL = """
SELECT i.*,
       ARRAY(SELECT json_build_array(a.entity_type, a.entity_id)
             FROM analytics_anomaly a WHERE a.incident_id = i.id) AS member_pairs
FROM analytics_incident i
WHERE i.tenant_id = %(tenant_id)s
  AND i.started_on <= %(last_day)s AND i.last_seen_on >= %(first_day)s
ORDER BY i.started_on, i.id
FOR UPDATE OF i
"""


def incidents_near(*, tenant: Tenant, first_day: date, last_day: date) -> list[Incident]:
    """The tenant's incidents whose window touches [first_day, last_day], locked for update.

    Each carries `member_scopes`: the (entity_type, entity_id) of its anomalies.
    """
    params = {"tenant_id": tenant.pk, "first_day": first_day, "last_day": last_day}
    incidents = list(Incident.objects.raw(_INCIDENTS_NEAR_SQL, params))
    for incident in incidents:
        incident.member_scopes = {tuple(pair) for pair in incident.member_pairs}
    return incidents


class DetectionContext:
    """Settings, plans and daily series of one tenant for one detection day, read lazily."""

    def __init__(
        self,
        *,
        tenant: Tenant,
        as_of: date,
        until: datetime | None = None,
        settings: EffectiveSettings | None = None,
    ):
        self.tenant = tenant
        self.as_of = as_of
        # The end of what has been spent: within day as_of for a live run, its end otherwise.
        self.until = until or datetime.combine(as_of + timedelta(days=1), time.min, tzinfo=UTC)
        self._settings = settings
        self._series: EntitySeries | None = None
        self._monitors: Monitors | None = None
        self._models: dict[tuple[Scope, date], expectation.DailyModel | None] = {}

    def series(self, first_day: date | None = None) -> EntitySeries:
        first_day = min(first_day or self.as_of, self.as_of - timedelta(days=SERIES_DAYS))
        if self._series is None or first_day < self._series.first_day:
            self._series = entity_daily_series(
                tenant_id=self.tenant.pk,
                first_day=first_day,
                last_day=self.as_of,
                until=self.until,
            )
        return self._series

    @property
    def monitors(self) -> Monitors:
        if self._monitors is None:
            self._monitors = detection_monitors(
                tenant=self.tenant,
                first_day=self.as_of - timedelta(days=SERIES_DAYS + expectation.HISTORY_DAYS),
                last_day=self.as_of,
            )
        return self._monitors

    @property
    def settings(self) -> EffectiveSettings:
        return self._settings or self.monitors.settings

    @property
    def plans(self) -> list[expectation.Plan]:
        return self.monitors.plans

    def lock(self, lock_class: int) -> None:
        """Take the tenant's detection lock, reading the monitors on the way."""
        self._monitors = detection_monitors(
            tenant=self.tenant,
            first_day=self.as_of - timedelta(days=SERIES_DAYS + expectation.HISTORY_DAYS),
            last_day=self.as_of,
            lock_class=lock_class,
        )

    def complete_day(self, last: date, first: date) -> date:
        """`last`, or the day before it when `last` is today and still running.

        An incident's numbers compare whole days: a day that has barely started would count
        a full day's expected spend against a few hours of actual spend.
        """
        running = last == self.as_of and self.until < datetime.combine(
            last + timedelta(days=1), time.min, tzinfo=UTC
        )
        return last - timedelta(days=1) if running and last > first else last

    def model(self, scope: Scope, before: date) -> expectation.DailyModel | None:
        """The scope's model fitted on the history that ends the day before `before`."""
        key = (scope, before)
        if key not in self._models:
            series = self.series(before - timedelta(days=expectation.HISTORY_DAYS))
            history = series.between(
                scope, before - timedelta(days=expectation.HISTORY_DAYS), before - timedelta(1)
            )
            self._models[key] = expectation.fit(history, last_day=before - timedelta(days=1))
        return self._models[key]

    def monitored_entities(self) -> int:
        """How many users, features and models of the tenant detection watches."""
        return sum(
            1
            for entity_type, _ in self.series().values
            if entity_type != "tenant" and self.settings.monitors(entity_type)
        )

    def history_days(self, scope: Scope, before: date) -> int:
        """Days from the scope's first spend in the read range to the day before `before`."""
        first = self.series(before - timedelta(days=expectation.HISTORY_DAYS)).first_active_day(
            scope
        )
        return 0 if first is None or first >= before else (before - first).days

    # complexity: the tenant's planned expectation needs each planned entity's own expected spend of
    # the same day
    def expected(self, scope: Scope, first: date, last: date, *, before: date) -> list[float]:
        """Plan-adjusted expected spend of the days first ... last, fitted before `before`."""
        model = self.model(scope, before)
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        base = [model.expected(day) if model else 0.0 for day in days]
        plans = [plan for plan in self.plans if plan.starts_on <= last and plan.ends_on >= first]
        if not plans:
            return base
        planned_scopes = {(p.entity_type, p.entity_id) for p in plans if p.entity_id is not None}
        out = []
        for day, value in zip(days, base, strict=True):
            by_scope = {scope: value}
            if scope == TENANT:
                for other in planned_scopes:
                    other_model = self.model(other, before)
                    by_scope[other] = other_model.expected(day) if other_model else 0.0
            out.append(
                expectation.planned_expected(scope=scope, day=day, expected=by_scope, plans=plans)
            )
        return out

    def judge(self, scope: Scope, first: date, last: date) -> WindowJudgement | None:
        """The window's spend against the scope's expectation; None without a model."""
        model = self.model(scope, first)
        if model is None:
            return None
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        return expectation.judge_window(
            actual=self.series(first).between(scope, first, last),
            expected=self.expected(scope, first, last, before=first),
            spread=model.spread,
            spreads=[model.spread_on(day) for day in days],
        )


# --- Lists --------------------------------------------------------------------------------


def incident_list(
    *,
    tenant: Tenant,
    status: str | None = None,
    severity: str | None = None,
    kind: str | None = None,
    seen_from: date | None = None,
    seen_to: date | None = None,
) -> QuerySet[Incident]:
    """The tenant's incidents, filtered; last_seen_on in [seen_from, seen_to)."""
    filters = {
        "status": status,
        "severity": severity,
        "kind": kind,
        "last_seen_on__gte": seen_from,
        "last_seen_on__lt": seen_to,
    }
    return Incident.objects.filter(
        tenant=tenant, **{key: value for key, value in filters.items() if value is not None}
    )


def incident_detail_queryset(*, tenant: Tenant) -> QuerySet[Incident]:
    members = Anomaly.objects.order_by("anomaly_date", "id")
    return Incident.objects.filter(tenant=tenant).prefetch_related(
        Prefetch("anomalies", queryset=members)
    )


def planned_activity_list(*, tenant: Tenant) -> QuerySet[PlannedActivity]:
    return PlannedActivity.objects.filter(tenant=tenant)


# --- The operator console's chart ----------------------------------------------------------


@dataclass(frozen=True)
class IncidentDay:
    day: date
    actual_cents: float
    expected_cents: float  # before the incident started: the actual spend


def incident_daily_series(
    *, incident: Incident, days_before: int = 14, days_after: int = 7, today: date | None = None
) -> list[IncidentDay]:
    """Daily spend of the incident's scope around its window, oldest first, with what was expected.

    From `days_before` days before started_on to `days_after` days after last_seen_on, but no
    day after today (the window itself is always shown). From started_on on, the expectation
    is the one the incident was judged by: plan-adjusted and fitted on the history before
    started_on; before it, the expected value is the actual spend.
    """
    today = today or timezone.now().date()
    first = incident.started_on - timedelta(days=days_before)
    last = max(
        min(incident.last_seen_on + timedelta(days=days_after), today), incident.last_seen_on
    )
    context = DetectionContext(tenant=incident.tenant, as_of=last)
    scope = (incident.entity_type, incident.entity_id)
    # One read of the tenant's records covers the chart and the model's history.
    series = context.series(
        min(first, incident.started_on - timedelta(days=expectation.HISTORY_DAYS))
    )
    actual = series.between(scope, first, last)
    lead = (incident.started_on - first).days
    expected = actual[:lead] + context.expected(
        scope, incident.started_on, last, before=incident.started_on
    )
    return [
        IncidentDay(first + timedelta(days=index), spent, due)
        for index, (spent, due) in enumerate(zip(actual, expected, strict=True))
    ]


# Most severe first; the ranks follow Severity's order from LOW up.
SEVERITY_RANK = Case(
    *(When(severity=value, then=Value(rank)) for rank, value in enumerate(Severity.values)),
    output_field=IntegerField(),
)


def incidents_needing_attention(*, tenant: Tenant) -> QuerySet[Incident]:
    """The tenant's open and acknowledged incidents, most severe first, then newest first."""
    return (
        Incident.objects.filter(tenant=tenant)
        .unresolved()
        .annotate(severity_rank=SEVERITY_RANK)
        .order_by("-severity_rank", "-last_seen_on", "-opened_at", "-id")
    )


def incidents_touching(*, tenant: Tenant, first_day: date, last_day: date) -> QuerySet[Incident]:
    """The tenant's incidents whose window [started_on, last_seen_on] meets [first_day, last_day],
    oldest first."""
    return Incident.objects.filter(
        tenant=tenant, started_on__lte=last_day, last_seen_on__gte=first_day
    ).order_by("started_on", "id")
