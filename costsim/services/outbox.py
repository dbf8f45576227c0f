"""Breaker alerts for Alertmanager, queued on the notifications outbox.

An alert is a `notifications.Delivery` on the project-wide Alertmanager channel, written in
the same transaction as the breaker change that causes it, so it exists exactly when the
change committed and survives any crash after it. The notifications dispatcher posts it to
`<ALERTMANAGER_URL>/api/v2/alerts` with the same claim (`FOR UPDATE SKIP LOCKED`), backoff
and retry as every other message; while `ALERTMANAGER_URL` is unset it is `skipped`. The
event key is the one the breaker's other project channels use, so a trip is one event with
one row per channel.
"""

from datetime import datetime
from typing import Any

from django.conf import settings

from analytics.datetimes import format_datetime
from costsim.models import BreakerIncident, CircuitBreaker
from notifications.models import Delivery
from notifications.services.events import alertmanager_alert_record

# The Alertmanager `alertname` of each breaker event, and the alert type shown in the admin.
TRIPPED, RECOVERED = "tripped", "recovered"
ALERT_TYPES = {TRIPPED: "disable", RECOVERED: "enable"}


def alert_enqueue_disable(
    *, breaker: CircuitBreaker, incident: BreakerIncident, now: datetime
) -> Delivery:
    """Queue the `CostSimV2Disabled` alert of a trip."""
    until = format_datetime(breaker.disabled_until) or "manual reset required"
    annotations = {
        "summary": f"CostSim V2 circuit breaker tripped ({incident.severity})",
        "description": (
            f"Reason: {incident.reason}\n"
            f"Drift score: {incident.drift_score:.4f}\n"
            f"Sample count: {incident.sample_count}\n"
            f"Disabled until: {until}"
        ),
    }
    if settings.COSTSIM_RUNBOOK_URL:
        annotations["runbook_url"] = settings.COSTSIM_RUNBOOK_URL
    alert = {
        "labels": {
            "alertname": "CostSimV2Disabled",
            "severity": incident.severity.lower(),
            "component": "costsim",
            "circuit_breaker": breaker.name,
            "instance": settings.INSTANCE_ID,
            "incident_id": incident.id,
        },
        "annotations": annotations,
        "startsAt": format_datetime(now),
    }
    return _enqueue(
        TRIPPED,
        breaker=breaker,
        incident=incident,
        severity=incident.severity,
        alert=alert,
        now=now,
    )


def alert_enqueue_enable(
    *,
    breaker: CircuitBreaker,
    incident: BreakerIncident | None,
    by: str,
    reason: str | None,
    now: datetime,
) -> Delivery:
    """Queue the `CostSimV2Reenabled` alert of a close; it starts and ends at once."""
    alert = {
        "labels": {
            "alertname": "CostSimV2Reenabled",
            "severity": "info",
            "component": "costsim",
            "circuit_breaker": breaker.name,
            "instance": settings.INSTANCE_ID,
        },
        "annotations": {
            "summary": "CostSim V2 circuit breaker re-enabled",
            "description": f"Re-enabled by: {by}\nReason: {reason or 'Not specified'}",
        },
        "startsAt": format_datetime(now),
        "endsAt": format_datetime(now),
    }
    return _enqueue(
        RECOVERED, breaker=breaker, incident=incident, severity="P3", alert=alert, now=now
    )


def _enqueue(
    event: str,
    *,
    breaker: CircuitBreaker,
    incident: BreakerIncident | None,
    severity: str,
    alert: dict[str, Any],
    now: datetime,
) -> Delivery:
    return alertmanager_alert_record(
        event=event,
        incident_id=incident.id if incident is not None else None,
        severity=severity,
        alerts=[alert],
        data={"breaker": breaker.name, "alert_type": ALERT_TYPES[event]},
        at=now,
        max_attempts=settings.COSTSIM_ALERT_MAX_ATTEMPTS,
    )
