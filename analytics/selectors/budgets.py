"""Budget spend, usage and burn-down ETA (spec analytics §5).

Shared by the budget status endpoint and the budget rules of anomaly detection, so both
report the same numbers for the same instant.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import F, Q, QuerySet, Sum, Window
from django.db.models.expressions import RowRange

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
    period_start, period_end = budget_period_bounds(period=period, at=at)
    spend = budget_spend(budget=budget, start=period_start, end=at)
    return {
        "spend_cents": spend,
        "limit_cents": limit,
        "usage_pct": round(float(spend) / limit * 100, 2),
        "eta_exhausted_at": budget_period_eta(
            budget=budget, period=period, at=at, spend=spend, limit=limit
        ),
    }


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
