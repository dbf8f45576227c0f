"""Writes of channels and rules, and a channel's test message."""

import base64
import secrets
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from analytics.datetimes import format_datetime
from analytics.models import Budget, Severity, Tenant
from notifications.models import (
    TENANT_CHANNEL_KINDS,
    BudgetThresholds,
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    EventType,
    Rule,
)
from notifications.services.events import DEFAULT_BUDGET_THRESHOLDS, event_payload
from notifications.services.outbox import (
    NothingToSend,
    SendError,
    attempt_record,
    delivery_send,
)
from notifications.services.safety import UnsafeUrl, url_check

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
MIN_SECRET_BYTES = 24
MAX_EMAIL_RECIPIENTS = 20
# What a tenant's rule may ask for. CostSim breaker events are project-wide (staff) and go
# only to the channels settings name, so a tenant cannot subscribe to them.
RULE_EVENTS = (
    EventType.INCIDENT_OPENED,
    EventType.INCIDENT_ESCALATED,
    EventType.INCIDENT_RESOLVED,
    EventType.BUDGET_THRESHOLD,
)


def secret_generate() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _secret_check(secret: str) -> None:
    try:
        raw = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except ValueError:
        raise ValidationError({"secret": ["must be `whsec_` followed by base64"]}) from None
    if not secret.startswith(SECRET_PREFIX) or len(raw) < MIN_SECRET_BYTES:
        raise ValidationError(
            {"secret": [f"must be `whsec_` followed by at least {MIN_SECRET_BYTES} bytes"]}
        )


# complexity: each channel kind has its own required and forbidden fields, each refused naming its
# field
def channel_validate(channel: Channel) -> None:
    """Raise ValidationError (a dict naming the field) unless `channel` may be saved as is."""
    if channel.tenant_id is not None and channel.kind not in TENANT_CHANNEL_KINDS:
        raise ValidationError({"kind": [f"must be one of {', '.join(TENANT_CHANNEL_KINDS)}"]})
    if channel.kind in (ChannelKind.WEBHOOK, ChannelKind.SLACK):
        if not channel.url:
            raise ValidationError({"url": ["is required for webhook and slack channels"]})
        try:
            url_check(channel.url)
        except UnsafeUrl as exc:
            raise ValidationError({"url": [str(exc)]}) from None
        if channel.email_to:
            raise ValidationError({"email_to": ["is only for email channels"]})
    else:
        if channel.url:
            raise ValidationError({"url": ["is only for webhook and slack channels"]})
        if not channel.email_to:
            raise ValidationError({"email_to": ["lists at least one address"]})
        if len(channel.email_to) > MAX_EMAIL_RECIPIENTS:
            raise ValidationError({"email_to": [f"lists at most {MAX_EMAIL_RECIPIENTS}"]})
        for index, address in enumerate(channel.email_to):
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({f"email_to[{index}]": ["is not an email address"]}) from None
    if (
        Channel.objects.filter(tenant=channel.tenant, name=channel.name)
        .exclude(pk=channel.pk)
        .exists()
    ):
        raise ValidationError({"name": ["a channel of this name exists"]})
    channel.full_clean(exclude=["tenant"], validate_unique=False)


@transaction.atomic
def channel_create(*, tenant: Tenant, data: dict) -> Channel:
    """Create a channel; a webhook channel gets a generated secret unless one is given."""
    data = dict(data)
    secret = data.pop("secret", None)
    channel = Channel(tenant=tenant, **data)
    if channel.kind == ChannelKind.WEBHOOK:
        if secret:
            _secret_check(secret)
        channel.secret = secret or secret_generate()
    elif secret:
        raise ValidationError({"secret": ["is only for webhook channels"]})
    channel_validate(channel)
    channel.save()
    return channel


@transaction.atomic
def channel_update(*, channel: Channel, data: dict) -> Channel:
    data = dict(data)
    secret = data.pop("secret", None)
    if "kind" in data and data["kind"] != channel.kind:
        raise ValidationError({"kind": ["cannot be changed; create another channel"]})
    for field, value in data.items():
        setattr(channel, field, value)
    if secret:
        if channel.kind != ChannelKind.WEBHOOK:
            raise ValidationError({"secret": ["is only for webhook channels"]})
        _secret_check(secret)
        channel.secret = secret
    channel_validate(channel)
    channel.save()
    return channel


