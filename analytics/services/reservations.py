"""Budget reservations: set budget aside before a call, atomically across processes.

A reservation is checked against every active budget whose scope the call falls in: the
tenant's, the feature's and the user's (a user inside a feature counts against both), each
for its current UTC day and month. Hard budgets (`hard_limit_enabled`) refuse a reservation
that would take spend + held reservations past the limit; soft ones allow it and say that
the warning threshold or the limit is passed.

Atomicity: the applicable budget rows are locked (`FOR NO KEY UPDATE`, in id order so two
reservations never wait on each other in a cycle) before spend and held reservations are
read, in a later statement of the same transaction. Under READ COMMITTED each statement
takes its snapshot when it starts, so that read sees every reservation committed by
whoever held the lock before; a single statement would not (it keeps the snapshot it
started with, even after waiting for the lock). The hard-limit test and the INSERT are in
that same later statement, so nothing Python decides can come between the read and the
write. Reservations of the same budget therefore queue for the time those statements take;
reservations that share no budget do not wait for each other.

One round trip: the statements travel as one batch (a multi-statement query, which
PostgreSQL runs as one implicit transaction, each statement with its own snapshot) and the
transaction commits on the server as soon as the last one ends, so the budget locks are
never held while Python runs or the network answers. The statements are prepared once per
database session (analytics/prepared.py) and executed with their generic plans: planning
them over the partitioned cost records costs more than running them. Outside a transaction
the commit is asynchronous unless BUDGET_RESERVE_SYNCHRONOUS_COMMIT is set: the locks are
released before the WAL flush instead of after it. Other sessions see a reservation once it
commits either way, so the limit holds exactly under concurrency; what asynchronous commit
gives up is durability across a crash of the database server itself, which can lose the
reservations acknowledged in its last ~0.6 s (3 × wal_writer_delay). Those calls then run
without a hold, and their cost records still count as spend once they arrive.

Retries: a reserve whose call (request_id, else run_id) already has an open reservation
answers that reservation (`replayed`) instead of holding twice; a unique index on open
reservations per call makes two concurrent retries meet. A retry that differs from the
reservation in amount or attribution is a conflict.

Settlement needs no write on the ingest path: a reservation whose request_id or run_id
appears on a cost record created within a day of its life stops holding budget in every
read (its actual cost is in the spend from then on). The expiry job
(`reservations_close_lapsed`) then records what reads already assume: settled, or expired
after its TTL.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics.errors import Conflict
from analytics.models import BudgetPeriod, BudgetReservation, Tenant
from analytics.prepared import (
    PreparedStatement,
    prepared_statement,
    session_prepared,
    session_prepared_unknown,
)
from analytics.selectors.budgets import (
    BUDGET_SPEND_LATERAL,
    RESERVATION_RECORDS_WINDOW,
    budget_spend_params,
)

# The budgets a call falls in: the tenant's, and those of its feature and its user.
_APPLIES = """
b.tenant_id = %(tenant_id)s AND b.is_active
AND (b.budget_type = 'tenant'
     OR (b.budget_type = 'feature' AND b.entity_id = %(feature_tag)s)
     OR (b.budget_type = 'user' AND b.entity_id = %(user_id)s))
"""

# Locked in id order (see the module docstring); NO KEY UPDATE leaves foreign-key checks of
# anomalies pointing at a budget free to proceed.
_LOCK_BUDGETS_SQL = f"""
SELECT count(*) FROM (
    SELECT b.id FROM analytics_budget b WHERE {_APPLIES} ORDER BY b.id FOR NO KEY UPDATE
) locked
"""

# A reservation that is still open in the table but whose call has cost records.
# Only records created within a day of the reservation's life count (see
# RESERVATION_RECORDS_WINDOW): the bound lets each probe skip the other months' partitions.
_HAS_RECORDS = f"""
EXISTS (SELECT 1 FROM analytics_costrecord c
        WHERE c.tenant_id = v.tenant_id AND c.request_id = v.request_id
          AND {RESERVATION_RECORDS_WINDOW})
OR EXISTS (SELECT 1 FROM analytics_costrecord c
           WHERE c.tenant_id = v.tenant_id AND c.run_id = v.run_id
             AND {RESERVATION_RECORDS_WINDOW})
