"""Circuit breaker of the V2 shadow estimator.

The state lives in one PostgreSQL row (`costsim_v2`), so every web and worker process sees
the same breaker and a restart loses nothing. Every mutation runs in a transaction that
first takes `SELECT ... FOR UPDATE` on that row: concurrent drift reports queue behind each
other, which is what makes "the third failure trips" exact under load.

Reports that cannot change the state take no lock. A drift, success or passed-canary report
first reads the row unlocked (or uses the reading `breaker_check` made earlier in the same
request, passed as `seen`) and returns when the locked report would leave the row as it
is: a drift within COSTSIM_DRIFT_THRESHOLD on a closed breaker with no failure streak, a
success with no schema-error streak, a passed canary with no failure streak, and any of
them on an open breaker (a drift then only counts in metrics). Such a report takes effect
at the moment of that read, which lies inside the request and is a valid order for
concurrent reports, so the row ends as the locked report would have left it. A reading is
therefore only good for the request that made it: one kept across requests (a cache) could
skip a reset that a failure recorded meanwhile has made due. Whatever may change the state
takes the lock and decides again on the locked row. Schema errors always change a closed
breaker, so they lock straight away.

Why: the sandbox reports twice per shadowed simulation, and every locked report is a
transaction that commits (a WAL flush) while holding the one row lock. That capped the
whole deployment at about 290 such transactions per second on the 2-core host, whatever
the number of workers; in steady state (closed, no streak, drift within the threshold)
both reports are now free after the check's read.

The steady state (closed, both streaks at zero) has a fast path of its own: a shadowed
simulation that expects it writes its provenance row in a statement that re-reads the row
and inserts only while the breaker is still steady (`STEADY_SQL`). Each process keeps the
last reading it took (`breaker_remember`) only to guess whether that path applies; the guess
never decides anything, so a stale one costs a request its fast path, never its
correctness.

Metrics are counted on commit, so a rolled-back trip is never reported as one.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from analytics.datetimes import format_datetime
from costsim import metrics
from costsim.models import (
    BREAKER_NAME,
    BreakerIncident,
    CanaryStatus,
    CircuitBreaker,
    IncidentSeverity,
    IncidentTrigger,
)
from costsim.selectors import (
    BreakerSnapshot,
    circuit_breaker_snapshot,
    circuit_breaker_snapshot_of,
)
from costsim.services.outbox import alert_enqueue_disable, alert_enqueue_enable
from notifications.services.events import breaker_event_record

logger = logging.getLogger(__name__)

AUTOMATIC_ACTOR = "circuit_breaker"
AUTO_RECOVER_ACTOR = "system-auto-recover"
AUTO_RECOVER_NOTES = "Auto-recovered after TTL expired"
MANUAL_RESET_NOTES = "Manual reset"

SOURCE_SANDBOX = "sandbox"
SOURCE_CANARY = "canary"


@dataclass(frozen=True)
class EnableResult:
    changed: bool
    breaker: CircuitBreaker

    @property
    def message(self) -> str:
        return "re-enabled" if self.changed else "already closed"


# Reads --------------------------------------------------------------------------------


def breaker_get() -> CircuitBreaker:
    """Return the breaker row, creating it when missing (a flushed test database)."""
    breaker = CircuitBreaker.objects.filter(name=BREAKER_NAME).first()
    if breaker is None:
        breaker = _breaker_create()
    return breaker


def breaker_is_open(breaker: CircuitBreaker, *, now: datetime | None = None) -> bool:
    """Return True while `breaker` is open, ignoring an expired auto-recoverable TTL.

    Pure: nothing is written. The metrics collector and the admin use this so that a scrape
    or a page view never closes the breaker; `breaker_is_disabled` is the variant that does.
    """
    if not breaker.disabled:
        return False
    return not _ttl_expired(breaker, now or timezone.now())


def breaker_state_view(breaker: CircuitBreaker) -> dict[str, Any]:
    """Return the state view `{is_open, opened_at, reason, incident_id, ...}` (datetimes as is)."""
    return {
        "is_open": breaker.disabled,
        "opened_at": breaker.opened_at,
        "reason": breaker.disabled_reason or None,
        "incident_id": breaker.incident_id,
        "consecutive_failures": breaker.consecutive_failures,
        "last_failure_at": breaker.last_failure_at,
        "disabled_until": breaker.disabled_until,
        "disabled_by": breaker.disabled_by or None,
    }


def breaker_check(*, seen: BreakerSnapshot | None = None) -> BreakerSnapshot:
    """Return the breaker as it stands now; `.disabled` is True while open.

    An open breaker whose `disabled_until` has passed closes itself here when
    COSTSIM_AUTO_RECOVER is on (the close re-reads the row under lock), and the snapshot
    returned is the state after that close. The common (closed) case is one unlocked
    plain-SQL read, skipped when `seen` is a reading taken earlier in the same request (the
    simulate endpoint reads the row with its key check). A missing row is created closed.

    The snapshot may be handed to `breaker_report_success` and `breaker_report_drift` of
    the same request as `seen`, which spares them their own read.
    """
    if seen is None:
        seen = circuit_breaker_snapshot()
    if seen is None:
        seen = circuit_breaker_snapshot_of(_breaker_create())
    if seen.disabled and _ttl_expired(seen, timezone.now()):
        closed = breaker_auto_recover()
        # None: someone else changed the row meanwhile; whatever they did is the state now.
        seen = circuit_breaker_snapshot_of(closed if closed is not None else breaker_get())
    return seen


# The steady state in SQL, over the columns of circuit_breaker_snapshot_sql: the same test
# as breaker_is_steady.
STEADY_SQL = "NOT disabled AND consecutive_failures = 0 AND consecutive_schema_errors = 0"

# The last reading this process took on the simulate path; None until the first one.
_last_seen: BreakerSnapshot | None = None


def breaker_is_steady(seen: BreakerSnapshot | None) -> bool:
    """True when `seen` is a closed breaker with no failure or schema-error streak.

    In that state a drift within COSTSIM_DRIFT_THRESHOLD and a success are reports that
    cannot change the row (`breaker_report_drift`, `breaker_report_success` return at once).
    """
    return (
        seen is not None
        and not seen.disabled
        and not seen.consecutive_failures
        and not seen.consecutive_schema_errors
    )


def breaker_remember(seen: BreakerSnapshot | None) -> None:
    """Keep `seen`, a reading of the row, as this process's guess for later requests."""
    global _last_seen
    _last_seen = seen


