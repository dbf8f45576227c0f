"""Where tenants are told about events: channels, rules, and the one delivery outbox.

A delivery is a row written in the same transaction as the event it reports, unique per
(event, channel), so an event that committed is delivered exactly once per channel and an
event that rolled back is never sent.
"""

import uuid

from django.db import models
from django.db.models import Q
from django.utils import timezone

from analytics.models import Budget, Severity, Tenant


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook"
    SLACK = "slack", "Slack"
    EMAIL = "email", "Email"
    # Project-wide only: CostSim breaker alerts posted to `ALERTMANAGER_URL`/api/v2/alerts.
    ALERTMANAGER = "alertmanager", "Alertmanager"


# What a tenant may create; Alertmanager is the operators' own channel.
TENANT_CHANNEL_KINDS = (ChannelKind.WEBHOOK, ChannelKind.SLACK, ChannelKind.EMAIL)
# The same as (value, label) pairs: the API's `kind` choices, named ChannelKindEnum in the schema.
TENANT_CHANNEL_KIND_CHOICES = [(kind.value, kind.label) for kind in TENANT_CHANNEL_KINDS]


class EventType(models.TextChoices):
    INCIDENT_OPENED = "incident.opened", "Incident opened"
    INCIDENT_ESCALATED = "incident.escalated", "Incident escalated"
    INCIDENT_RESOLVED = "incident.resolved", "Incident resolved"
    BUDGET_THRESHOLD = "budget.threshold", "Budget threshold"
    COSTSIM_BREAKER = "costsim.breaker", "CostSim breaker"
    DIGEST = "digest", "Daily digest"
    TEST = "test", "Test"


def breaker_key(event: str, ref: str) -> str:
    """Event key of a CostSim breaker `event` (tripped, recovered); `ref` is the breaker
    incident's id, or the event's time when there is no incident."""
    return f"costsim.breaker:{event}:{ref}"


class RuleMode(models.TextChoices):
    IMMEDIATE = "immediate", "Immediate"
    DAILY_DIGEST = "daily_digest", "Daily digest"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    # Waiting for its rule's daily digest; never sent on its own.
    HELD = "held", "Held for digest"
    DIGESTED = "digested", "Sent in a digest"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    # Nowhere to send it: an Alertmanager alert while `ALERTMANAGER_URL` is unset.
    SKIPPED = "skipped", "Skipped"


class Channel(models.Model):
    # None: a project-wide (staff) channel, configured from settings, never in the API.
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=ChannelKind.choices)
    url = models.URLField(max_length=2000, blank=True, default="")
    email_to = models.JSONField(default=list, blank=True)
    # Standard Webhooks secret (`whsec_` + base64). Shown once, when the channel is created.
    secret = models.CharField(max_length=200, blank=True, default="", editable=False)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="notify_channel_name_unique"),
            models.UniqueConstraint(
                fields=["name"], condition=Q(tenant=None), name="notify_project_channel_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class Rule(models.Model):
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="rules")
    events = models.JSONField(default=list)
    min_severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.LOW)
    mode = models.CharField(max_length=12, choices=RuleMode.choices, default=RuleMode.IMMEDIATE)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"rule #{self.pk} -> {self.channel_id} ({self.mode})"


class Delivery(models.Model):
    # None for the project-wide channels' deliveries (CostSim breaker events).
    tenant = models.ForeignKey(
        Tenant, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    rule = models.ForeignKey(
        Rule, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    # What happened, stable across detection runs: the same event always has the same key.
    event_key = models.CharField(max_length=200)
    event_type = models.CharField(max_length=24, choices=EventType.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices, blank=True, default="")
    # The message body `{"type", "timestamp", "data"}`; every format is rendered from it.
    payload = models.JSONField()
    # Sent as `webhook-id`: a receiver that saw it already can drop a retried message.
    idempotency_key = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    status = models.CharField(
        max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    digest = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="digested"
    )
    attempts = models.IntegerField(default=0)
    max_attempts = models.IntegerField(default=8)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    response_status = models.IntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=200, blank=True, default="")
    # From the event to the accepted attempt (detection to delivery), in milliseconds.
    latency_ms = models.BigIntegerField(null=True, blank=True)
    event_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            # Exactly one delivery per (event, channel), however often detection reruns.
            models.UniqueConstraint(
                fields=["event_key", "channel"], name="notify_delivery_once_per_channel"
            ),
        ]
        indexes = [
            # the dispatcher picks due pending rows ordered by next_attempt_at
            models.Index(
                fields=["next_attempt_at", "id"],
                condition=Q(status="pending"),
                name="notify_delivery_due",
            ),
            # the digest job collects a rule's held rows
            models.Index(
                fields=["rule", "event_at"], condition=Q(status="held"), name="notify_held"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} -> {self.channel_id} ({self.status})"


class BudgetThresholds(models.Model):
    """A budget's own notification thresholds; a budget without a row uses 50, 80, 100 %."""

    budget = models.OneToOneField(
        Budget, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    thresholds_pct = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "budget thresholds"

    def __str__(self) -> str:
        return f"budget #{self.budget_id}: {self.thresholds_pct}"
