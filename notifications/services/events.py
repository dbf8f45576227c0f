"""Events into the outbox: one delivery row per (event, channel), written in the caller's
transaction.

An event's key is stable (`incident.opened:42`, `budget.threshold:7:daily:2026-12-02:80`),
so detection running three times over the same incident, or a budget check running every
minute, inserts its deliveries once: the unique (event_key, channel) constraint turns every
repeat into a no-op.
"""

import json
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from analytics.api.incident_serializers import IncidentListSerializer, RootCauseSerializer
from analytics.api.renderers import MoneyJSONRenderer
from analytics.api.serializers import BudgetSerializer
from analytics.datetimes import format_datetime
from analytics.models import Budget, BudgetPeriod, Incident, Severity, Tenant
from analytics.selectors.budgets import budget_period_bounds, budget_period_status
from notifications.models import (
    BudgetThresholds,
    Channel,
    ChannelKind,
    Delivery,
    DeliveryStatus,
    EventType,
    Rule,
    RuleMode,
    breaker_key,
)

SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
DEFAULT_BUDGET_THRESHOLDS = (50, 80, 100)


def _plain(data) -> dict:
    # The API's own rendering (money, datetimes), so a payload reads like the API's answer.
    return json.loads(MoneyJSONRenderer().render(data))


def _admin_url(viewname: str, pk: int) -> str:
    return settings.NOTIFY_BASE_URL.rstrip("/") + reverse(viewname, args=[pk])


def event_payload(*, event_type: str, data: dict, at: datetime) -> dict:
    return {"type": event_type, "timestamp": format_datetime(at), "data": data}


# complexity: picks one rule per channel (an immediate one over a digest one) and gives each
# delivery the status its rule's mode asks
def event_record(
    *,
    tenant: Tenant,
    event_type: str,
    event_key: str,
    severity: str,
    data: dict,
    at: datetime | None = None,
) -> int:
    """Queue the event for every enabled channel with a matching enabled rule.

    A channel matched by an immediate rule gets a pending delivery; one matched only by
    daily-digest rules gets a held one that the digest collects. Return the number of rows
    inserted (0 when the event was already recorded).
    """
    at = at or timezone.now()
    rules = (
        Rule.objects.filter(tenant=tenant, enabled=True, channel__enabled=True)
        .select_related("channel")
        .order_by("id")
    )
    rank = SEVERITY_RANK.get(severity, 0)
    chosen: dict[int, Rule] = {}
    for rule in rules:
        if event_type not in rule.events or rank < SEVERITY_RANK[rule.min_severity]:
            continue
        current = chosen.get(rule.channel_id)
        # An immediate rule wins over a digest rule for the same channel.
        if current is None or (
            current.mode == RuleMode.DAILY_DIGEST and rule.mode == RuleMode.IMMEDIATE
        ):
            chosen[rule.channel_id] = rule
    if not chosen:
        return 0
    payload = event_payload(event_type=event_type, data=data, at=at)
    rows = [
        Delivery(
            tenant=tenant,
            channel_id=channel_id,
            rule=rule,
            event_key=event_key,
            event_type=event_type,
            severity=severity,
            payload=payload,
            status=(
                DeliveryStatus.HELD
                if rule.mode == RuleMode.DAILY_DIGEST
                else DeliveryStatus.PENDING
            ),
            max_attempts=settings.NOTIFY_MAX_ATTEMPTS,
            event_at=at,
            next_attempt_at=at,
            created_at=at,
        )
        for channel_id, rule in chosen.items()
    ]
    before = Delivery.objects.filter(event_key=event_key).count()
    # A repeat of the event conflicts on (event_key, channel) and inserts nothing.
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return Delivery.objects.filter(event_key=event_key).count() - before


def incident_event_record(*, incident: Incident, event: str) -> int:
    """Queue `incident.<event>`; called inside the transaction that changed the incident."""
    event_type = f"incident.{event}"
    # Escalations are keyed by the severity reached: each step up is news once.
    key = f"{event_type}:{incident.pk}"
    if event == "escalated":
        key += f":{incident.severity}"
    body = dict(IncidentListSerializer(incident).data)
    body["root_causes"] = RootCauseSerializer(incident.root_causes or [], many=True).data
    data = {
        "incident": _plain(body),
        "admin_url": _admin_url("admin:analytics_incident_change", incident.pk),
    }
    return event_record(
        tenant=incident.tenant,
        event_type=event_type,
        event_key=key,
        severity=incident.severity,
        data=data,
    )