"""

# Whether the API key generation is still the one under which the caller's key was cached
# (always true without one): the reserve and release statements check it before they write
# or answer, saving the request the round trip of checking it first (see KeyGenerationMoved).
_KEY_OK = """(%(key_generation)s::bigint IS NULL
 OR %(key_generation)s::bigint = (SELECT g.value FROM analytics_apikey_generation g
                                  WHERE g.id = 1))"""

# The call a reservation is for, as the unique indexes on open reservations define it.
_SAME_CALL = {
    "request": "v.request_id = %(request_id)s",
    "run": "v.request_id IS NULL AND v.run_id = %(run_id)s",
}

# An open row of the call that no longer holds (past its TTL, or settled by records) would
# stand in the unique index's way: record its outcome first, as the expiry job would.
_CLOSE_LAPSED_OF_CALL_SQL = f"""
UPDATE analytics_budgetreservation v
SET status = CASE WHEN {_HAS_RECORDS} THEN 'settled' ELSE 'expired' END, closed_at = %(until)s
WHERE v.tenant_id = %(tenant_id)s AND {{same_call}} AND v.status = 'open'
  AND (v.expires_at <= %(until)s OR {_HAS_RECORDS}) AND {_KEY_OK}
"""

# Spend and held reservations of every applicable budget, the call's open reservation if it
# has one, and the new reservation inserted only when there is none and no hard budget would
# pass a limit. ON CONFLICT: a concurrent retry of the same call, not serialised by a budget
# lock (no budget applies), inserted first; the caller then reads that one.
#
# The reservations that hold budget are found once for every applicable budget (a held
# reservation is one BUDGET_HELD_LATERAL counts: open, unexpired, no cost records of its
# call), then summed per budget: the probes of the cost records for each open reservation
# are made once, not once per budget. Only reservations some applicable budget can count
# are probed: all of the tenant's when its tenant budget applies, else those of the call's
# feature or user.
_RESERVE_SQL = f"""
WITH holding AS MATERIALIZED (
    SELECT v.amount_cents, v.feature_tag, v.user_id
    FROM analytics_budgetreservation v
    WHERE v.tenant_id = %(tenant_id)s AND v.status = 'open' AND v.expires_at > %(until)s
      AND (v.feature_tag = %(feature_tag)s OR v.user_id = %(user_id)s
           OR EXISTS (SELECT 1 FROM analytics_budget b
                      WHERE {_APPLIES} AND b.budget_type = 'tenant'))
      AND NOT ({_HAS_RECORDS})
),
usage AS MATERIALIZED (
    SELECT b.id, b.budget_type, b.entity_id, b.daily_limit_cents, b.monthly_limit_cents,
           b.warn_threshold_pct, b.hard_limit_enabled, spend.day_spend, spend.month_spend,
           (SELECT COALESCE(SUM(h.amount_cents), 0) FROM holding h
            WHERE CASE b.budget_type
                      WHEN 'feature' THEN h.feature_tag = b.entity_id
                      WHEN 'user' THEN h.user_id = b.entity_id
                      ELSE TRUE
                  END) AS reserved_cents
    FROM analytics_budget b
    {BUDGET_SPEND_LATERAL}
    WHERE {_APPLIES}
),
existing AS MATERIALIZED (
    SELECT v.id, v.amount_cents, v.feature_tag, v.user_id, v.request_id, v.run_id,
           v.expires_at
    FROM analytics_budgetreservation v
    WHERE v.tenant_id = %(tenant_id)s AND {{same_call}} AND v.status = 'open'
    ORDER BY v.id
    LIMIT 1
),
inserted AS (
    INSERT INTO analytics_budgetreservation
        (tenant_id, amount_cents, source, feature_tag, user_id, request_id, run_id, status,
         created_at, expires_at)
    SELECT %(tenant_id)s, %(amount_cents)s, %(source)s, %(feature_tag)s, %(user_id)s,
           %(request_id)s, %(run_id)s, 'open', %(until)s, %(expires_at)s
    WHERE {_KEY_OK}
      AND NOT EXISTS (SELECT 1 FROM existing)
      AND NOT EXISTS (
          SELECT 1 FROM usage u
          WHERE u.hard_limit_enabled
            AND (u.day_spend + u.reserved_cents + %(amount_cents)s > u.daily_limit_cents
                 OR u.month_spend + u.reserved_cents + %(amount_cents)s
                    > u.monthly_limit_cents))
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT {_KEY_OK}, (SELECT id FROM inserted), e.id, e.amount_cents, e.feature_tag, e.user_id,
       e.request_id, e.run_id, e.expires_at,
       u.id, u.budget_type, u.entity_id, u.daily_limit_cents, u.monthly_limit_cents,
       u.warn_threshold_pct, u.hard_limit_enabled, u.day_spend, u.month_spend,
       u.reserved_cents
FROM (SELECT 1) one
LEFT JOIN existing e ON TRUE
LEFT JOIN usage u ON TRUE
ORDER BY u.id
"""

_OPEN_OF_CALL_SQL = """
SELECT v.id, v.amount_cents, v.feature_tag, v.user_id, v.request_id, v.run_id, v.expires_at
FROM analytics_budgetreservation v
WHERE v.tenant_id = %(tenant_id)s AND {same_call} AND v.status = 'open'
ORDER BY v.id
LIMIT 1
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

# Close the reservation if it is open and answer it as it now is, in one statement: the
# UPDATE's row when it closed it, else the row as the statement's snapshot saw it, judged as
# reads judge it. A row that snapshot still saw open, unlapsed, but the UPDATE found closed
# was released by a concurrent release (nothing else closes an unlapsed one). One row
# always: the key check, then the reservation's columns (NULL when the tenant has no such
# reservation).
_RELEASE_SQL = f"""
WITH closed AS (
    UPDATE analytics_budgetreservation v
    SET status = CASE WHEN {_HAS_RECORDS} THEN 'settled'
                      WHEN v.expires_at <= %(at)s THEN 'expired'
                      ELSE 'released' END,
        closed_at = %(at)s
    WHERE v.id = %(id)s AND v.tenant_id = %(tenant_id)s AND v.status = 'open' AND {_KEY_OK}
    RETURNING v.*
),
answer AS (
    SELECT {{columns}}, v.status AS current_status FROM closed v
    UNION ALL
    SELECT {{columns}},
           CASE WHEN v.status <> 'open' THEN v.status
                WHEN {_HAS_RECORDS} THEN 'settled'
                WHEN v.expires_at <= %(at)s THEN 'expired'
                ELSE 'released' END
    FROM analytics_budgetreservation v
    WHERE v.id = %(id)s AND v.tenant_id = %(tenant_id)s AND NOT EXISTS (SELECT 1 FROM closed)
)
SELECT {_KEY_OK}, answer.* FROM (SELECT 1) one LEFT JOIN answer ON TRUE
"""
_RELEASE_COLUMNS = (
    "id",
    "tenant_id",
    "amount_cents",
    "source",
    "feature_tag",
    "user_id",
    "request_id",
    "run_id",
    "status",
    "created_at",
    "expires_at",
    "closed_at",
)
_RELEASE_SQL = _RELEASE_SQL.format(columns=", ".join(f"v.{name}" for name in _RELEASE_COLUMNS))


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
    # The call's open reservation answered again: nothing was written.
    replayed: bool = False

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


class KeyGenerationMoved(Exception):
    """The API key generation moved since the caller's key was cached; nothing was written
    or read for the caller. The caller checks the key again (it may have been revoked) and,
    if it is still usable, repeats the request without `key_generation`."""


class ReservationRetryConflict(Conflict):
    """A retried reserve that does not match the call's open reservation."""

    default_message = "The call already holds a reservation that differs from this one."


# The types of the statements' parameters, by name, for PREPARE: a parameter in a select
# list (the INSERT's) has no context to infer its type from.
_PARAM_TYPES = {
    "tenant_id": "bigint",
    "amount_cents": "bigint",
    "key_generation": "bigint",
    "id": "bigint",
    "source": "text",
    "feature_tag": "text",
    "user_id": "text",
    "request_id": "text",
    "run_id": "text",
    "day_start": "timestamptz",
    "month_start": "timestamptz",
    "until": "timestamptz",
    "expires_at": "timestamptz",
    "at": "timestamptz",
}


_LOCK = prepared_statement("costwise_reserve_lock", _LOCK_BUDGETS_SQL, _PARAM_TYPES)
_CALL_STATEMENTS = {
    call: (
        prepared_statement(
            f"costwise_reserve_close_{call}",
            _CLOSE_LAPSED_OF_CALL_SQL.format(same_call=same_call),
            _PARAM_TYPES,
        ),
        prepared_statement(
            f"costwise_reserve_{call}", _RESERVE_SQL.format(same_call=same_call), _PARAM_TYPES
        ),
        _OPEN_OF_CALL_SQL.format(same_call=same_call),
    )
    for call, same_call in _SAME_CALL.items()
}
_RELEASE = prepared_statement("costwise_reserve_release", _RELEASE_SQL, _PARAM_TYPES)


def _execute_batch(cursor, statements: list[PreparedStatement], params: dict) -> None:
    """Run `statements` as one batch (see the module docstring), preparing those this
    session has not prepared yet; the cursor is left on the last statement's rows."""
    prepared = session_prepared(cursor)
    batch = [statement.prepare for statement in statements if statement.name not in prepared]
    # Generic plans from the first execution: custom plans would be planned every time.
    batch.append("SET LOCAL plan_cache_mode = force_generic_plan")
    if not connection.in_atomic_block and not settings.BUDGET_RESERVE_SYNCHRONOUS_COMMIT:
        # Outside a transaction the batch is its own; inside a caller's, its commit (and
        # how durable it is) is the caller's to decide.
        batch.append("SET LOCAL synchronous_commit = off")
    batch += [statement.execute for statement in statements]
    try:
        cursor.execute(";\n".join(batch), params)
    except Exception:
        session_prepared_unknown()
        raise
    prepared.update(statement.name for statement in statements)
    while cursor.nextset():
        pass


@dataclass(frozen=True)
class _Held:
    """The call's open reservation as the reserve statement found it."""

    id: int
    amount_cents: int
    feature_tag: str | None
    user_id: str | None
    request_id: str | None
    run_id: str | None
    expires_at: datetime


# complexity: the reserved, refused, replayed and concurrent-retry outcomes of the one round trip
# are told apart here
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
    key_generation: int | None = None,
) -> ReservationOutcome:
    """Reserve `amount_cents` for the call identified by `request_id`/`run_id`.

    Allowed unless a hard budget the call falls in would go past a limit; then nothing is
    written. When the call already has an open reservation, that one is answered
    (`replayed`) and nothing is written; ReservationRetryConflict if it differs from this
    request in amount or attribution. One round trip whatever the number of budgets, in a
    transaction of its own (or in the caller's, when there is one). With `key_generation`,
    KeyGenerationMoved when the API key generation is no longer that.
    """
    # The clock is read before the round trip: reservations committed while this one waits
    # for the budget locks are counted whatever their created_at (a held reservation is
    # judged by expires_at > at, which a younger one passes too).
    at = timezone.now()
    params = {
        **budget_spend_params(at=at),
        "tenant_id": tenant.pk,
        "amount_cents": amount_cents,
        "source": str(source),
        "feature_tag": feature_tag,
        "user_id": user_id,
        "request_id": request_id,
        "run_id": run_id,
        "expires_at": at + timedelta(seconds=ttl_seconds),
        "key_generation": key_generation,
    }
    close_lapsed, reserve, open_of_call = _CALL_STATEMENTS[
        "request" if request_id is not None else "run"
    ]
    with connection.cursor() as cursor:
        _execute_batch(cursor, [_LOCK, close_lapsed, reserve], params)
        rows = cursor.fetchall()
        if not rows[0][0]:
            raise KeyGenerationMoved
        new_id, held = rows[0][1], _held(rows[0][2:9])
        budgets = [row[9:] for row in rows if row[9] is not None]
        if new_id is None and held is None and not _refused(budgets, amount_cents):
            # A concurrent retry of the call committed its reservation first.
            cursor.execute(open_of_call, params)
            held = _held(cursor.fetchone())
            if held is None:
                raise ReservationRetryConflict(
                    "a concurrent request for the same call changed its reservation; retry"
                )

    if held is not None:
        _check_retry(held, amount_cents, feature_tag, user_id, request_id, run_id, source)
        return _outcome(
            budgets=budgets,
            amount=held.amount_cents,
            allowed=True,
            # The call's own hold is in the held total; the checks show the others'.
            others_held=held.amount_cents,
            reservation=BudgetReservation(
                id=held.id,
                tenant=tenant,
                amount_cents=held.amount_cents,
                source=source,
                feature_tag=held.feature_tag,
                user_id=held.user_id,
                request_id=held.request_id,
                run_id=held.run_id,
                status=BudgetReservation.Status.OPEN,
                expires_at=held.expires_at,
            ),
            replayed=True,
        )
    reservation = None
    if new_id is not None:
        reservation = BudgetReservation(
            id=new_id,
            tenant=tenant,
            amount_cents=amount_cents,
            source=source,
            feature_tag=feature_tag,
            user_id=user_id,
            request_id=request_id,
            run_id=run_id,
            status=BudgetReservation.Status.OPEN,
            created_at=at,
            expires_at=params["expires_at"],
        )
        reservation._state.adding = False
    return _outcome(
        budgets=budgets,
        amount=amount_cents,
        allowed=new_id is not None,
        others_held=0,
        reservation=reservation,
        replayed=False,
    )


