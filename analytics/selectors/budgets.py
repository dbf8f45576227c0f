"""Budget spend, reservations, usage and burn-down ETA.

Shared by the budget status endpoint, the reserve check and the budget rules of anomaly
detection, so all three report the same spend for the same instant.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.db.models import F, Q, QuerySet, Sum, Window
from django.db.models.expressions import RowRange

from analytics.db import read_connection
from analytics.models import Budget, BudgetPeriod, BudgetType, CostRecord

# Too little elapsed time makes the burn rate meaningless (one early request would predict
# exhaustion within minutes), so no ETA is given before this much of the period has passed.
MIN_ELAPSED = {
    BudgetPeriod.DAILY: timedelta(hours=1),
    BudgetPeriod.MONTHLY: timedelta(days=3),
}
_ONE_MICROSECOND = timedelta(microseconds=1)


def budget_period_bounds(*, period: str, at: datetime) -> tuple[datetime, datetime]:
    """`[start, end)` of the UTC day or month containing `at`."""
    at = at.astimezone(UTC)
    day_start = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == BudgetPeriod.DAILY:
        return day_start, day_start + timedelta(days=1)
    if period == BudgetPeriod.MONTHLY:
        month_start = day_start.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        return month_start, next_month
    raise ValueError(f"unknown budget period: {period!r}")


def budget_limit(*, budget: Budget, period: str) -> int | None:
    if period == BudgetPeriod.DAILY:
        return budget.daily_limit_cents
    if period == BudgetPeriod.MONTHLY:
        return budget.monthly_limit_cents
    raise ValueError(f"unknown budget period: {period!r}")


def budget_scope_filter(*, budget: Budget) -> Q:
    """Which of the tenant's cost records count against the budget."""
    if budget.budget_type == BudgetType.FEATURE:
        return Q(feature_tag=budget.entity_id)
    if budget.budget_type == BudgetType.USER:
        return Q(user_id=budget.entity_id)
    return Q()


