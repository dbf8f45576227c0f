"""Circuit breaker of the V2 shadow estimator (spec/costsim.md §6).

The state lives in one PostgreSQL row (`costsim_v2`), so every web and worker process sees
the same breaker and a restart loses nothing. Every mutation runs in a transaction that
first takes `SELECT ... FOR UPDATE` on that row: concurrent drift reports queue behind each
other, which is what makes "the third failure trips" exact under load.

Metrics are counted on commit, so a rolled-back trip is never reported as one.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from costsim import metrics
from costsim.models import (
    BREAKER_NAME,
    BreakerIncident,
    CircuitBreaker,
    IncidentSeverity,
    IncidentTrigger,
)
from costsim.services.outbox import alert_enqueue_disable, alert_enqueue_enable

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


def breaker_is_disabled() -> bool:
    """`check` (§6): True while the breaker is open.

    An open breaker whose `disabled_until` has passed closes itself here when
    COSTSIM_AUTO_RECOVER is on. The unlocked read keeps the common (closed) case to one
    query; the close itself re-reads the row under lock.
    """
    breaker = breaker_get()
    if not breaker.disabled:
        return False
    if not _ttl_expired(breaker, timezone.now()):
        return True
    return breaker_auto_recover() is None and _still_open()


def incident_list(*, include_resolved: bool = False, limit: int = 10) -> tuple[list, int]:
    """Return the newest `limit` incidents and the count of every matching one."""
    queryset = BreakerIncident.objects.order_by("-created_at", "-id")
    if not include_resolved:
        queryset = queryset.filter(resolved=False)
    return list(queryset[:limit]), queryset.count()


def _still_open() -> bool:
    return CircuitBreaker.objects.filter(name=BREAKER_NAME, disabled=True).exists()


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


@transaction.atomic
def breaker_report_drift(
    *, score: float, sample_count: int, details: dict, source: str = SOURCE_SANDBOX
) -> BreakerIncident | None:
    """Feed one drift observation; return the incident when this report tripped the breaker.

    A score strictly above COSTSIM_DRIFT_THRESHOLD is a failure; COSTSIM_FAILURE_THRESHOLD
    consecutive failures trip the breaker (P1; trigger `canary` when `source` is the
    canary). While the breaker is open, reports only count in metrics.
    """
    breaker = _locked()
    if breaker.disabled:
        transaction.on_commit(
            lambda: metrics.cb_reports_while_open_total.labels(source=source).inc()
        )
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


@transaction.atomic
def breaker_report_success() -> None:
    """A V2 shadow run succeeded: the schema-error streak of a closed breaker resets."""
    breaker = _locked()
    if not breaker.disabled and breaker.consecutive_schema_errors:
        breaker.consecutive_schema_errors = 0
        breaker.save(update_fields=["consecutive_schema_errors", "updated_at"])


def breaker_report_canary(
    *, passed: bool, kl_divergence: float, total_samples: int, details: dict
) -> BreakerIncident | None:
    """Feed a canary outcome; return the incident when a failed canary tripped the breaker.

    A pass resets the failure streak of a closed breaker. A failure for any reason
    (including `error`) is a drift report of max(kl_divergence, 1.0) over `total_samples`.
    """
    if passed:
        _canary_passed()
        return None
    return breaker_report_drift(
        score=max(kl_divergence, 1.0),
        sample_count=total_samples,
        details=details,
        source=SOURCE_CANARY,
    )


@transaction.atomic
def _canary_passed() -> None:
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


def _ttl_expired(breaker: CircuitBreaker, now: datetime) -> bool:
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
