"""Budget reservations: set budget aside before a call, atomically across processes.

A reservation is checked against every active budget whose scope the call falls in: the
tenant's, the feature's and the user's (a user inside a feature counts against both), each
for its current UTC day and month. Hard budgets (`hard_limit_enabled`) refuse a reservation
that would take spend + held reservations past the limit; soft ones allow it and say that
the warning threshold or the limit is passed.

Atomicity: the applicable budget rows are locked (`FOR NO KEY UPDATE`, in id order so two
reservations never wait on each other in a cycle) before spend and held reservations are
read, in a second statement. Under READ COMMITTED that statement's snapshot is taken after
the lock is granted, so it sees every reservation committed by whoever held the lock
before; a single statement would not (it keeps the snapshot it started with, even after
waiting for the lock). Reservations of the same budget therefore queue for a few
milliseconds each; reservations that share no budget do not wait for each other.

Settlement needs no write on the ingest path: a reservation whose request_id or run_id
appears on a cost record stops holding budget in every read (its actual cost is in the
spend from then on). The expiry job (`reservations_close_lapsed`) then records what reads
already assume: settled, or expired after its TTL.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import BudgetPeriod, BudgetReservation, Tenant
from analytics.selectors.budgets import budgets_usage

# The budgets a call falls in: the tenant's, and those of its feature and its user. Locked
# in id order (see the module docstring); NO KEY UPDATE leaves foreign-key checks of
# anomalies pointing at a budget free to proceed.
_LOCK_BUDGETS_SQL = """
SELECT id, budget_type, entity_id, daily_limit_cents, monthly_limit_cents,
       warn_threshold_pct, hard_limit_enabled
FROM analytics_budget
WHERE tenant_id = %(tenant_id)s AND is_active
  AND (budget_type = 'tenant'
       OR (budget_type = 'feature' AND entity_id = %(feature_tag)s)
       OR (budget_type = 'user' AND entity_id = %(user_id)s))
ORDER BY id
FOR NO KEY UPDATE
"""

# A reservation that is still open in the table but whose call has cost records.
_HAS_RECORDS = """
EXISTS (SELECT 1 FROM analytics_costrecord c
        WHERE c.tenant_id = v.tenant_id AND c.request_id = v.request_id)
OR EXISTS (SELECT 1 FROM analytics_costrecord c
           WHERE c.tenant_id = v.tenant_id AND c.run_id = v.run_id)
"""

# Rows are claimed in id order with SKIP LOCKED: two jobs side by side (or a job and a
# release) never wait on each other, and a row one of them skipped is the other's.
_CLOSE_LAPSED_SQL = f"""
WITH lapsed AS (
    SELECT v.id, CASE WHEN {_HAS_RECORDS} THEN 'settled' ELSE 'expired' END AS outcome
    FROM analytics_budgetreservation v
    WHERE v.status = 'open'
      AND (v.expires_at <= %(at)s OR {_HAS_RECORDS})
    ORDER BY v.id
    FOR UPDATE SKIP LOCKED
)
UPDATE analytics_budgetreservation v
SET status = lapsed.outcome, closed_at = %(at)s
FROM lapsed
WHERE v.id = lapsed.id
RETURNING v.status
"""

_RELEASE_SQL = f"""
UPDATE analytics_budgetreservation v
SET status = CASE WHEN {_HAS_RECORDS} THEN 'settled'
                  WHEN v.expires_at <= %(at)s THEN 'expired'
                  ELSE 'released' END,
    closed_at = %(at)s
