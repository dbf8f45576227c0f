"""Delivery of the notification outbox.

The beat job claims a batch of due pending rows with `FOR UPDATE SKIP LOCKED`, so two
dispatchers running side by side each take different rows and never send one twice. A row
stays locked while it is sent; a failed attempt moves it forward with exponential backoff,
and after `max_attempts` it is `failed`. A retry after a timeout the receiver did accept
carries the same `webhook-id`, which is how a receiver drops the duplicate.
"""

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from notifications.models import ChannelKind, Delivery, DeliveryStatus
from notifications.services.formats import email_message, slack_message
from notifications.services.safety import UnsafeUrl, url_check

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600
LAST_ERROR_MAX_CHARS = 500
RESPONSE_EXCERPT_CHARS = 200
CHANNEL_DISABLED = "channel disabled"
# Sent, digested and failed rows older than this are deleted by the daily digest job.
PURGE_AFTER_DAYS = 30


class SendError(Exception):
    """One attempt failed; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None, excerpt: str = ""):
        super().__init__(message)
        self.status = status
        self.excerpt = excerpt


@dataclass(frozen=True)
class DispatchResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    @property
    def claimed(self) -> int:
        return self.sent + self.retrying + self.failed


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


def _post(url: str, *, body: str, headers: dict[str, str]) -> int:
    try:
        url_check(url)
    except UnsafeUrl as exc:
        raise SendError(f"unsafe url: {exc}") from None
    try:
        # No redirects: a 3xx to an internal address must not be followed.
        response = requests.post(
            url,
            data=body.encode(),
            headers=headers,
            timeout=settings.NOTIFY_TIMEOUT,
            allow_redirects=False,
        )
    except requests.Timeout:
        raise SendError("timeout") from None
    except requests.RequestException as exc:
        raise SendError(f"connection error: {type(exc).__name__}") from None
    excerpt = response.text[:RESPONSE_EXCERPT_CHARS]
    if not 200 <= response.status_code < 300:
        raise SendError(f"HTTP {response.status_code}", response.status_code, excerpt)
    return response.status_code


def delivery_send(delivery: Delivery) -> int | None:
    """Send one delivery once; return the HTTP status (None for email) or raise SendError."""
    channel = delivery.channel
    if channel.kind == ChannelKind.WEBHOOK:
        body = json.dumps(delivery.payload, separators=(",", ":"))
        headers = webhook_headers(delivery=delivery, body=body, at=timezone.now())
        return _post(channel.url, body=body, headers=headers)
    if channel.kind == ChannelKind.SLACK:
        body = json.dumps(slack_message(delivery.payload))
        headers = {"content-type": "application/json"}
        return _post(channel.url, body=body, headers=headers)
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
        raise SendError(f"email error: {type(exc).__name__}") from None
    return None


def attempt_record(delivery: Delivery, *, now: datetime, status: int | None, error=None) -> str:
    delivery.attempts += 1
    delivery.last_attempt_at = now
    if error is None:
        delivery.status = DeliveryStatus.SENT
        delivery.sent_at = now
        delivery.response_status = status
        delivery.last_error = ""
        delivery.latency_ms = int((now - delivery.event_at).total_seconds() * 1000)
        return "sent"
    delivery.response_status = error.status
    delivery.response_excerpt = error.excerpt
    delivery.last_error = str(error)[:LAST_ERROR_MAX_CHARS]
    if delivery.attempts >= delivery.max_attempts:
        delivery.status = DeliveryStatus.FAILED
        logger.error("Delivery %s failed for good: %s", delivery.pk, delivery.last_error)
        return "failed"
    delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
    logger.warning(
        "Delivery %s attempt %s failed: %s", delivery.pk, delivery.attempts, delivery.last_error
    )
    return "retrying"


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


@transaction.atomic
def deliveries_dispatch(*, batch_size: int | None = None) -> DispatchResult:
    """Send one batch of due pending deliveries; safe to run side by side."""
    rows = list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("channel")
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
        .order_by("next_attempt_at", "id")[: batch_size or settings.NOTIFY_BATCH_SIZE]
    )
    counts = {"sent": 0, "retrying": 0, "failed": 0}
    for delivery in rows:
        started = time.monotonic()
        if not delivery.channel.enabled:
            # Disabled after the event was queued: the message is dropped, visibly.
            delivery.status = DeliveryStatus.FAILED
            delivery.last_error = CHANNEL_DISABLED
            counts["failed"] += 1
            continue
        try:
            status = delivery_send(delivery)
            outcome = attempt_record(delivery, now=timezone.now(), status=status)
        except SendError as exc:
            outcome = attempt_record(delivery, now=timezone.now(), status=None, error=exc)
        counts[outcome] += 1
        logger.debug("Delivery %s %s in %.3fs", delivery.pk, outcome, time.monotonic() - started)
    if rows:
        Delivery.objects.bulk_update(rows, UPDATED_FIELDS)
    return DispatchResult(**counts)


@transaction.atomic
def deliveries_retry(*, ids: list[int]) -> int:
    """Put failed deliveries back in the queue with a fresh set of attempts."""
    return Delivery.objects.filter(pk__in=ids, status=DeliveryStatus.FAILED).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now()
    )


@transaction.atomic
def deliveries_purge(
    *, older_than_days: int = PURGE_AFTER_DAYS, now: datetime | None = None
) -> int:
    """Delete finished deliveries created more than `older_than_days` ago; return how many.

    Pending and held rows are kept whatever their age.
    """
    cutoff = (now or timezone.now()) - timedelta(days=older_than_days)
    done = (DeliveryStatus.SENT, DeliveryStatus.DIGESTED, DeliveryStatus.FAILED)
    deleted, _ = Delivery.objects.filter(status__in=done, created_at__lt=cutoff).delete()
    return deleted
