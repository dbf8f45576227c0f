"""The operator overview: what a tenant spends, where, whether it is normal, what needs a look.

Nothing here writes and nothing is computed twice: every figure comes from the reads behind
the API and detection. The range's totals, series and breakdowns are the cost statistics the
API answers for the same window (`cost_statistics`); spend of the headline periods is the same
statistics series; the expected band is the stored baselines; top movers are the daily
snapshots against the 7-day baselines they recorded; budgets are the budget status the API
reports; incidents are the detection run's. Amounts stay in cents (Decimal or float, as their
source gives them); the admin formats them as dollars.
"""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from analytics.models import Baseline, BudgetPeriod, Incident, Tenant
from analytics.selectors.budgets import MIN_ELAPSED, budget_period_bounds, budget_period_status
from analytics.selectors.incidents import incidents_needing_attention, incidents_touching
from analytics.selectors.records import budget_list
from analytics.selectors.snapshots import (
    baselines_between,
    entity_movers,
    hourly_tenant_baselines,
)
from analytics.selectors.statistics import (
    DAY,
    HOUR,
    StatisticsWindow,
    cost_breakdown_series,
    cost_series,
    statistics_coverage,
)
from analytics.services.statistics import UNTAGGED, bucket_label, cost_statistics

# The chart stacks the largest keys of the range and folds the rest into one segment, so the
# colours stay tellable apart.
STACKED_KEYS = 6
OTHER = "other"
MOVERS_PER_TYPE = 5
OPEN_INCIDENTS_SHOWN = 10
BUDGETS_SHOWN = 20
BASELINE_WINDOW_DAYS = 7
GROUPINGS = ("model", "feature")


def utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# --- Headline: today, month to date, forecast --------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One headline amount against the same stretch of the period before."""

    cents: Decimal | None  # None: not known yet (a forecast too early in the month)
    previous_cents: Decimal | None
    previous_label: str

    @property
    def change_pct(self) -> float | None:
        if self.cents is None or not self.previous_cents:
            return None
        return float((self.cents - self.previous_cents) / self.previous_cents * 100)


def spend_between(*, tenant: Tenant, start: datetime, end: datetime) -> Decimal:
    """Σ cost_cents of the tenant over [start, end), read as the cost statistics read it."""
    if end <= start:
        return Decimal(0)
    window = StatisticsWindow(start=start, end=end, resolution=DAY)
    coverage = statistics_coverage(tenant=tenant, window=window)
    rows = cost_series(tenant=tenant, window=window, coverage=coverage)
    return sum((row[1] for row in rows), Decimal(0))


def month_forecast(*, spend: Decimal, at: datetime) -> Decimal | None:
    """The month's spend if it goes on at the rate of `spend` over [month start, at).

    The linear burn rate of the budget burn-down (spend / elapsed), over the whole month;
    None before MIN_ELAPSED of the month has passed, when the budget gives no ETA either.
    """
    month_start, month_end = budget_period_bounds(period=BudgetPeriod.MONTHLY, at=at)
    elapsed = at - month_start
    if elapsed < MIN_ELAPSED[BudgetPeriod.MONTHLY]:
        return None
    return spend * Decimal((month_end - month_start) / elapsed)


def spend_headline(*, tenant: Tenant, now: datetime) -> dict[str, Figure]:
    """Spend today, this month to date and the month's forecast, each with its comparison.

    Today and the month to date are compared with the same stretch of the day and the month
    before (yesterday up to this time of day; last month up to as far into it); the forecast
    with last month's whole spend.
    """
    today, _ = budget_period_bounds(period=BudgetPeriod.DAILY, at=now)
    month_start, _ = budget_period_bounds(period=BudgetPeriod.MONTHLY, at=now)
    previous_month_start, _ = budget_period_bounds(
        period=BudgetPeriod.MONTHLY, at=month_start - timedelta(days=1)
    )
    into_month = now - month_start
    today_cents = spend_between(tenant=tenant, start=today, end=now)
    month_cents = spend_between(tenant=tenant, start=month_start, end=now)
    previous_month_cents = spend_between(tenant=tenant, start=previous_month_start, end=month_start)
    return {
        "today": Figure(
            today_cents,
            spend_between(tenant=tenant, start=today - timedelta(days=1), end=now - timedelta(1)),
            "yesterday by this time",
        ),
        "month": Figure(
            month_cents,
            spend_between(
                tenant=tenant,
                start=previous_month_start,
                end=min(previous_month_start + into_month, month_start),
            ),
            f"{previous_month_start:%B} by day {into_month.days + 1}",
        ),
        "forecast": Figure(
            month_forecast(spend=month_cents, at=now),
            previous_month_cents,
            f"all of {previous_month_start:%B}",
        ),
    }