# The spend of budget `b` in its scope, as one LATERAL subquery: `spend.day_spend` and
# `spend.month_spend`, exact Decimal cents of the records with `created_at` in
# [day_start, until) and [month_start, until). The budget status, the reserve check and the
# budget rules of detection all read spend through it, so they agree on what was spent.
#
# Hours that have a complete, non-stale hourly snapshot are read from its aggregate of the
# budget's scope (one row per hour). The other whole hours before `until` are read from the
# hourly rollups of cost records (one row per feature, user and model of the hour in scope),
# which the database keeps in the statement that writes a record; ingest marks a snapshot
# stale in the transaction that adds a record to its hour. So both always add up to the sum
# of the records, and a month costs at most ~744 aggregate rows plus the rollup rows of the
# uncovered hours, however many records the open hours hold. Hourly snapshots start on the
# hour, so a snapshot counts for the day exactly when its period_start is on or after
# day_start, and so does a rollup hour.
#
# `until` inside an hour leaves that hour partial. It is read from the records of
# [hour start, until), or as the hour's rollups minus the records of [until, hour end),
# whichever spans less time before now(): for `until` = now the second reads the records of
# the rest of the current hour, which has none yet, instead of every record of the hour so
# far. Both give the same exact sum.
#
# One record branch per budget type, each gated on `b.budget_type` (a one-time filter, so
# only one runs), lets each scope use its own (tenant, scope, created_at) index.
BUDGET_SPEND_LATERAL = """
CROSS JOIN LATERAL (
    WITH cover AS (
        SELECT s.id, s.period_start, s.period_end
        FROM analytics_costsnapshot s
        WHERE s.tenant_id = b.tenant_id AND s.snapshot_type = 'hourly'
          AND s.status = 'complete' AND NOT s.is_stale
          AND s.period_start >= %(month_start)s AND s.period_end <= %(until)s
    ),
    edge AS (
        SELECT hour_start, hour_start + interval '1 hour' AS hour_end,
               hour_start < %(until)s
               AND GREATEST(LEAST(hour_start + interval '1 hour', now()) - %(until)s,
                            interval '0')
                   < LEAST(%(until)s, now()) - hour_start AS by_rollup
        FROM (SELECT date_trunc('hour', %(until)s, 'UTC') AS hour_start) h
    ),
    gaps AS (
        SELECT lo, hi FROM (
            SELECT COALESCE(lag(period_end) OVER (ORDER BY period_start), %(month_start)s)
                       AS lo,
                   period_start AS hi
            FROM cover
            UNION ALL
            SELECT COALESCE(max(period_end), %(month_start)s), %(until)s FROM cover
        ) g
        WHERE lo < hi
    ),
    -- whole uncovered hours; the partial hour too when it is read by_rollup
    rollup_hours AS (
        SELECT g.lo, LEAST(g.hi, e.hour_start) AS hi FROM gaps g, edge e
        UNION ALL
        SELECT hour_start, hour_end FROM edge WHERE by_rollup
    ),
    -- records added (sign 1) or subtracted (sign -1) for the partial hour
    record_ranges AS (
        SELECT hour_start AS lo, %(until)s AS hi, 1 AS sign
        FROM edge WHERE hour_start < %(until)s AND NOT by_rollup
        UNION ALL
        SELECT %(until)s, hour_end, -1 FROM edge WHERE by_rollup
    ),
    parts AS (
        SELECT a.total_cost_cents AS cents, c.period_start AS at, a.unpriced_records AS unpriced
        FROM cover c
        JOIN analytics_snapshotaggregate a
          ON a.snapshot_id = c.id AND a.entity_type = b.budget_type
         AND (a.entity_id = b.entity_id OR (a.entity_id IS NULL AND b.entity_id IS NULL))
        UNION ALL
        SELECT u.spend_cents, u.hour, u.unpriced_records
        FROM rollup_hours g
        CROSS JOIN LATERAL (
            -- one range scan of costrollup_key per range: OFFSET 0 keeps the planner from
            -- flattening this into a join that reads every rollup row of the tenant
            SELECT spend_cents, hour, unpriced_records FROM analytics_costrollup
            WHERE tenant_id = b.tenant_id AND hour >= g.lo AND hour < g.hi
              AND CASE b.budget_type
                      WHEN 'feature' THEN feature_tag = b.entity_id
                      WHEN 'user' THEN user_id = b.entity_id
                      ELSE TRUE
                  END
            OFFSET 0
        ) u
        UNION ALL
        SELECT g.sign * r.cost_cents, r.created_at, g.sign * (r.cost_cents IS NULL)::int
        FROM record_ranges g
        CROSS JOIN LATERAL (
            SELECT cost_cents, created_at FROM analytics_costrecord
            WHERE b.budget_type = 'tenant' AND tenant_id = b.tenant_id
              AND created_at >= g.lo AND created_at < g.hi
            UNION ALL
            SELECT cost_cents, created_at FROM analytics_costrecord
            WHERE b.budget_type = 'feature' AND tenant_id = b.tenant_id
              AND feature_tag = b.entity_id AND created_at >= g.lo AND created_at < g.hi
            UNION ALL
            SELECT cost_cents, created_at FROM analytics_costrecord
            WHERE b.budget_type = 'user' AND tenant_id = b.tenant_id
              AND user_id = b.entity_id AND created_at >= g.lo AND created_at < g.hi
        ) r
    )
    SELECT COALESCE(SUM(cents) FILTER (WHERE at >= %(day_start)s), 0) AS day_spend,
           COALESCE(SUM(cents), 0) AS month_spend,
           -- records without a cost (unknown model): left out of the spend, counted here
           COALESCE(SUM(unpriced) FILTER (WHERE at >= %(day_start)s), 0) AS day_unpriced,
           COALESCE(SUM(unpriced), 0) AS month_unpriced
    FROM parts
) spend"""

# The cost records `c` that settle reservation `v` (with its request_id or run_id): those
# created from a day before the reservation to a day after its TTL. A call starts after its
# reservation, and a TTL is at most a day, so this covers its records with a day's margin
# for client clocks; a record outside it (a request_id reused long after) leaves the
# reservation holding until its TTL, the safe side of a limit. The bound lets a probe read
# the partitions of one or two months instead of every month's.
RESERVATION_RECORDS_MARGIN = timedelta(days=1)
_MARGIN = f"interval '{RESERVATION_RECORDS_MARGIN.days} day'"
RESERVATION_RECORDS_WINDOW = f"""c.created_at >= v.created_at - {_MARGIN}
            AND c.created_at < v.expires_at + {_MARGIN}"""

