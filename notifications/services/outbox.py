"""Delivery of the notification outbox.

The beat job claims a batch of due pending rows with `FOR UPDATE SKIP LOCKED`, so two
dispatchers running side by side each take different rows and never send one twice. A row
stays locked while it is sent; a failed attempt moves it forward with exponential backoff,
and after `max_attempts` it is `failed`. A retry after a timeout the receiver did accept
carries the same `webhook-id`, which is how a receiver drops the duplicate.

Every outgoing message goes through here: tenant webhooks, Slack and email, the
project-wide breaker channels, and CostSim's Alertmanager alerts (posted as they are to
`ALERTMANAGER_URL`; `skipped` while it is unset). Attempts are counted in
`notifications.metrics`; `deliveries_sent` tells listeners which rows went out.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from notifications import metrics
from notifications.models import ChannelKind, Delivery, DeliveryStatus
from notifications.services import http
from notifications.services.formats import email_message, slack_message
from notifications.signals import deliveries_sent

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600
LAST_ERROR_MAX_CHARS = 500
RESPONSE_EXCERPT_CHARS = 200
CHANNEL_DISABLED = "channel disabled"
ALERTMANAGER_NOT_CONFIGURED = "alertmanager url not configured"
ALERTS_PATH = "/api/v2/alerts"
# Sent, digested, failed and skipped rows older than this are deleted by the daily digest job.
PURGE_AFTER_DAYS = 30
FINISHED = (
    DeliveryStatus.SENT,
    DeliveryStatus.DIGESTED,
    DeliveryStatus.FAILED,
    DeliveryStatus.SKIPPED,
)


class SendError(Exception):
    """One attempt failed; `status` is the HTTP status when there was one, `error_type` a
    short label for metrics."""

    def __init__(
        self, message: str, status: int | None = None, excerpt: str = "", error_type="other"
    ):
        super().__init__(message)
        self.status = status
        self.excerpt = excerpt
        self.error_type = error_type


class NothingToSend(Exception):
    """The channel has no destination configured; the delivery is skipped, not retried."""


@dataclass(frozen=True)
class DispatchResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retrying + self.failed + self.skipped


def backoff_seconds(attempts: int) -> int:
    """Wait after `attempts` failures: 10, 20, 40 s ... doubling, at most an hour."""
    return min(10 * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)


def webhook_headers(*, delivery: Delivery, body: str, at: datetime) -> dict[str, str]:
    """Standard Webhooks headers: id, timestamp and the HMAC-SHA256 signature of
    `id.timestamp.body` with the channel's secret."""
    msg_id = f"msg_{delivery.idempotency_key.hex}"
    signature = Webhook(delivery.channel.secret).sign(msg_id, at, body)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def _post(
    url: str, *, body: str, headers: dict[str, str], timeout: float, allow_private=None
) -> int:
    try:
        reply = http.post(
            url, body=body.encode(), headers=headers, timeout=timeout, allow_private=allow_private
        )
    except http.PostError as exc:
        raise SendError(
            str(exc),
            exc.status,
            exc.excerpt[:RESPONSE_EXCERPT_CHARS],
            error_type=exc.error_type,
        ) from None
    return reply.status


def delivery_send(delivery: Delivery) -> int | None:
    """Send one delivery once; return the HTTP status (None for email) or raise SendError
    (NothingToSend when the channel has no destination)."""
    channel = delivery.channel
    if channel.kind == ChannelKind.WEBHOOK:
        body = json.dumps(delivery.payload, separators=(",", ":"))
        headers = webhook_headers(delivery=delivery, body=body, at=timezone.now())
        return _post(channel.url, body=body, headers=headers, timeout=settings.NOTIFY_TIMEOUT)
    if channel.kind == ChannelKind.SLACK:
        body = json.dumps(slack_message(delivery.payload))
        headers = {"content-type": "application/json"}
        return _post(channel.url, body=body, headers=headers, timeout=settings.NOTIFY_TIMEOUT)
    if channel.kind == ChannelKind.ALERTMANAGER:
        # The operators' own Alertmanager, from settings and usually on an internal
        # address: the public-address rule is for URLs that tenants give.
        if not settings.ALERTMANAGER_URL:
            raise NothingToSend(ALERTMANAGER_NOT_CONFIGURED)
        body = json.dumps(delivery.payload["data"]["alerts"])
        return _post(
            settings.ALERTMANAGER_URL + ALERTS_PATH,
            body=body,
            headers={"content-type": "application/json"},
            timeout=settings.ALERTMANAGER_TIMEOUT,
            allow_private=True,
        )
    subject, text, html = email_message(delivery.payload)
    message = EmailMultiAlternatives(
        subject=subject,
        body=text,
        to=list(channel.email_to),
        headers={"Message-ID": f"<{delivery.idempotency_key}@costwise>"},
        connection=get_connection(timeout=settings.NOTIFY_TIMEOUT),
    )
    message.attach_alternative(html, "text/html")
    try:
        message.send()
    except Exception as exc:  # smtplib and socket errors alike
        raise SendError(f"email error: {type(exc).__name__}", error_type="email") from None
    return None