# --- The chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    start: datetime
    total_cents: Decimal
    segments: dict[str, Decimal]  # stack key -> cents; keys without spend are absent
    expected_cents: float | None = None  # the baseline's mean
    band_cents: tuple[float, float] | None = None  # (low, high)


@dataclass(frozen=True)
class Marker:
    """An incident on the chart, at the first bucket of its window inside the range."""

    incident: Incident
    bucket_index: int


@dataclass
class Overview:
    tenant: Tenant
    window: StatisticsWindow
    group_by: str
    statistics: dict  # cost_statistics() of the window: what GET /analytics/cost/ answers
    buckets: list[Bucket]
    stack_keys: list[str]  # bottom first; OTHER last when some keys were folded into it
    markers: list[Marker]
    band_source: str  # what the band shows, in words
    headline: dict[str, Figure]
    movers: dict[str, list[dict]] = field(default_factory=dict)
    budgets: list[dict] = field(default_factory=list)
    incidents: list[Incident] = field(default_factory=list)
    incident_counts: dict[str, int] = field(default_factory=dict)

    @property
    def unpriced_records(self) -> int | None:
        """Records in the range without a price, when the statistics report them."""
        return self.statistics["totals"].get("unpriced_records")


def bucket_starts(window: StatisticsWindow) -> list[datetime]:
    """Every bucket of the window, from the one holding its start to the one before its end."""
    step = timedelta(hours=1) if window.resolution == HOUR else timedelta(days=1)
    first = window.start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if window.resolution == DAY:
        first = first.replace(hour=0)
    starts = []
    while first < window.end:
        starts.append(first)
        first += step
    return starts


def _stack_keys(statistics: dict, group_by: str) -> tuple[list[str], set[str]]:
    """The keys drawn on their own (largest spend first, bottom up) and those folded."""
    if group_by == "model":
        ranked = [row["model"] for row in statistics["by_model"]]
    else:
        ranked = [row["feature_tag"] for row in statistics["by_feature"]]
    if len(ranked) <= STACKED_KEYS:
        return ranked, set()
    kept = ranked[: STACKED_KEYS - 1]
    return kept + [OTHER], set(ranked[STACKED_KEYS - 1 :])


def baselines_by_day(
    *, tenant: Tenant, days: list[date], entity_type: str = "tenant", entity_id: str | None = None
) -> dict[date, Baseline]:
    """The 7-day baseline of the entity each day (oldest first) is judged by: the latest one
    as of that day. Days before the first baseline are absent."""
    if not days:
        return {}
    rows = baselines_between(
        tenant=tenant,
        window_days=BASELINE_WINDOW_DAYS,
        first_day=days[0],
        last_day=days[-1],
        entity_type=entity_type,
        entity_id=entity_id,
    )
    by_day, index, current = {}, 0, None
    for day in days:
        while index < len(rows) and rows[index].as_of <= day:
            current = rows[index]
            index += 1
        if current is not None:
            by_day[day] = current
    return by_day


def baseline_band(baseline: Baseline) -> tuple[float, float]:
    """(low, high) of a day's expected spend: the baseline's mean ± one standard deviation."""
    spread = baseline.stddev_daily_cost_cents or 0.0
    mean = baseline.avg_daily_cost_cents
    return max(mean - spread, 0.0), mean + spread