def breaker_probably_steady() -> bool:
    """This process's guess that the breaker is steady, from the last reading it kept.

    A guess only: whoever acts on it must check the row again in the statement that acts
    (the provenance write does, with STEADY_SQL).
    """
    return breaker_is_steady(_last_seen)


def breaker_is_disabled() -> bool:
    """True while the breaker is open (see `breaker_check`)."""
    return breaker_check().disabled


# Writes -------------------------------------------------------------------------------


@transaction.atomic
def breaker_auto_recover() -> CircuitBreaker | None:
    """Close the breaker if its TTL has passed and auto-recovery is on.

    Return the closed breaker, or None when there was nothing to do: the row is re-read
    under lock, so a close made meanwhile by another process is not repeated.
    """
    breaker = _locked()
    now = timezone.now()
    if not breaker.disabled or not _ttl_expired(breaker, now):
        return None
    _close(
        breaker,
        by=AUTO_RECOVER_ACTOR,
        notes=AUTO_RECOVER_NOTES,
        alert_reason=AUTO_RECOVER_NOTES,
        metric_reason="auto_recovery",
        now=now,
    )
    transaction.on_commit(metrics.cb_auto_recovery_total.inc)
    logger.warning("Circuit breaker %s auto-recovered after its TTL", BREAKER_NAME)
    return breaker