def _threshold_severity(pct: int) -> str:
    if pct >= 100:
        return Severity.HIGH
    return Severity.MEDIUM if pct >= 80 else Severity.LOW


@transaction.atomic
def budget_thresholds_check(*, tenant: Tenant, at: datetime | None = None) -> int:
    """Queue a `budget.threshold` event for each threshold an active budget's current day or
    month has reached (its own thresholds, else 50, 80 and 100 %); each fires once per
    budget period.

    Return the number of deliveries inserted.
    """
    at = at or timezone.now()
    inserted = 0
    own = dict(
        BudgetThresholds.objects.filter(budget__tenant=tenant).values_list(
            "budget_id", "thresholds_pct"
        )
    )
    for budget in Budget.objects.filter(tenant=tenant, is_active=True).order_by("id"):
        thresholds = sorted(own.get(budget.pk, DEFAULT_BUDGET_THRESHOLDS))
        for period in (BudgetPeriod.DAILY, BudgetPeriod.MONTHLY):
            status = budget_period_status(budget=budget, period=period, at=at)
            if status is None:
                continue
            period_start, _ = budget_period_bounds(period=period, at=at)
            for pct in thresholds:
                if status["usage_pct"] < pct:
                    break
                data = {
                    "budget": _plain(BudgetSerializer(budget).data),
                    "period": period,
                    "period_start": format_datetime(period_start),
                    "threshold_pct": pct,
                    "spend_cents": float(status["spend_cents"]),
                    "limit_cents": status["limit_cents"],
                    "usage_pct": status["usage_pct"],
                    "admin_url": _admin_url("admin:analytics_budget_change", budget.pk),
                }
                inserted += event_record(
                    tenant=tenant,
                    event_type=EventType.BUDGET_THRESHOLD,
                    event_key=(
                        f"budget.threshold:{budget.pk}:{period}:"
                        f"{period_start.date().isoformat()}:{pct}"
                    ),
                    severity=_threshold_severity(pct),
                    data=data,
                    at=at,
                )
    return inserted


@transaction.atomic
def digests_build(*, day: date, now: datetime | None = None) -> int:
    """Fold the held deliveries of each digest rule for UTC `day` into one pending digest
    delivery per (rule, channel) and mark them digested. Safe to run twice: the digest's
    key is `digest:<rule>:<day>`. Return the number of digests queued.
    """
    now = now or timezone.now()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    held = list(
        Delivery.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(status=DeliveryStatus.HELD, event_at__gte=start, event_at__lt=end)
        .exclude(rule=None)
        .order_by("rule_id", "event_at", "id")
    )
    groups: dict[tuple[int, int], list[Delivery]] = {}
    for row in held:
        groups.setdefault((row.rule_id, row.channel_id), []).append(row)
    queued = 0
    for (rule_id, channel_id), rows in groups.items():
        key = f"digest:{rule_id}:{day.isoformat()}"
        digest, created = Delivery.objects.get_or_create(
            event_key=key,
            channel_id=channel_id,
            defaults={
                "tenant_id": rows[0].tenant_id,
                "rule_id": rule_id,
                "event_type": EventType.DIGEST,
                "severity": max((r.severity for r in rows), key=lambda s: SEVERITY_RANK.get(s, 0)),
                "payload": event_payload(
                    event_type=EventType.DIGEST,
                    data={"day": day.isoformat(), "events": [r.payload for r in rows]},
                    at=now,
                ),
                "max_attempts": settings.NOTIFY_MAX_ATTEMPTS,
                "event_at": now,
                "next_attempt_at": now,
                "created_at": now,
            },
        )
        queued += int(created)
        Delivery.objects.filter(pk__in=[r.pk for r in rows]).update(
            status=DeliveryStatus.DIGESTED, digest=digest
        )
    return queued


# CostSim's breaker is staff-level: its events go to the project-wide channels that settings
# name, never to a tenant's.
BREAKER_SEVERITY = {"P1": Severity.CRITICAL, "P2": Severity.HIGH, "P3": Severity.MEDIUM}


