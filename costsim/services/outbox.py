"""Breaker alerts for Alertmanager, through a transactional outbox (spec/costsim.md §7).

Alerts are rows written in the same transaction as the breaker change that causes them, so
an alert exists exactly when the change committed and survives any crash after it. A
leader-only job posts due rows to `<ALERTMANAGER_URL>/api/v2/alerts` with exponential
backoff; rows are claimed with `FOR UPDATE SKIP LOCKED`, so even a delivery running without
the leader lock could not send a row twice.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from analytics.api.fields import format_datetime
from costsim import metrics
from costsim.models import AlertOutbox, AlertStatus, AlertType, BreakerIncident, CircuitBreaker
from costsim.services.locks import LockId, leader_lock

logger = logging.getLogger(__name__)

ALERTS_PATH = "/api/v2/alerts"
NOT_CONFIGURED = "alertmanager url not configured"
# The longest wait between two attempts of one alert, in seconds.
MAX_BACKOFF_SECONDS = 300
LAST_ERROR_MAX_CHARS = 500
HTTP_BODY_MAX_CHARS = 200
# Sent, failed and skipped rows older than this are purged with the provenance prune.
PURGE_AFTER_DAYS = 30
RETRY_EXTRA_ATTEMPTS = 3

DONE_STATUSES = (AlertStatus.SENT, AlertStatus.FAILED, AlertStatus.SKIPPED)


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of one delivery run; `leader` is False when another process held the lock."""

    leader: bool
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retrying + self.failed + self.skipped


# Enqueue (called by the breaker inside its transaction) ----------------------------------


def alert_enqueue_disable(
    *, breaker: CircuitBreaker, incident: BreakerIncident, now: datetime
) -> AlertOutbox:
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
    return _enqueue(AlertType.DISABLE, breaker=breaker, incident=incident, alert=alert, now=now)


def alert_enqueue_enable(
    *,
    breaker: CircuitBreaker,
    incident: BreakerIncident | None,
    by: str,
    reason: str | None,
    now: datetime,
) -> AlertOutbox:
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
    return _enqueue(AlertType.ENABLE, breaker=breaker, incident=incident, alert=alert, now=now)


def _enqueue(
    alert_type: str,
    *,
    breaker: CircuitBreaker,
    incident: BreakerIncident | None,
    alert: dict[str, Any],
    now: datetime,
) -> AlertOutbox:
    row = AlertOutbox(
        payload=[alert],
        alert_type=alert_type,
        breaker_name=breaker.name,
        incident=incident,
        max_attempts=settings.COSTSIM_ALERT_MAX_ATTEMPTS,
        next_attempt_at=now,
        created_at=now,
    )
    row.full_clean()
    row.save(force_insert=True)
    return row


# Delivery -----------------------------------------------------------------------------


def alerts_deliver(*, batch_size: int | None = None) -> DeliveryResult:
    """Deliver one batch of due alerts as the leader (lock 7002).

    Return `leader=False` without touching anything when another process is delivering.
    """
    with leader_lock(LockId.ALERT_OUTBOX) as leader:
        if not leader:
            metrics.job_runs_total.labels(job="alert_outbox", outcome="skipped").inc()
            return DeliveryResult(leader=False)
        try:
            result = _deliver_batch(batch_size or settings.COSTSIM_ALERT_BATCH_SIZE)
        except Exception:
            metrics.job_runs_total.labels(job="alert_outbox", outcome="failed").inc()
            raise
    metrics.job_runs_total.labels(job="alert_outbox", outcome="success").inc()
    return result