# The cents held by open reservations in the scope of budget `b` at %(until)s, as one
# LATERAL subquery: `held.reserved_cents`. A reservation holds budget while it is open,
# unexpired and no cost record carries its request_id or run_id yet (once one does, the
# records' cost is in the spend instead). The expiry job writes those outcomes later; this
# reads them as they are, so a reservation is never counted as both held and spent.
# Reservations are not limited to the current period: the spend they stand for has not
# happened yet, so it lands in the current period or a later one.
BUDGET_HELD_LATERAL = f"""
CROSS JOIN LATERAL (
    SELECT COALESCE(SUM(v.amount_cents), 0) AS reserved_cents
    FROM analytics_budgetreservation v
    WHERE v.tenant_id = b.tenant_id AND v.status = 'open' AND v.expires_at > %(until)s
      AND CASE b.budget_type
              WHEN 'feature' THEN v.feature_tag = b.entity_id
              WHEN 'user' THEN v.user_id = b.entity_id
              ELSE TRUE
          END
      AND NOT EXISTS (
          SELECT 1 FROM analytics_costrecord c
          WHERE c.tenant_id = v.tenant_id AND c.request_id = v.request_id
            AND {RESERVATION_RECORDS_WINDOW})
      AND NOT EXISTS (
          SELECT 1 FROM analytics_costrecord c
          WHERE c.tenant_id = v.tenant_id AND c.run_id = v.run_id
            AND {RESERVATION_RECORDS_WINDOW})
) held"""

_BUDGETS_SPEND_SQL = f"""
SELECT b.id, spend.day_spend, spend.month_spend, held.reserved_cents, spend.day_unpriced,
       spend.month_unpriced
FROM analytics_budget b
{BUDGET_SPEND_LATERAL}
{BUDGET_HELD_LATERAL}
WHERE b.id = ANY(%(ids)s)
"""


class BudgetUsage(NamedTuple):
    """What a budget has used at an instant: Decimal spend of its current UTC day and
    month, and the integer cents its open reservations hold."""

    day_spend: Decimal
    month_spend: Decimal
    reserved_cents: int
    day_unpriced: int = 0
    month_unpriced: int = 0

    def spend(self, period: str) -> Decimal:
        return self.day_spend if period == BudgetPeriod.DAILY else self.month_spend

    def unpriced(self, period: str) -> int:
        """Records of the period stored without a cost, which the spend leaves out."""
        return self.day_unpriced if period == BudgetPeriod.DAILY else self.month_unpriced


def budget_spend_params(*, at: datetime) -> dict:
    """The parameters of BUDGET_SPEND_LATERAL and BUDGET_HELD_LATERAL for instant `at`."""
    day_start, _ = budget_period_bounds(period=BudgetPeriod.DAILY, at=at)
    month_start, _ = budget_period_bounds(period=BudgetPeriod.MONTHLY, at=at)
    return {"day_start": day_start, "month_start": month_start, "until": at}


def budgets_usage(*, budget_ids: list[int], at: datetime) -> dict[int, BudgetUsage]:
    """Spend up to `at` in the current day and month, and reserved cents, of each budget;
    one query whatever the number of budgets."""
    if not budget_ids:
        return {}
    with read_connection().cursor() as cursor:
        cursor.execute(_BUDGETS_SPEND_SQL, {**budget_spend_params(at=at), "ids": list(budget_ids)})
        rows = cursor.fetchall()
    return {row[0]: BudgetUsage(row[1], row[2], int(row[3]), row[4], row[5]) for row in rows}


def budget_records(*, budget: Budget, start: datetime, end: datetime) -> QuerySet[CostRecord]:
    """The cost records in the budget's scope with `created_at` in `[start, end)`."""
    return CostRecord.objects.filter(
        budget_scope_filter(budget=budget),
        tenant_id=budget.tenant_id,
        created_at__gte=start,
        created_at__lt=end,
    )


def budget_spend(*, budget: Budget, start: datetime, end: datetime) -> Decimal:
    """Exact Σ cost_cents in the budget's scope over `[start, end)`; 0 when nothing matches."""
    total = budget_records(budget=budget, start=start, end=end).aggregate(total=Sum("cost_cents"))[
        "total"
    ]
    return total if total is not None else Decimal(0)