def _held(row) -> _Held | None:
    return None if row is None or row[0] is None else _Held(*row)


def _refused(budgets: list[tuple], amount: int) -> bool:
    """Whether a hard budget refuses `amount`, as the reserve statement judges it."""
    for _, _, _, daily, monthly, _, hard, day_spend, month_spend, reserved in budgets:
        if not hard:
            continue
        for limit, spent in ((daily, day_spend), (monthly, month_spend)):
            if limit is not None and spent + reserved + amount > limit:
                return True
    return False


def _check_retry(held: _Held, amount, feature_tag, user_id, request_id, run_id, source) -> None:
    asked = {
        "plan" if source == BudgetReservation.Source.PLAN else "amount_cents": (
            held.amount_cents,
            amount,
        ),
        "feature_tag": (held.feature_tag, feature_tag),
        "user_id": (held.user_id, user_id),
        "request_id": (held.request_id, request_id),
        "run_id": (held.run_id, run_id),
    }
    for field, (stored, sent) in asked.items():
        if stored != sent:
            call = request_id if request_id is not None else run_id
            raise ReservationRetryConflict(
                f"the call {call!r} already holds reservation {held.id} with a different "
                f"{field}; release it first or send the same request",
                field_errors=[
                    {
                        "field": field,
                        "reason": f"differs from the open reservation {held.id} of this call "
                        f"({stored!r})",
                    }
                ],
            )