@transaction.atomic
def channel_secret_rotate(*, channel: Channel) -> str:
    """Give a webhook channel a new generated secret and return it; the old one stops
    signing at once. This return value is the only place the new secret is shown."""
    if channel.kind != ChannelKind.WEBHOOK:
        raise ValidationError({"secret": ["is only for webhook channels"]})
    channel.secret = secret_generate()
    channel.save(update_fields=["secret", "updated_at"])
    return channel.secret


@transaction.atomic
def channel_delete(*, channel: Channel) -> None:
    channel.delete()


def _rule_check(rule: Rule) -> None:
    if rule.channel.tenant_id != rule.tenant_id:
        raise ValidationError({"channel": ["does not exist"]})
    if not isinstance(rule.events, list) or not rule.events:
        raise ValidationError({"events": ["lists at least one event"]})
    for index, event in enumerate(rule.events):
        if event not in RULE_EVENTS:
            raise ValidationError(
                {f"events[{index}]": [f"must be one of {', '.join(RULE_EVENTS)}"]}
            )
    rule.events = sorted(set(rule.events))
    rule.full_clean(exclude=["tenant", "channel"])


@transaction.atomic
def rule_create(*, tenant: Tenant, data: dict) -> Rule:
    rule = Rule(tenant=tenant, **data)
    _rule_check(rule)
    rule.save()
    return rule


@transaction.atomic
def rule_update(*, rule: Rule, data: dict) -> Rule:
    for field, value in data.items():
        setattr(rule, field, value)
    _rule_check(rule)
    rule.save()
    return rule


@transaction.atomic
def rule_delete(*, rule: Rule) -> None:
    rule.delete()


def channel_test(*, channel: Channel) -> Delivery:
    """Send a test message through the channel now, once, and return its delivery."""
    now = timezone.now()
    data = {"channel": channel.name, "message": "If you can read this, the channel works."}
    if channel.kind == ChannelKind.ALERTMANAGER:
        data["alerts"] = [_test_alert(channel=channel, at=now)]
    payload = event_payload(event_type=EventType.TEST, data=data, at=now)
    delivery = Delivery.objects.create(
        tenant=channel.tenant,
        channel=channel,
        event_key=f"test:{uuid.uuid4().hex}",
        event_type=EventType.TEST,
        severity=Severity.LOW,
        payload=payload,
        # A test is tried once, here; the dispatcher never picks it up.
        status=DeliveryStatus.FAILED,
        max_attempts=1,
        event_at=now,
        created_at=now,
    )
    delivery.channel = channel
    try:
        status = delivery_send(delivery)
        attempt_record(delivery, now=timezone.now(), status=status)
    except NothingToSend as exc:
        delivery.status = DeliveryStatus.SKIPPED
        delivery.last_error = str(exc)
    except SendError as exc:
        attempt_record(delivery, now=timezone.now(), status=None, error=exc)
    delivery.save()
    return delivery


def _test_alert(*, channel: Channel, at) -> dict:
    # Starts and ends at once, so Alertmanager shows it as resolved straight away.
    stamp = format_datetime(at)
    return {
        "labels": {
            "alertname": "CostwiseNotificationTest",
            "severity": "info",
            "component": "notifications",
            "instance": settings.INSTANCE_ID,
        },
        "annotations": {"summary": f"Test message of channel {channel.name}"},
        "startsAt": stamp,
        "endsAt": stamp,
    }


MAX_THRESHOLDS = 10


@transaction.atomic
def budget_thresholds_set(*, budget: Budget, thresholds_pct: list[int]) -> BudgetThresholds:
    """Set the budget's notification thresholds (1..1000 %, at most 10, duplicates dropped)."""
    values = sorted(set(thresholds_pct))
    if not values or len(values) > MAX_THRESHOLDS:
        raise ValidationError({"thresholds_pct": [f"lists 1 to {MAX_THRESHOLDS} percentages"]})
    row, _ = BudgetThresholds.objects.update_or_create(
        budget=budget, defaults={"thresholds_pct": values}
    )
    return row


def budget_thresholds_get(*, budget: Budget) -> list[int]:
    row = BudgetThresholds.objects.filter(budget=budget).first()
    return list(row.thresholds_pct) if row else list(DEFAULT_BUDGET_THRESHOLDS)
