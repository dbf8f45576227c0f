"""The Alertmanager channel kind and the `skipped` status, and CostSim's alert outbox rows
moved into the one delivery outbox (costsim 0004 then drops the old table)."""

from datetime import UTC

from django.conf import settings
from django.db import migrations, models

BREAKER_SEVERITY = {"P1": "CRITICAL", "P2": "HIGH", "P3": "MEDIUM"}
# AlertOutbox.alert_type -> the breaker event it reported.
EVENTS = {"disable": "tripped", "enable": "recovered"}


def _iso(at) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def move_alerts(apps, schema_editor):
    """Copy every costsim alert, whatever its status, onto the Alertmanager channel.

    Keys follow `costsim.breaker:<event>:<incident id>`, the breaker's own event key, so a
    trip queued before this migration and its project-channel rows stay one event. Pending
    rows keep their attempts and due time and are sent by the notifications dispatcher.
    """
    AlertOutbox = apps.get_model("costsim", "AlertOutbox")
    Channel = apps.get_model("notifications", "Channel")
    Delivery = apps.get_model("notifications", "Delivery")
    alerts = list(AlertOutbox.objects.select_related("incident").order_by("id"))
    if not alerts:
        return
    channel, _ = Channel.objects.get_or_create(
        tenant=None,
        name="alertmanager",
        defaults={"kind": "alertmanager", "url": settings.ALERTMANAGER_URL or ""},
    )
    taken = set(Delivery.objects.filter(channel=channel).values_list("event_key", flat=True))
    rows = []
    for alert in alerts:
        event = EVENTS.get(alert.alert_type, alert.alert_type)
        key = f"costsim.breaker:{event}:{alert.incident_id or _iso(alert.created_at)}"
        if key in taken:  # two alerts of one event: keep both, the later one apart
            key = f"{key}:alert-{alert.pk}"
        taken.add(key)
        incident = alert.incident
        severity = BREAKER_SEVERITY.get(incident.severity, "MEDIUM") if incident else "MEDIUM"
        if event == "recovered":
            severity = "MEDIUM"
        latency = None
        if alert.sent_at is not None:
            latency = int((alert.sent_at - alert.created_at).total_seconds() * 1000)
        rows.append(
            Delivery(
                tenant=None,
                channel=channel,
                event_key=key,
                event_type="costsim.breaker",
                severity=severity,
                payload={
                    "type": "costsim.breaker",
                    "timestamp": _iso(alert.created_at),
                    "data": {
                        "event": event,
                        "incident_id": alert.incident_id,
                        "breaker": alert.breaker_name,
                        "alert_type": alert.alert_type,
                        "alerts": alert.payload,
                    },
                },
                status=alert.status,
                attempts=alert.attempts,
                max_attempts=alert.max_attempts,
                next_attempt_at=alert.next_attempt_at,
                last_attempt_at=alert.last_attempt_at,
                last_error=alert.last_error,
                latency_ms=latency,
                event_at=alert.created_at,
                created_at=alert.created_at,
                sent_at=alert.sent_at,
            )
        )
    Delivery.objects.bulk_create(rows)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("costsim", "0003_canary_insufficient_data"),
    ]

    operations = [
        migrations.AlterField(
            model_name="channel",
            name="kind",
            field=models.CharField(
                choices=[
                    ("webhook", "Webhook"),
                    ("slack", "Slack"),
                    ("email", "Email"),
                    ("alertmanager", "Alertmanager"),
                ],
                max_length=12,
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("held", "Held for digest"),
                    ("digested", "Sent in a digest"),
                    ("sent", "Sent"),
                    ("failed", "Failed"),
                    ("skipped", "Skipped"),
                ],
                default="pending",
                max_length=8,
            ),
        ),
        migrations.RunPython(move_alerts, migrations.RunPython.noop, elidable=False),
    ]