def _outcome(
    *,
    budgets: list[tuple],
    amount: int,
    allowed: bool,
    others_held: int,
    reservation: BudgetReservation | None,
    replayed: bool,
) -> ReservationOutcome:
    checks = []
    for (
        budget_id,
        budget_type,
        entity_id,
        daily,
        monthly,
        warn_pct,
        hard,
        day_spend,
        month_spend,
        held,
    ) in budgets:
        budget = {
            "budget_type": budget_type,
            "entity_id": entity_id,
            "hard_limit_enabled": hard,
            "warn_threshold_pct": warn_pct,
        }
        reserved = int(held) - others_held
        for period, limit, spend in (
            (str(BudgetPeriod.DAILY), daily, day_spend),
            (str(BudgetPeriod.MONTHLY), monthly, month_spend),
        ):
            if limit is None:
                continue
            state, reason = budget_period_check(
                budget=budget,
                period=period,
                limit=limit,
                spend=spend,
                reserved=reserved,
                amount=amount,
            )
            if replayed and state == CheckState.REFUSED:
                # Held already: spend that arrived since has taken the budget past its limit.
                state = CheckState.OVER_LIMIT
                reason = reason.replace("would exceed", "is past", 1)
            checks.append(
                BudgetCheck(
                    budget_id=budget_id,
                    budget_type=budget_type,
                    entity_id=entity_id,
                    period=period,
                    hard_limit_enabled=hard,
                    warn_threshold_pct=warn_pct,
                    limit_cents=limit,
                    spend_cents=spend,
                    reserved_cents=reserved,
                    remaining_cents=limit - spend - reserved - (amount if allowed else 0),
                    state=state,
                    reason=reason,
                )
            )
    return ReservationOutcome(
        allowed=allowed,
        amount_cents=amount,
        reservation=reservation,
        checks=checks,
        replayed=replayed,
    )


