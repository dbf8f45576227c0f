"""Migrations notifications 0002 and costsim 0004 move queued CostSim alerts into the one
outbox, and the dispatcher then sends them: run against the real schema history."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from notifications.models import Channel, Delivery
from tests.factories import utc

BEFORE = [("notifications", "0001_initial"), ("costsim", "0003_canary_insufficient_data")]
T0 = utc(2026, 3, 2, 10)


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_queued_alerts_move_into_the_notifications_outbox():
    # given the schema before the move, with alerts in every status
    old = _migrate(BEFORE)
    incident_model = old.get_model("costsim", "BreakerIncident")
    outbox = old.get_model("costsim", "AlertOutbox")
    incident = incident_model.objects.create(
        id="abc123def456", reason="drift", severity="P1", trigger="drift", created_at=T0
    )
    alert = [{"labels": {"alertname": "CostSimV2Disabled"}, "annotations": {}}]
    pending = outbox.objects.create(
        payload=alert,
        alert_type="disable",
        incident=incident,
        attempts=2,
        max_attempts=10,
        next_attempt_at=T0 + timedelta(seconds=8),
        last_error="HTTP 503: busy",
        created_at=T0,
    )
    outbox.objects.create(
        payload=alert,
        alert_type="enable",
        incident=incident,
        status="sent",
        attempts=0,
        max_attempts=10,
        created_at=T0 + timedelta(hours=1),
        sent_at=T0 + timedelta(hours=1, seconds=3),
    )
    outbox.objects.create(
        payload=alert, alert_type="enable", status="skipped", max_attempts=10, created_at=T0
    )
    # when
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    # then
    channel = Channel.objects.get(tenant=None, name="alertmanager")
    assert channel.kind == "alertmanager"
    rows = {row.event_key: row for row in Delivery.objects.filter(channel=channel).order_by("id")}
    assert set(rows) == {
        "costsim.breaker:tripped:abc123def456",
        "costsim.breaker:recovered:abc123def456",
        "costsim.breaker:recovered:2026-03-02T10:00:00Z",
    }
    moved = rows["costsim.breaker:tripped:abc123def456"]
    assert (moved.status, moved.attempts, moved.max_attempts) == ("pending", 2, 10)
    assert moved.next_attempt_at == pending.next_attempt_at
    assert moved.last_error == "HTTP 503: busy"
    assert moved.severity == "CRITICAL" and moved.event_at == T0
    assert moved.payload["data"]["alerts"] == alert
    assert moved.payload["data"]["incident_id"] == "abc123def456"
    sent = rows["costsim.breaker:recovered:abc123def456"]
    assert (sent.status, sent.latency_ms) == ("sent", 3000)
    assert rows["costsim.breaker:recovered:2026-03-02T10:00:00Z"].status == "skipped"
    # and the old table is gone
    assert "costsim_alertoutbox" not in connection.introspection.table_names()