def attempt_record(delivery: Delivery, *, now: datetime, status: int | None, error=None) -> str:
    """Record one attempt on `delivery` (unsaved); return `sent`, `retrying` or `failed`."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    kind = delivery.channel.kind
    if error is None:
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = now
        delivery.response_status = status
        delivery.last_error = ""
        latency = (now - delivery.event_at).total_seconds()
        delivery.latency_ms = int(latency * 1000)
        metrics.attempts_total.labels(kind=kind, outcome="sent").inc()
        metrics.latency_seconds.labels(kind=kind).observe(max(latency, 0.0))
        return "sent"
    delivery.response_status = error.status
    delivery.response_excerpt = error.excerpt
    delivery.last_error = str(error)[:LAST_ERROR_MAX_CHARS]
    metrics.errors_total.labels(kind=kind, error_type=error.error_type).inc()
    if delivery.attempts >= delivery.max_attempts:
        delivery.status = DeliveryStatus.FAILED
        metrics.attempts_total.labels(kind=kind, outcome="failed").inc()
        logger.error("Delivery %s failed for good: %s", delivery.pk, delivery.last_error)
        return "failed"
    delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
    metrics.attempts_total.labels(kind=kind, outcome="retried").inc()
    logger.warning(
        "Delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, delivery.last_error
    )
    return "retrying"


def _skip(delivery: Delivery, *, reason: str, status: str) -> None:
    delivery.status = status
    delivery.last_error = reason
    outcome = "skipped" if status == DeliveryStatus.SKIPPED else "failed"
    metrics.attempts_total.labels(kind=delivery.channel.kind, outcome=outcome).inc()


UPDATED_FIELDS = [
    "status",
    "attempts",
    "last_attempt_at",
    "next_attempt_at",
    "last_error",
    "response_status",
    "response_excerpt",
    "latency_ms",
    "sent_at",
]


# complexity: each delivery's outcome (channel disabled, sent, nothing to send, send error) is
# recorded, counted and timed in the one locked batch
@transaction.atomic
def deliveries_dispatch(*, batch_size: int | None = None) -> DispatchResult:
    """Send one batch of due pending deliveries; safe to run side by side."""
    rows = list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("channel")
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "id")[: batch_size or settings.NOTIFY_BATCH_SIZE]
    )
    counts = {"sent": 0, "retrying": 0, "failed": 0, "skipped": 0}
    for delivery in rows:
        if not delivery.channel.enabled:
            # Disabled after the event was queued: the message is dropped, visibly.
            _skip(delivery, reason=CHANNEL_DISABLED, status=DeliveryStatus.FAILED)
            counts["failed"] += 1
            continue
        started = time.monotonic()
        try:
            status = delivery_send(delivery)
            outcome = attempt_record(delivery, now=timezone.now(), status=status)
        except NothingToSend as exc:
            _skip(delivery, reason=str(exc), status=DeliveryStatus.SKIPPED)
            outcome = "skipped"
        except SendError as exc:
            outcome = attempt_record(delivery, now=timezone.now(), status=None, error=exc)
        took = time.monotonic() - started
        if outcome != "skipped":
            metrics.send_seconds.labels(kind=delivery.channel.kind).observe(took)
        counts[outcome] += 1
        logger.debug("Delivery %s %s in %.3fs", delivery.pk, outcome, took)
    if rows:
        Delivery.objects.bulk_update(rows, UPDATED_FIELDS)
        sent = [row for row in rows if row.status == DeliveryStatus.SENT]
        if sent:
            deliveries_sent.send(sender=Delivery, deliveries=sent)
    return DispatchResult(**counts)


@transaction.atomic
def deliveries_retry(*, ids: list[int] | None = None, kind: str | None = None) -> int:
    """Put failed deliveries back in the queue, due now, with a fresh set of attempts;
    return how many. `ids` and `kind` (a channel kind) narrow the rows; neither given
    means every failed delivery.
    """
    queryset = Delivery.objects.filter(status=DeliveryStatus.FAILED)
    if ids is not None:
        queryset = queryset.filter(pk__in=list(ids))
    if kind is not None:
        queryset = queryset.filter(channel__kind=kind)
    return queryset.update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now()
    )


@transaction.atomic
def deliveries_purge(
    *,
    older_than_days: int = PURGE_AFTER_DAYS,
    now: datetime | None = None,
    dry_run: bool = False,
    ids: list[int] | None = None,
) -> int:
    """Delete finished deliveries (sent, digested, failed, skipped) created more than
    `older_than_days` ago; return how many were (or, with `dry_run`, would be) deleted.

    Pending and held rows are kept whatever their age. `ids` narrows the rows (the admin's
    selection).
    """
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    queryset = Delivery.objects.filter(status__in=FINISHED, created_at__lt=cutoff)
    if ids is not None:
        queryset = queryset.filter(pk__in=list(ids))
    if dry_run:
        return queryset.count()
    # Digested rows point at their digest with SET NULL; deleting both at once is fine.
    deleted, _ = queryset.delete()
    return deleted