# complexity: daily and hourly windows take their expected band from different baselines; one loop
# zero-fills and stacks both
def chart_buckets(
    *, tenant: Tenant, window: StatisticsWindow, statistics: dict, group_by: str
) -> tuple[list[Bucket], list[str], str]:
    """The window's buckets (zero-filled) stacked by model or feature, with the expected band."""
    stack_keys, folded = _stack_keys(statistics, group_by)
    coverage = statistics_coverage(tenant=tenant, window=window)
    segments: dict[datetime, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for bucket, dimension, key, spend in cost_breakdown_series(
        tenant=tenant, window=window, coverage=coverage
    ):
        if dimension != group_by or spend is None:  # None: only unpriced records
            continue
        key = UNTAGGED if key is None and dimension == "feature" else key
        segments[bucket][OTHER if key in folded else key] += spend
    # The bucket totals are the API's series points; the segments only split them.
    totals = {point["ts"]: point["spend_cents"] for point in statistics["series"]}

    starts = bucket_starts(window)
    if window.resolution == DAY:
        baselines = baselines_by_day(tenant=tenant, days=[start.date() for start in starts])
        band_source = (
            f"the {BASELINE_WINDOW_DAYS}-day baseline of each day: its mean ± one standard "
            "deviation of the daily spend over the seven days before"
        )
    else:
        hourly = {
            hour: (b7, b30)
            for hour, b7, b30 in hourly_tenant_baselines(
                tenant=tenant, start=window.start, end=window.end
            )
        }
        band_source = (
            "each hour's baselines: the mean of the same hour over the previous 7 days (line) "
            "and between it and the 30-day mean (band)"
        )

    buckets = []
    for start in starts:
        total = totals.get(bucket_label(start, window.resolution), Decimal(0))
        expected = band = None
        if window.resolution == DAY:
            baseline = baselines.get(start.date())
            if baseline is not None:
                expected, band = baseline.avg_daily_cost_cents, baseline_band(baseline)
        else:
            b7, b30 = hourly.get(start, (None, None))
            if b7 is not None:
                expected = b7
                other = b30 if b30 is not None else b7
                band = (min(b7, other), max(b7, other))
        buckets.append(Bucket(start, total, dict(segments.get(start, {})), expected, band))
    return buckets, stack_keys, band_source


def chart_markers(
    *, tenant: Tenant, window: StatisticsWindow, buckets: list[Bucket]
) -> list[Marker]:
    if not buckets:
        return []
    first_day, last_day = buckets[0].start.date(), buckets[-1].start.date()
    index_of_day: dict[date, int] = {}
    for index, bucket in enumerate(buckets):
        index_of_day.setdefault(bucket.start.date(), index)
    markers = []
    for incident in incidents_touching(tenant=tenant, first_day=first_day, last_day=last_day):
        day = max(incident.started_on, first_day)
        markers.append(Marker(incident, index_of_day.get(day, 0)))
    return markers


# --- Movers, budgets, incidents --------------------------------------------------------------


def top_movers(*, tenant: Tenant, window: StatisticsWindow) -> dict[str, list[dict]]:
    """Per entity type, the entities whose spend rose most above their baselines."""
    movers: dict[str, list[dict]] = {"user": [], "feature": [], "model": []}
    for entity_type, entity_id, actual, expected, days in entity_movers(
        tenant=tenant, start=window.start, end=window.end, limit=MOVERS_PER_TYPE
    ):
        movers[entity_type].append(
            {
                "entity_id": entity_id,
                "actual_cents": actual,
                "expected_cents": expected,
                "increase_cents": actual - expected,
                "increase_pct": (actual - expected) / expected * 100 if expected > 0 else None,
                "days": days,
            }
        )
    return movers


def budget_gauges(*, tenant: Tenant, now: datetime) -> list[dict]:
    """Active budgets with the status of each period that has a limit (the status endpoint's
    numbers at `now`)."""
    gauges = []
    for budget in budget_list(tenant=tenant).filter(is_active=True).order_by("id")[:BUDGETS_SHOWN]:
        periods = []
        for period in (BudgetPeriod.DAILY, BudgetPeriod.MONTHLY):
            status = budget_period_status(budget=budget, period=period, at=now)
            if status is not None:
                periods.append({"period": period, **status})
        gauges.append({"budget": budget, "periods": periods})
    return gauges


def incident_summary(*, tenant: Tenant) -> tuple[list[Incident], dict[str, int]]:
    """The open and acknowledged incidents to show (most severe, newest first) and how many
    there are of each severity."""
    queryset = incidents_needing_attention(tenant=tenant)
    counts: dict[str, int] = defaultdict(int)
    for severity in queryset.values_list("severity", flat=True):
        counts[severity] += 1
    return list(queryset[:OPEN_INCIDENTS_SHOWN]), dict(counts)


# --- The whole page ------------------------------------------------------------------------


def overview_build(
    *, tenant: Tenant, window: StatisticsWindow, group_by: str, now: datetime
) -> Overview:
    """Everything the overview shows for one tenant and range."""
    if group_by not in GROUPINGS:
        raise ValueError(f"unknown grouping: {group_by!r}")
    statistics = cost_statistics(tenant=tenant, window=window, now=now)
    buckets, stack_keys, band_source = chart_buckets(
        tenant=tenant, window=window, statistics=statistics, group_by=group_by
    )
    incidents, counts = incident_summary(tenant=tenant)
    return Overview(
        tenant=tenant,
        window=window,
        group_by=group_by,
        statistics=statistics,
        buckets=buckets,
        stack_keys=stack_keys,
        markers=chart_markers(tenant=tenant, window=window, buckets=buckets),
        band_source=band_source,
        headline=spend_headline(tenant=tenant, now=now),
        movers=top_movers(tenant=tenant, window=window),
        budgets=budget_gauges(tenant=tenant, now=now),
        incidents=incidents,
        incident_counts=counts,
    )