@dataclass(frozen=True)
class ReleasedReservation:
    """A reservation as a release left it; `current_status` as reads judge it."""

    id: int
    tenant_id: int
    amount_cents: int
    source: str
    feature_tag: str | None
    user_id: str | None
    request_id: str | None
    run_id: str | None
    status: str
    created_at: datetime
    expires_at: datetime
    closed_at: datetime | None
    current_status: str


def reservation_release(
    *,
    tenant: Tenant,
    reservation_id: int,
    at: datetime | None = None,
    key_generation: int | None = None,
) -> ReleasedReservation | None:
    """Hand an open reservation of `tenant` back; return it as it now is, None if the
    tenant has no reservation `reservation_id`.

    A reservation whose call already has cost records is settled rather than released, and
    one past its TTL expired; a reservation no longer open is left as it was, so releasing
    twice is harmless. One statement, with no re-read. The commit does not wait for the WAL
    flush (unless BUDGET_RESERVE_SYNCHRONOUS_COMMIT): a release lost to a database crash
    leaves the reservation holding until its TTL, the safe side of every limit. With
    `key_generation`, KeyGenerationMoved when the API key generation is no longer that.
    """
    at = at or timezone.now()
    params = {
        "id": reservation_id,
        "tenant_id": tenant.pk,
        "at": at,
        "key_generation": key_generation,
    }
    with connection.cursor() as cursor:
        _execute_batch(cursor, [_RELEASE], params)
        key_ok, *row = cursor.fetchone()
    if not key_ok:
        raise KeyGenerationMoved
    return None if row[0] is None else ReleasedReservation(*row)


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