@transaction.atomic
def _deliver_batch(batch_size: int) -> DeliveryResult:
    # One transaction per batch: the claimed rows stay locked while they are posted, and
    # SKIP LOCKED lets any other deliverer pass over them instead of waiting.
    rows = list(
        AlertOutbox.objects.select_for_update(skip_locked=True)
        .filter(status=AlertStatus.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "id")[:batch_size]
    )
    if not rows:
        return DeliveryResult(leader=True)

    url = settings.ALERTMANAGER_URL
    if not url:
        AlertOutbox.objects.filter(pk__in=[row.pk for row in rows]).update(
            status=AlertStatus.SKIPPED, last_error=NOT_CONFIGURED
        )
        return DeliveryResult(leader=True, skipped=len(rows))

    counts = {"sent": 0, "retrying": 0, "failed": 0}
    sent_incidents: list[str] = []
    with requests.Session() as session:
        for row in rows:
            error, error_type = _post(session, f"{url}{ALERTS_PATH}", row.payload)
            now = timezone.now()
            if error is None:
                row.status = AlertStatus.SENT
                row.sent_at = now
                counts["sent"] += 1
                if row.incident_id:
                    sent_incidents.append(row.incident_id)
                continue
            metrics.cb_alert_send_failures_total.labels(
                alert_type=row.alert_type, error_type=error_type
            ).inc()
            row.attempts += 1
            row.last_attempt_at = now
            row.last_error = error[:LAST_ERROR_MAX_CHARS]
            if row.attempts >= row.max_attempts:
                row.status = AlertStatus.FAILED
                counts["failed"] += 1
                logger.error("Alert %s failed for good: %s", row.pk, row.last_error)
            else:
                row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
                counts["retrying"] += 1
                logger.warning("Alert %s attempt %s failed: %s", row.pk, row.attempts, error)

    AlertOutbox.objects.bulk_update(
        rows,
        ["status", "sent_at", "attempts", "last_attempt_at", "last_error", "next_attempt_at"],
    )
    if sent_incidents:
        BreakerIncident.objects.filter(pk__in=sent_incidents, alert_sent=False).update(
            alert_sent=True, alert_sent_at=timezone.now()
        )
    return DeliveryResult(leader=True, **counts)


def backoff_seconds(attempts: int) -> int:
    """Wait before the next attempt after `attempts` failures: 2, 4, 8 ... 256, then 300."""
    return min(2**attempts, MAX_BACKOFF_SECONDS)


def _post(session: requests.Session, url: str, payload: Any) -> tuple[str | None, str | None]:
    """POST one payload; return (None, None) on 2xx, else (last_error text, metric error_type)."""
    try:
        response = session.post(url, json=payload, timeout=settings.ALERTMANAGER_TIMEOUT)
    except requests.Timeout as exc:
        return f"Timeout: {exc}", "timeout"
    except requests.RequestException as exc:
        return str(exc) or type(exc).__name__, "connection"
    if 200 <= response.status_code < 300:
        return None, None
    code = response.status_code
    return f"HTTP {code}: {response.text[:HTTP_BODY_MAX_CHARS]}", f"http_{code}"


# Operator actions ---------------------------------------------------------------------


@transaction.atomic
def alerts_retry_failed(*, ids: Iterable[int] | None = None) -> int:
    """Put failed alerts back in the queue with three more attempts; return how many.

    `ids` limits the retry to those rows; None retries every failed alert.
    """
    queryset = AlertOutbox.objects.filter(status=AlertStatus.FAILED)
    if ids is not None:
        queryset = queryset.filter(pk__in=list(ids))
    return queryset.update(
        status=AlertStatus.PENDING,
        max_attempts=F("max_attempts") + RETRY_EXTRA_ATTEMPTS,
        next_attempt_at=timezone.now(),
    )


@transaction.atomic
def alerts_purge(
    *, older_than_days: int = PURGE_AFTER_DAYS, dry_run: bool = False, now: datetime | None = None
) -> int:
    """Delete sent, failed and skipped alerts created more than `older_than_days` ago.

    Pending rows are never purged. Return the number of rows deleted (or that would be).
    The caller holds lock 7003.
    """
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    queryset = AlertOutbox.objects.filter(status__in=DONE_STATUSES, created_at__lt=cutoff)
    if dry_run:
        return queryset.count()
    deleted, _ = queryset.delete()
    return deleted


def alert_queue_stats(*, now: datetime | None = None) -> dict[str, Any]:
    """Return `{pending, due, sent, failed, skipped, oldest_pending_at}` in one query."""
    now = now or timezone.now()
    pending = Q(status=AlertStatus.PENDING)
    stats = AlertOutbox.objects.aggregate(
        pending=Count("id", filter=pending),
        due=Count("id", filter=pending & Q(next_attempt_at__lte=now)),
        sent=Count("id", filter=Q(status=AlertStatus.SENT)),
        failed=Count("id", filter=Q(status=AlertStatus.FAILED)),
        skipped=Count("id", filter=Q(status=AlertStatus.SKIPPED)),
        oldest_pending_at=Min("created_at", filter=pending),
    )
    return stats