WHERE v.id = %(id)s AND v.status = 'open'
"""


class CheckState:
    """How one budget period judges a reservation."""

    OK = "ok"
    WARNING = "warning"  # the warning threshold is reached with this reservation
    OVER_LIMIT = "over_limit"  # a soft budget past its limit: allowed, reported
    REFUSED = "refused"  # a hard budget this reservation would take past its limit


@dataclass(frozen=True)
class BudgetCheck:
    """One budget period as the reservation left it (or would have, when refused)."""

    budget_id: int
    budget_type: str
    entity_id: str | None
    period: str
    hard_limit_enabled: bool
    warn_threshold_pct: int
    limit_cents: int
    spend_cents: Decimal
    # Held by other open reservations, this one excluded.
    reserved_cents: int
    # limit − spend − reserved − this reservation when allowed; negative once over.
    remaining_cents: Decimal
    state: str
    reason: str | None


@dataclass(frozen=True)
class ReservationOutcome:
    allowed: bool
    amount_cents: int
    reservation: BudgetReservation | None
    checks: list[BudgetCheck]

    @property
    def refusals(self) -> list[BudgetCheck]:
        return [check for check in self.checks if check.state == CheckState.REFUSED]


def _scope(budget_type: str, entity_id: str | None) -> str:
    return "tenant" if entity_id is None else f"{budget_type} '{entity_id}'"


def budget_period_check(
    *,
    budget: dict,
    period: str,
    limit: int,
    spend: Decimal,
    reserved: int,
    amount: int,
) -> tuple[str, str | None]:
    """The state of one budget period for a reservation of `amount` cents, and why."""
    after = spend + reserved + amount
    scope = _scope(budget["budget_type"], budget["entity_id"])
    if after > limit:
        over = (
            f"{period} limit of {limit} cents for {scope}: spend {spend} + reserved "
            f"{reserved} + {amount} requested = {after}"
        )
        if budget["hard_limit_enabled"]:
            return CheckState.REFUSED, f"would exceed the hard {over}"
        return CheckState.OVER_LIMIT, f"exceeds the soft {over}"
    if after * 100 >= limit * budget["warn_threshold_pct"]:
        return CheckState.WARNING, (
            f"{period} usage of {scope} reaches {float(after) / limit * 100:.1f}% "
            f"(warning at {budget['warn_threshold_pct']}%)"
        )
    return CheckState.OK, None


@transaction.atomic
def budget_reserve(
    *,
    tenant: Tenant,
    amount_cents: int,
    ttl_seconds: int,
    feature_tag: str | None = None,
    user_id: str | None = None,
    request_id: str | None = None,
    run_id: str | None = None,
    source: str = BudgetReservation.Source.AMOUNT,
) -> ReservationOutcome:
    """Reserve `amount_cents` for the call identified by `request_id`/`run_id`.

    Allowed unless a hard budget the call falls in would go past a limit; then nothing is
    written. Three statements whatever the number of budgets: lock them, read their spend
    and held reservations, insert the reservation.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _LOCK_BUDGETS_SQL,
            {"tenant_id": tenant.pk, "feature_tag": feature_tag, "user_id": user_id},
        )
        columns = [column.name for column in cursor.description]
        budgets = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    # Read the clock once the locks are held: every reservation committed before is then
    # both visible and no younger than `at`.
    at = timezone.now()
    usage = budgets_usage(budget_ids=[budget["id"] for budget in budgets], at=at)

    judged = []
    for budget in budgets:
        used = usage[budget["id"]]
        for period, limit in (
            (BudgetPeriod.DAILY, budget["daily_limit_cents"]),
            (BudgetPeriod.MONTHLY, budget["monthly_limit_cents"]),
        ):
            if limit is None:
                continue
            spend = used.spend(period)
            state, reason = budget_period_check(
                budget=budget,
                period=str(period),
                limit=limit,
                spend=spend,
                reserved=used.reserved_cents,
                amount=amount_cents,
            )
            judged.append((budget, str(period), limit, spend, used.reserved_cents, state, reason))
    allowed = all(item[5] != CheckState.REFUSED for item in judged)

    checks = [
        BudgetCheck(
            budget_id=budget["id"],
            budget_type=budget["budget_type"],
            entity_id=budget["entity_id"],
            period=period,
            hard_limit_enabled=budget["hard_limit_enabled"],
            warn_threshold_pct=budget["warn_threshold_pct"],
            limit_cents=limit,
            spend_cents=spend,
            reserved_cents=reserved,
            remaining_cents=limit - spend - reserved - (amount_cents if allowed else 0),
            state=state,
            reason=reason,
        )
        for budget, period, limit, spend, reserved, state, reason in judged
    ]
    reservation = None
    if allowed:
        reservation = BudgetReservation(
            tenant=tenant,
            amount_cents=amount_cents,
            source=source,
            feature_tag=feature_tag,
            user_id=user_id,
            request_id=request_id,
            run_id=run_id,
            created_at=at,
            expires_at=at + timedelta(seconds=ttl_seconds),
        )
        # Field validators only: the constraints are the database's, and checking them
        # here would cost queries on the path every agent run goes through.
        reservation.full_clean(
            exclude=["tenant"], validate_unique=False, validate_constraints=False
        )
        reservation.save(force_insert=True)
    return ReservationOutcome(
        allowed=allowed, amount_cents=amount_cents, reservation=reservation, checks=checks
    )


@transaction.atomic
def reservation_release(
    *, reservation: BudgetReservation, at: datetime | None = None
) -> BudgetReservation:
    """Hand an open reservation's budget back; return it as it now is.

    A reservation whose call already has cost records is settled rather than released, and
    one past its TTL expired; a reservation no longer open is left as it was, so releasing
    twice is harmless.
    """
    at = at or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, {"id": reservation.pk, "at": at})
    reservation.refresh_from_db(fields=["status", "closed_at"])
    return reservation


@dataclass(frozen=True)
class LapsedReport:
    settled: int
    expired: int

    def as_dict(self) -> dict:
        return {"settled": self.settled, "expired": self.expired}


@transaction.atomic
def reservations_close_lapsed(*, at: datetime | None = None) -> LapsedReport:
    """Mark open reservations whose call has cost records settled, and those past their
    TTL expired, across every tenant in one statement. Safe to run twice or side by side.
    """
    at = at or timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(_CLOSE_LAPSED_SQL, {"at": at})
        outcomes = [row[0] for row in cursor.fetchall()]
    return LapsedReport(
        settled=outcomes.count(BudgetReservation.Status.SETTLED),
        expired=outcomes.count(BudgetReservation.Status.EXPIRED),
    )
