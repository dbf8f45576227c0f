"""Breaker alerts through the notifications outbox, against a real local HTTP server
standing in for Alertmanager."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection, transaction
from prometheus_client import REGISTRY

from costsim.models import BreakerIncident
from costsim.services.breaker import breaker_disable, breaker_enable
from costsim.tasks import prune_provenance_task
from notifications.models import ChannelKind, Delivery, DeliveryStatus
from notifications.selectors import outbox_stats
from notifications.services.outbox import (
    backoff_seconds,
    deliveries_dispatch,
    deliveries_purge,
    deliveries_retry,
)
from tests.costsim.factories import ProvenanceFactory
from tests.costsim.safety_factories import AlertDeliveryFactory
from tests.factories import utc

T0 = utc(2026, 3, 2, 10)
ALERTMANAGER = ChannelKind.ALERTMANAGER


class _FakeAlertmanager(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.received.append(
                {"path": self.path, "content_type": self.headers["Content-Type"], "body": body}
            )
        mode = self.server.mode
        if mode == "slow":
            time.sleep(1.0)
        status = 500 if mode == "error" else 200
        reply = b"upstream exploded " * 20 if mode == "error" else b""
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test)

    def log_message(self, *args):
        pass


@pytest.fixture
def alertmanager(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeAlertmanager)
    server.daemon_threads = True
    server.received = []
    server.lock = threading.Lock()
    server.mode = "ok"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.ALERTMANAGER_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.ALERTMANAGER_TIMEOUT = 0.3
    # Alertmanager is the operators' own, usually internal: the tenant URL rule is off
    # for it whatever this says.
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    yield server
    server.shutdown()
    server.server_close()


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _errors(error_type: str) -> float:
    return _sample("notifications_delivery_errors_total", kind=ALERTMANAGER, error_type=error_type)


def _attempts(outcome: str) -> float:
    return _sample("notifications_delivery_attempts_total", kind=ALERTMANAGER, outcome=outcome)


@pytest.mark.django_db
def test_2xx_marks_the_alert_and_its_incident_sent(alertmanager):
    # given a real trip, whose alert is in the outbox
    with time_machine.travel(T0, tick=False):
        breaker_disable(reason="bad deploy", actor="user:ops")
    incident = BreakerIncident.objects.get()
    row = Delivery.objects.get(channel__kind=ALERTMANAGER)
    sent = _attempts("sent")
    latencies = _sample("notifications_delivery_latency_seconds_count", kind=ALERTMANAGER)
    # when
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        result = deliveries_dispatch()
    # then
    assert (result.sent, result.retrying, result.failed, result.skipped) == (1, 0, 0, 0)
    assert len(alertmanager.received) == 1
    request = alertmanager.received[0]
    assert request["path"] == "/api/v2/alerts"
    assert request["content_type"] == "application/json"
    assert json.loads(request["body"]) == row.payload["data"]["alerts"]
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SENT
    assert row.sent_at == T0 + timedelta(days=1)
    assert row.attempts == 1
    assert row.latency_ms == 24 * 3600 * 1000
    incident.refresh_from_db()
    assert incident.alert_sent is True
    assert incident.alert_sent_at == T0 + timedelta(days=1)
    assert _attempts("sent") == sent + 1
    assert (
        _sample("notifications_delivery_latency_seconds_count", kind=ALERTMANAGER) == latencies + 1
    )


@pytest.mark.django_db
def test_http_500_backs_off_and_records_an_excerpt_of_the_body(alertmanager):
    # given
    alertmanager.mode = "error"
    row = AlertDeliveryFactory(created_at=T0)
    failures, retried = _errors("http_500"), _attempts("retried")
    # when
    with time_machine.travel(T0, tick=False):
        result = deliveries_dispatch()
    # then
    assert result.retrying == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.PENDING
    assert row.attempts == 1
    assert row.last_attempt_at == T0
    assert row.next_attempt_at == T0 + timedelta(seconds=10)
    assert (row.last_error, row.response_status) == ("HTTP 500", 500)
    assert row.response_excerpt == ("upstream exploded " * 20)[:200]
    assert _errors("http_500") == failures + 1
    assert _attempts("retried") == retried + 1


@pytest.mark.django_db
def test_timeout_is_recorded_as_a_timeout(alertmanager):
    # given
    alertmanager.mode = "slow"
    row = AlertDeliveryFactory()
    failures = _errors("timeout")
    # when
    result = deliveries_dispatch()
    # then
    assert result.retrying == 1
    row.refresh_from_db()
    assert row.last_error == "timeout"
    assert row.attempts == 1
    assert _errors("timeout") == failures + 1


@pytest.mark.django_db
def test_refused_connection_is_a_connection_error(settings):
    # given nothing listens on port 1
    settings.ALERTMANAGER_URL = "http://127.0.0.1:1"
    row = AlertDeliveryFactory()
    failures = _errors("connection")
    # when
    deliveries_dispatch()
    # then
    row.refresh_from_db()
    assert row.attempts == 1
    assert row.last_error.startswith("connection error: ")
    assert len(row.last_error) <= 500
    assert _errors("connection") == failures + 1


@pytest.mark.django_db
def test_last_allowed_attempt_fails_the_alert_for_good(alertmanager):
    # given
    alertmanager.mode = "error"
    row = AlertDeliveryFactory(attempts=9, max_attempts=10)
    failed = _attempts("failed")
    # when
    result = deliveries_dispatch()
    # then
    assert result.failed == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.FAILED
    assert row.attempts == 10
    assert _attempts("failed") == failed + 1


def test_backoff_doubles_up_to_an_hour():
    # then
    assert [backoff_seconds(n) for n in range(1, 11)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        1280,
        2560,
        3600,
    ]


@pytest.mark.django_db
def test_without_alertmanager_url_alerts_are_skipped(settings):
    # given
    settings.ALERTMANAGER_URL = None
    row = AlertDeliveryFactory()
    skipped = _attempts("skipped")
    # when
    result = deliveries_dispatch()
    # then
    assert result.skipped == 1
    row.refresh_from_db()
    assert row.status == DeliveryStatus.SKIPPED
    assert row.last_error == "alertmanager url not configured"
    assert row.attempts == 0
    assert _attempts("skipped") == skipped + 1
    # and a skipped alert is done: the next run leaves it
    assert deliveries_dispatch().claimed == 0


@pytest.mark.django_db
def test_batch_takes_due_rows_in_order_up_to_the_batch_size(alertmanager, settings):
    # given
    settings.NOTIFY_BATCH_SIZE = 2
    later = AlertDeliveryFactory(next_attempt_at=T0 - timedelta(minutes=1))
    first = AlertDeliveryFactory(next_attempt_at=T0 - timedelta(minutes=3))
    second = AlertDeliveryFactory(next_attempt_at=T0 - timedelta(minutes=2))
    not_due = AlertDeliveryFactory(next_attempt_at=T0 + timedelta(minutes=1))
    # when
    with time_machine.travel(T0, tick=False):
        result = deliveries_dispatch()
    # then
    assert result.sent == 2
    sent = [json.loads(r["body"]) for r in alertmanager.received]
    assert sent == [first.payload["data"]["alerts"], second.payload["data"]["alerts"]]
    statuses = dict(
        Delivery.objects.filter(pk__in=[later.pk, not_due.pk, first.pk]).values_list("pk", "status")
    )
    assert statuses == {
        later.pk: DeliveryStatus.PENDING,
        not_due.pk: DeliveryStatus.PENDING,
        first.pk: DeliveryStatus.SENT,
    }


@pytest.mark.django_db(transaction=True)
def test_rows_locked_elsewhere_are_skipped_not_waited_for(alertmanager):
    # given a row that another transaction holds FOR UPDATE
    locked = AlertDeliveryFactory(next_attempt_at=T0)
    free = AlertDeliveryFactory(next_attempt_at=T0 + timedelta(seconds=1))
    holding, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                Delivery.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    assert holding.wait(timeout=10)
    # when
    try:
        result = deliveries_dispatch()
    finally:
        release.set()
        thread.join(timeout=10)
    # then
    assert result.sent == 1
    assert Delivery.objects.get(pk=locked.pk).status == DeliveryStatus.PENDING
    assert Delivery.objects.get(pk=free.pk).status == DeliveryStatus.SENT


@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_side_by_side_send_each_alert_once(alertmanager):
    # given twelve due alerts and a slow Alertmanager, so the two runs overlap
    rows = [AlertDeliveryFactory() for _ in range(12)]
    alertmanager.mode = "ok"
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(deliveries_dispatch(batch_size=12))
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            connection.close()

    # when
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert not errors, errors
    assert sum(result.sent for result in results) == 12
    bodies = [json.loads(r["body"])[0]["labels"]["n"] for r in alertmanager.received]
    assert sorted(bodies) == sorted(row.payload["data"]["alerts"][0]["labels"]["n"] for row in rows)
    assert Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 12


@pytest.mark.django_db
def test_trip_and_recovery_are_one_event_each_across_channels(alertmanager, settings):
    # given a project webhook besides Alertmanager
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    settings.NOTIFY_BREAKER_WEBHOOK_URL = f"{settings.ALERTMANAGER_URL}/hook"
    settings.NOTIFY_BREAKER_WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    # when
    breaker_disable(reason="drift", actor="user:ops")
    breaker_enable(reason="fixed", actor="user:ops")
    # then: one key per event, one row per channel
    incident = BreakerIncident.objects.get()
    keys = sorted(Delivery.objects.values_list("event_key", "channel__kind"))
    assert keys == [
        (f"costsim.breaker:recovered:{incident.pk}", "alertmanager"),
        (f"costsim.breaker:recovered:{incident.pk}", "webhook"),
        (f"costsim.breaker:tripped:{incident.pk}", "alertmanager"),
        (f"costsim.breaker:tripped:{incident.pk}", "webhook"),
    ]
    assert deliveries_dispatch().sent == 4
    paths = sorted(r["path"] for r in alertmanager.received)
    assert paths == ["/api/v2/alerts", "/api/v2/alerts", "/hook", "/hook"]


# Operator actions ---------------------------------------------------------------------


@pytest.mark.django_db
def test_retry_requeues_only_the_chosen_failed_alerts_due_now():
    # given
    failed = AlertDeliveryFactory(status=DeliveryStatus.FAILED, attempts=10, max_attempts=10)
    other_failed = AlertDeliveryFactory(status=DeliveryStatus.FAILED, attempts=10)
    sent = AlertDeliveryFactory(status=DeliveryStatus.SENT)
    # when
    with time_machine.travel(T0, tick=False):
        count = deliveries_retry(ids=[failed.pk, sent.pk])
    # then
    assert count == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.next_attempt_at) == (
        DeliveryStatus.PENDING,
        0,
        T0,
    )
    assert Delivery.objects.get(pk=other_failed.pk).status == DeliveryStatus.FAILED
    assert Delivery.objects.get(pk=sent.pk).status == DeliveryStatus.SENT


@pytest.mark.django_db
def test_purge_deletes_finished_alerts_older_than_30_days_only():
    # given
    old = T0 - timedelta(days=31)
    doomed = [
        AlertDeliveryFactory(created_at=old, status=status)
        for status in (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.SKIPPED)
    ]
    old_pending = AlertDeliveryFactory(created_at=old)
    recent_sent = AlertDeliveryFactory(
        created_at=T0 - timedelta(days=29), status=DeliveryStatus.SENT
    )
    # when
    with time_machine.travel(T0, tick=False):
        would = deliveries_purge(dry_run=True)
        deleted = deliveries_purge()
    # then
    assert would == deleted == 3
    remaining = set(Delivery.objects.values_list("pk", flat=True))
    assert remaining == {old_pending.pk, recent_sent.pk}
    assert not remaining & {row.pk for row in doomed}


@pytest.mark.django_db
def test_queue_stats_count_by_status():
    # given
    with time_machine.travel(T0, tick=False):
        AlertDeliveryFactory(created_at=T0 - timedelta(minutes=5))
        AlertDeliveryFactory(next_attempt_at=T0 + timedelta(minutes=5))
        AlertDeliveryFactory(status=DeliveryStatus.SENT)
        AlertDeliveryFactory(status=DeliveryStatus.FAILED)
        stats = outbox_stats(kind=ALERTMANAGER)
        webhooks = outbox_stats(kind=ChannelKind.WEBHOOK)
    # then
    assert stats == {
        "pending": 2,
        "due": 1,
        "held": 0,
        "digested": 0,
        "sent": 1,
        "failed": 1,
        "skipped": 0,
        "oldest_pending_at": T0 - timedelta(minutes=5),
    }
    assert webhooks["pending"] == 0


# Commands and tasks -------------------------------------------------------------------


@pytest.mark.django_db
def test_notify_dispatch_command_prints_the_queue(alertmanager):
    # given
    AlertDeliveryFactory()
    out = StringIO()
    # when
    call_command("notify", "dispatch", stdout=out)
    # then
    text = out.getvalue()
    assert "Queue before: 1 pending (1 due)" in text
    assert "Queue after:  0 pending (0 due), 0 held, 1 sent" in text
    assert "1 sent, 0 to retry, 0 failed, 0 skipped" in text


@pytest.mark.django_db
def test_notify_retry_purge_and_inspect_commands(alertmanager):
    # given
    alertmanager.mode = "error"
    failed = AlertDeliveryFactory(status=DeliveryStatus.FAILED, last_error="HTTP 502")
    AlertDeliveryFactory(created_at=utc(2020, 1, 1), status=DeliveryStatus.SENT)
    out = StringIO()
    # when
    call_command("notify", "inspect", "--kind", "alertmanager", stdout=out)
    call_command("notify", "retry", "--all-failed", stdout=out)
    call_command("notify", "purge", "--dry-run", stdout=out)
    call_command("notify", "purge", stdout=out)
    # then
    text = out.getvalue()
    assert "1 pending" not in text.splitlines()[0]
    assert f"#{failed.pk} alertmanager:alertmanager costsim.breaker failed 0/10" in text
    assert "HTTP 502" in text
    assert "Queued 1 failed deliveries again." in text
    assert "Would delete 1 finished deliveries." in text
    assert "Deleted 1 finished deliveries." in text
    assert list(Delivery.objects.values_list("pk", "status")) == [
        (failed.pk, DeliveryStatus.PENDING)
    ]


@pytest.mark.django_db
def test_notify_command_refuses_bad_input():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError):
        call_command("notify", "dispatch", "--batch-size", "0", stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("notify", "purge", "--older-than-days", "-1", stdout=StringIO())


@pytest.mark.django_db
def test_dispatch_task_reports_what_it_did(alertmanager):
    from notifications.tasks import dispatch_task

    # given
    AlertDeliveryFactory()
    # when
    result = dispatch_task.apply().get()
    # then
    assert result == {"sent": 1, "retrying": 0, "failed": 0, "skipped": 0}


@pytest.mark.django_db
def test_prune_task_deletes_old_provenance_and_leaves_alerts_to_the_outbox(tenant, settings):
    # given
    settings.COSTSIM_PROVENANCE_RETENTION_DAYS = 90
    ProvenanceFactory(tenant=tenant, created_at=T0 - timedelta(days=91))
    kept = ProvenanceFactory(tenant=tenant, created_at=T0 - timedelta(days=89))
    alert = AlertDeliveryFactory(created_at=T0 - timedelta(days=31), status=DeliveryStatus.SENT)
    # when
    with time_machine.travel(T0, tick=False):
        result = prune_provenance_task.apply().get()
    # then
    assert result == {"status": "success", "provenance_deleted": 1}
    assert list(kept._meta.model.objects.values_list("pk", flat=True)) == [kept.pk]
    # old alerts go with the notifications digest job's purge
    assert Delivery.objects.filter(pk=alert.pk).exists()
    with time_machine.travel(T0, tick=False):
        assert deliveries_purge() == 1