def budget_exhausted_at(
    *, budget: Budget, start: datetime, end: datetime, limit: int
) -> datetime | None:
    """`created_at` of the record at which the running spend over `[start, end)`, in
    (created_at, id) order, first reaches `limit`; None if it never does."""
    running = Window(
        Sum("cost_cents"),
        order_by=[F("created_at").asc(), F("id").asc()],
        frame=RowRange(start=None, end=0),
    )
    return (
        budget_records(budget=budget, start=start, end=end)
        .annotate(running_cents=running)
        .filter(running_cents__gte=limit)
        .order_by("created_at", "id")
        .values_list("created_at", flat=True)
        .first()
    )


def budget_period_status(*, budget: Budget, period: str, at: datetime) -> dict | None:
    """Spend, usage and burn-down ETA of one period at instant `at`; None without a limit.

    Returns `{spend_cents: Decimal, limit_cents: int, usage_pct: float,
    eta_exhausted_at: datetime | None}` where spend covers `[period start, at)`.
    """
    limit = budget_limit(budget=budget, period=period)
    if limit is None:
        return None
    spend = budgets_usage(budget_ids=[budget.pk], at=at)[budget.pk].spend(period)
    return {
        "spend_cents": spend,
        "limit_cents": limit,
        "usage_pct": round(float(spend) / limit * 100, 2),
        "eta_exhausted_at": budget_period_eta(
            budget=budget, period=period, at=at, spend=spend, limit=limit
        ),
    }


def budget_status(*, budget: Budget, at: datetime) -> dict:
    """The budget's current UTC day and month at `at`: `{"daily": ..., "monthly": ...}`,
    each None without a limit, else `{spend_cents: Decimal, reserved_cents: int,
    available_cents: Decimal, limit_cents: int, usage_pct: float,
    eta_exhausted_at: datetime | None}`.

    Spend covers `[period start, at)`; reserved is what open reservations hold;
    available = limit − spend − reserved, negative once the period is over its limit.
    `usage_pct` and the ETA are about spend alone. One query plus the ETA's.
    """
    usage = budgets_usage(budget_ids=[budget.pk], at=at)[budget.pk]
    body: dict = {}
    for period in (BudgetPeriod.DAILY, BudgetPeriod.MONTHLY):
        limit = budget_limit(budget=budget, period=period)
        if limit is None:
            body[str(period)] = None
            continue
        spend = usage.spend(period)
        body[str(period)] = {
            "spend_cents": spend,
            "reserved_cents": usage.reserved_cents,
            "available_cents": limit - spend - usage.reserved_cents,
            "limit_cents": limit,
            "usage_pct": round(float(spend) / limit * 100, 2),
            "eta_exhausted_at": budget_period_eta(
                budget=budget, period=period, at=at, spend=spend, limit=limit
            ),
            "unpriced_records": usage.unpriced(period),
        }
    return body


def budget_period_eta(
    *, budget: Budget, period: str, at: datetime, spend: Decimal, limit: int
) -> datetime | None:
    """The burn-down ETA of the period containing `at`, for a spend already summed over
    `[period start, at)` (what `budget_period_status` would read again)."""
    period_start, period_end = budget_period_bounds(period=period, at=at)
    return _eta(
        budget=budget,
        period=period,
        at=at,
        period_start=period_start,
        period_end=period_end,
        spend=spend,
        limit=limit,
    )


def _eta(
    *,
    budget: Budget,
    period: str,
    at: datetime,
    period_start: datetime,
    period_end: datetime,
    spend: Decimal,
    limit: int,
) -> datetime | None:
    if spend >= limit:
        return budget_exhausted_at(budget=budget, start=period_start, end=at, limit=limit)
    if spend == 0:
        return None
    elapsed = at - period_start
    if elapsed < MIN_ELAPSED[period]:
        return None
    # Linear burn-down in exact decimal microseconds: eta = at + (L − S) / (S / elapsed).
    remaining_us = Decimal(elapsed // _ONE_MICROSECOND) * (limit - spend) / spend
    eta = at + timedelta(microseconds=int(remaining_us))
    if eta >= period_end:
        return None
    return eta.astimezone(UTC).replace(microsecond=0)