def breaker_report_drift(
    *,
    score: float,
    sample_count: int,
    details: dict,
    source: str = SOURCE_SANDBOX,
    seen: BreakerSnapshot | None = None,
) -> BreakerIncident | None:
    """Feed one drift observation; return the incident when this report tripped the breaker.

    A score strictly above COSTSIM_DRIFT_THRESHOLD is a failure; COSTSIM_FAILURE_THRESHOLD
    consecutive failures trip the breaker (P1; trigger `canary` when `source` is the
    canary). While the breaker is open, reports only count in metrics. `seen` is the
    snapshot `breaker_check` returned earlier in the same request; without it the row is
    read here. Only a report that may change the row locks it (module docstring).
    """
    seen = seen if seen is not None else circuit_breaker_snapshot()
    if seen is not None:
        if seen.disabled:
            _count_on_commit(metrics.cb_reports_while_open_total, source=source)
            return None
        if score <= settings.COSTSIM_DRIFT_THRESHOLD and not seen.consecutive_failures:
            return None
    return _drift_locked(score=score, sample_count=sample_count, details=details, source=source)


@transaction.atomic
def _drift_locked(
    *, score: float, sample_count: int, details: dict, source: str
) -> BreakerIncident | None:
    breaker = _locked()
    if breaker.disabled:
        _count_on_commit(metrics.cb_reports_while_open_total, source=source)
        return None

    threshold = settings.COSTSIM_DRIFT_THRESHOLD
    if score <= threshold:
        if breaker.consecutive_failures:
            breaker.consecutive_failures = 0
            breaker.save(update_fields=["consecutive_failures", "updated_at"])
        return None

    now = timezone.now()
    breaker.consecutive_failures += 1
    breaker.last_failure_at = now
    if breaker.consecutive_failures < settings.COSTSIM_FAILURE_THRESHOLD:
        breaker.save(update_fields=["consecutive_failures", "last_failure_at", "updated_at"])
        return None

    trigger = IncidentTrigger.CANARY if source == SOURCE_CANARY else IncidentTrigger.DRIFT
    return _trip(
        breaker,
        reason=f"Drift exceeded threshold: {score:.4f} > {threshold}",
        severity=IncidentSeverity.P1,
        trigger=trigger,
        drift_score=score,
        sample_count=sample_count,
        details=details,
        disabled_by=AUTOMATIC_ACTOR,
        disabled_until=_automatic_ttl(now),
        now=now,
    )


@transaction.atomic
def breaker_report_schema_error(*, details: dict) -> BreakerIncident | None:
    """Feed one V2 schema error; return the incident when this report tripped the breaker.

    COSTSIM_SCHEMA_ERROR_THRESHOLD consecutive schema errors trip the breaker (P3). An open
    breaker ignores them.
    """
    breaker = _locked()
    if breaker.disabled:
        return None
    breaker.consecutive_schema_errors += 1
    count = breaker.consecutive_schema_errors
    limit = settings.COSTSIM_SCHEMA_ERROR_THRESHOLD
    if count < limit:
        breaker.save(update_fields=["consecutive_schema_errors", "updated_at"])
        return None
    now = timezone.now()
    return _trip(
        breaker,
        reason=f"Schema error threshold exceeded: {count} >= {limit}",
        severity=IncidentSeverity.P3,
        trigger=IncidentTrigger.SCHEMA_ERROR,
        drift_score=1.0,
        sample_count=count,
        details=details,
        disabled_by=AUTOMATIC_ACTOR,
        disabled_until=_automatic_ttl(now),
        now=now,
    )


def breaker_report_success(*, seen: BreakerSnapshot | None = None) -> None:
    """A V2 shadow run succeeded: the schema-error streak of a closed breaker resets.

    `seen` as for `breaker_report_drift`; with no streak to reset nothing is locked.
    """
    seen = seen if seen is not None else circuit_breaker_snapshot()
    if seen is not None and (seen.disabled or not seen.consecutive_schema_errors):
        return
    _success_locked()


@transaction.atomic
def _success_locked() -> None:
    breaker = _locked()
    if not breaker.disabled and breaker.consecutive_schema_errors:
        breaker.consecutive_schema_errors = 0
        breaker.save(update_fields=["consecutive_schema_errors", "updated_at"])