def project_channels() -> list[Channel]:
    """The project-wide channels configured in settings, created or updated to match."""
    wanted = []
    if settings.NOTIFY_BREAKER_WEBHOOK_URL:
        wanted.append(
            (
                "project-webhook",
                ChannelKind.WEBHOOK,
                {
                    "url": settings.NOTIFY_BREAKER_WEBHOOK_URL,
                    "secret": settings.NOTIFY_BREAKER_WEBHOOK_SECRET,
                    "email_to": [],
                },
            )
        )
    if settings.NOTIFY_BREAKER_SLACK_URL:
        wanted.append(
            (
                "project-slack",
                ChannelKind.SLACK,
                {"url": settings.NOTIFY_BREAKER_SLACK_URL, "secret": "", "email_to": []},
            )
        )
    if settings.NOTIFY_BREAKER_EMAIL_TO:
        wanted.append(
            (
                "project-email",
                ChannelKind.EMAIL,
                {"url": "", "secret": "", "email_to": list(settings.NOTIFY_BREAKER_EMAIL_TO)},
            )
        )
    channels = []
    for name, kind, fields in wanted:
        channel, _ = Channel.objects.update_or_create(
            tenant=None, name=name, defaults={"kind": kind, "enabled": True, **fields}
        )
        channels.append(channel)
    return channels


def breaker_event_key(*, event: str, incident_id: str | None, at: datetime) -> str:
    """The key of one breaker trip or recovery, the same for every channel it goes to."""
    return breaker_key(event, incident_id or format_datetime(at))


def _project_record(
    *,
    channels: list[Channel],
    key: str,
    severity: str,
    payload: dict,
    at: datetime,
    max_attempts: int,
) -> int:
    rows = [
        Delivery(
            tenant=None,
            channel=channel,
            event_key=key,
            event_type=EventType.COSTSIM_BREAKER,
            severity=BREAKER_SEVERITY.get(severity, Severity.MEDIUM),
            payload=payload,
            max_attempts=max_attempts,
            event_at=at,
            next_attempt_at=at,
            created_at=at,
        )
        for channel in channels
    ]
    before = Delivery.objects.filter(event_key=key).count()
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    return Delivery.objects.filter(event_key=key).count() - before


def breaker_event_record(
    *, event: str, incident_id: str | None, severity: str, data: dict, at: datetime
) -> int:
    """Queue `costsim.breaker` (`event` tripped or recovered) for the project channels;
    called inside the transaction that opened or closed the breaker."""
    channels = project_channels()
    if not channels:
        return 0
    payload = event_payload(
        event_type=EventType.COSTSIM_BREAKER, data={"event": event, **data}, at=at
    )
    return _project_record(
        channels=channels,
        key=breaker_event_key(event=event, incident_id=incident_id, at=at),
        severity=severity,
        payload=payload,
        at=at,
        max_attempts=settings.NOTIFY_MAX_ATTEMPTS,
    )


ALERTMANAGER_CHANNEL = "alertmanager"


def alertmanager_channel() -> Channel:
    """The project-wide Alertmanager channel, created on first use.

    It always exists, so an alert raised while `ALERTMANAGER_URL` is unset is still
    recorded (and `skipped` when its turn comes). Its `url` mirrors the setting for the
    console; the dispatcher reads the setting itself at send time.
    """
    url = settings.ALERTMANAGER_URL or ""
    channel, _ = Channel.objects.update_or_create(
        tenant=None,
        name=ALERTMANAGER_CHANNEL,
        # An operator may disable it in the console; that choice is kept.
        defaults={"kind": ChannelKind.ALERTMANAGER, "url": url},
        create_defaults={"kind": ChannelKind.ALERTMANAGER, "url": url, "enabled": True},
    )
    return channel


def alertmanager_alert_record(
    *,
    event: str,
    incident_id: str | None,
    severity: str,
    alerts: list[dict],
    data: dict,
    at: datetime,
    max_attempts: int,
) -> Delivery:
    """Queue Alertmanager `alerts` for breaker `event` (tripped or recovered), in the
    caller's transaction; return the delivery (the existing one when the event was
    already queued). `data["alerts"]` is posted as is."""
    key = breaker_event_key(event=event, incident_id=incident_id, at=at)
    channel = alertmanager_channel()
    payload = event_payload(
        event_type=EventType.COSTSIM_BREAKER,
        data={"event": event, "incident_id": incident_id, **data, "alerts": alerts},
        at=at,
    )
    _project_record(
        channels=[channel],
        key=key,
        severity=severity,
        payload=payload,
        at=at,
        max_attempts=max_attempts,
    )
    return Delivery.objects.select_related("channel").get(event_key=key, channel=channel)