def breaker_report_canary(
    *, status: str, kl_divergence: float | None, total_samples: int, details: dict
) -> BreakerIncident | None:
    """Feed a canary outcome; return the incident when a failed canary tripped the breaker.

    `pass` resets the failure streak of a closed breaker. `fail` and `error` are a drift
    report of max(kl_divergence, 1.0) over `total_samples` (an `error` computed no KL, so
    it scores 1.0). `insufficient_data` and `skipped` decided nothing and change nothing:
    a canary on too few samples is no evidence either way, so it neither resets nor
    extends the streak.
    """
    if status == CanaryStatus.PASS:
        seen = circuit_breaker_snapshot()
        if seen is None or (not seen.disabled and seen.consecutive_failures):
            _canary_passed_locked()
        return None
    if status not in (CanaryStatus.FAIL, CanaryStatus.ERROR):
        return None
    return breaker_report_drift(
        score=max(kl_divergence or 0.0, 1.0),
        sample_count=total_samples,
        details=details,
        source=SOURCE_CANARY,
    )


@transaction.atomic
def _canary_passed_locked() -> None:
    breaker = _locked()
    if not breaker.disabled and breaker.consecutive_failures:
        breaker.consecutive_failures = 0
        breaker.save(update_fields=["consecutive_failures", "updated_at"])


@transaction.atomic
def breaker_disable(*, reason: str, actor: str, ttl_hours: float | None = None) -> CircuitBreaker:
    """Open the breaker by hand (P2 `manual` incident); return the breaker.

    Without `ttl_hours` it stays open until someone enables it. On an already open breaker
    the reason, actor and TTL are overwritten and no new incident is created.
    """
    breaker = _locked()
    now = timezone.now()
    disabled_until = now + timedelta(hours=ttl_hours) if ttl_hours else None
    if breaker.disabled:
        breaker.disabled_reason = reason
        breaker.disabled_by = actor
        breaker.disabled_until = disabled_until
        breaker.full_clean(exclude=["incident"], validate_unique=False)
        breaker.save(
            update_fields=["disabled_reason", "disabled_by", "disabled_until", "updated_at"]
        )
        return breaker
    _trip(
        breaker,
        reason=reason,
        severity=IncidentSeverity.P2,
        trigger=IncidentTrigger.MANUAL,
        drift_score=0.0,
        sample_count=0,
        details={"manual_disable": True},
        disabled_by=actor,
        disabled_until=disabled_until,
        now=now,
    )
    return breaker


@transaction.atomic
def breaker_enable(*, reason: str | None = None, actor: str) -> EnableResult:
    """Close the breaker by hand; `changed` is False when it was already closed."""
    breaker = _locked()
    if not breaker.disabled:
        return EnableResult(changed=False, breaker=breaker)
    _close(
        breaker,
        by=actor,
        notes=reason or MANUAL_RESET_NOTES,
        alert_reason=reason,
        metric_reason="manual",
        now=timezone.now(),
    )
    logger.warning("Circuit breaker %s re-enabled by %s", BREAKER_NAME, actor)
    return EnableResult(changed=True, breaker=breaker)


@transaction.atomic
def incident_resolve(*, incident_ids: list[str], actor: str, notes: str = "") -> int:
    """Mark unresolved incidents resolved; return how many changed.

    The incident of the open breaker is left alone: resolving it without closing the
    breaker would show an open breaker with a resolved incident. Enabling the breaker is
    how that one gets resolved.
    """
    breaker = _locked()
    current = breaker.incident_id if breaker.disabled else None
    incidents = list(
        BreakerIncident.objects.select_for_update()
        .filter(pk__in=incident_ids, resolved=False)
        .exclude(pk=current)
        .order_by("pk")
    )
    now = timezone.now()
    BreakerIncident.objects.filter(pk__in=[i.pk for i in incidents]).update(
        resolved=True, resolved_at=now, resolved_by=actor, resolution_notes=notes
    )
    for incident in incidents:
        _count_on_commit(metrics.cb_incidents_total, severity=incident.severity, resolved="true")
    return len(incidents)


# Transitions --------------------------------------------------------------------------


def _trip(
    breaker: CircuitBreaker,
    *,
    reason: str,
    severity: str,
    trigger: str,
    drift_score: float,
    sample_count: int,
    details: dict,
    disabled_by: str,
    disabled_until: datetime | None,
    now: datetime,
) -> BreakerIncident:
    incident = BreakerIncident(
        breaker_name=breaker.name,
        created_at=now,
        reason=reason,
        severity=severity,
        trigger=trigger,
        drift_score=drift_score,
        sample_count=sample_count,
        details=details or {},
    )
    incident.full_clean()
    incident.save(force_insert=True)

    breaker.disabled = True
    breaker.opened_at = now
    breaker.disabled_by = disabled_by
    breaker.disabled_reason = reason
    breaker.disabled_until = disabled_until
    breaker.incident = incident
    breaker.full_clean(exclude=["incident"], validate_unique=False)
    breaker.save()

    # Same transaction as the trip: the alert exists exactly when the trip committed.
    alert_enqueue_disable(breaker=breaker, incident=incident, now=now)
    breaker_event_record(
        event="tripped",
        incident_id=incident.id,
        severity=severity,
        data={
            "breaker": breaker.name,
            "incident_id": incident.id,
            "reason": reason,
            "trigger": trigger,
            "drift_score": drift_score,
            "sample_count": sample_count,
            "disabled_until": format_datetime(disabled_until),
        },
        at=now,
    )
    _count_on_commit(metrics.cb_disabled_total, reason=trigger, severity=severity)
    _count_on_commit(metrics.cb_incidents_total, severity=severity, resolved="false")
    logger.warning(
        "Circuit breaker %s tripped (%s %s): %s", breaker.name, severity, trigger, reason
    )
    return incident


def _close(
    breaker: CircuitBreaker,
    *,
    by: str,
    notes: str,
    alert_reason: str | None,
    metric_reason: str,
    now: datetime,
) -> None:
    incident = breaker.incident
    if incident is not None and not incident.resolved:
        incident.resolved = True
        incident.resolved_at = now
        incident.resolved_by = by
        incident.resolution_notes = notes
        incident.save(update_fields=["resolved", "resolved_at", "resolved_by", "resolution_notes"])
        _count_on_commit(metrics.cb_incidents_total, severity=incident.severity, resolved="true")

    breaker.disabled = False
    breaker.opened_at = None
    breaker.disabled_by = ""
    breaker.disabled_reason = ""
    breaker.disabled_until = None
    breaker.incident = None
    breaker.consecutive_failures = 0
    breaker.consecutive_schema_errors = 0
    breaker.save()

    alert_enqueue_enable(breaker=breaker, incident=incident, by=by, reason=alert_reason, now=now)
    breaker_event_record(
        event="recovered",
        incident_id=incident.id if incident is not None else None,
        severity="P3",
        data={"breaker": breaker.name, "by": by, "reason": alert_reason},
        at=now,
    )
    _count_on_commit(metrics.cb_enabled_total, reason=metric_reason)


# Helpers ------------------------------------------------------------------------------


def _locked() -> CircuitBreaker:
    """Return the breaker row locked FOR UPDATE (created first if missing)."""
    queryset = CircuitBreaker.objects.select_for_update().filter(name=BREAKER_NAME)
    breaker = queryset.first()
    if breaker is None:
        _breaker_create()
        breaker = queryset.get()
    return breaker


def _breaker_create() -> CircuitBreaker:
    # Migration 0002 creates the row; only a flushed database (transactional tests) lacks
    # it. ON CONFLICT DO NOTHING lets concurrent callers race here harmlessly.
    CircuitBreaker.objects.bulk_create([CircuitBreaker(name=BREAKER_NAME)], ignore_conflicts=True)
    return CircuitBreaker.objects.get(name=BREAKER_NAME)


def _ttl_expired(breaker: CircuitBreaker | BreakerSnapshot, now: datetime) -> bool:
    return (
        settings.COSTSIM_AUTO_RECOVER
        and breaker.disabled_until is not None
        and breaker.disabled_until <= now
    )


def _automatic_ttl(now: datetime) -> datetime | None:
    hours = settings.COSTSIM_DISABLE_TTL_HOURS
    return now + timedelta(hours=hours) if hours else None


def _count_on_commit(counter, **labels: str) -> None:
    transaction.on_commit(lambda: counter.labels(**labels).inc())
