"""Alert outbox delivery against a real local HTTP server standing in for Alertmanager."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import psycopg
import pytest
import time_machine
from django.core.management import call_command
from django.db import connection, transaction
from prometheus_client import REGISTRY

from costsim.models import AlertOutbox, AlertStatus, BreakerIncident
from costsim.services import outbox
from costsim.services.breaker import breaker_disable
from costsim.tasks import deliver_alerts_task, prune_provenance_task
from tests.costsim.factories import ProvenanceFactory
from tests.costsim.safety_factories import AlertOutboxFactory
from tests.factories import utc

T0 = utc(2026, 3, 2, 10)


class _FakeAlertmanager(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
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
    server.mode = "ok"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    settings.ALERTMANAGER_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.ALERTMANAGER_TIMEOUT = 0.3
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def other_connection():
    """A second PostgreSQL session, as another process would have."""
    db = connection.settings_dict
    conn = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    )
    yield conn
    conn.close()


def _failures(alert_type: str, error_type: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "costsim_cb_alert_send_failures_total",
            {"alert_type": alert_type, "error_type": error_type},
        )
        or 0.0
    )


def _job(outcome: str, job: str = "alert_outbox") -> float:
    return (
        REGISTRY.get_sample_value("costsim_job_runs_total", {"job": job, "outcome": outcome}) or 0.0
    )


@pytest.mark.django_db
def test_2xx_marks_the_alert_and_its_incident_sent(alertmanager):
    # given a real trip, whose alert is in the outbox
    with time_machine.travel(T0, tick=False):
        breaker_disable(reason="bad deploy", actor="user:ops")
    incident = BreakerIncident.objects.get()
    row = AlertOutbox.objects.get()
    success = _job("success")
    # when
    with time_machine.travel(T0 + timedelta(days=1), tick=False):
        result = outbox.alerts_deliver()
    # then
    assert (result.leader, result.sent, result.retrying, result.failed) == (True, 1, 0, 0)
    assert len(alertmanager.received) == 1
    request = alertmanager.received[0]
    assert request["path"] == "/api/v2/alerts"
    assert request["content_type"] == "application/json"
    assert json.loads(request["body"]) == row.payload
    row.refresh_from_db()
    assert row.status == AlertStatus.SENT
    assert row.sent_at == T0 + timedelta(days=1)
    assert row.attempts == 0
    incident.refresh_from_db()
    assert incident.alert_sent is True
    assert incident.alert_sent_at == T0 + timedelta(days=1)
    assert _job("success") == success + 1


@pytest.mark.django_db
def test_http_500_backs_off_and_records_the_body(alertmanager):
    # given
    alertmanager.mode = "error"
    row = AlertOutboxFactory(created_at=T0)
    failures = _failures("disable", "http_500")
    # when
    with time_machine.travel(T0, tick=False):
        result = outbox.alerts_deliver()
    # then
    assert result.retrying == 1
    row.refresh_from_db()
    assert row.status == AlertStatus.PENDING
    assert row.attempts == 1
    assert row.last_attempt_at == T0
    assert row.next_attempt_at == T0 + timedelta(seconds=2)
    assert row.last_error == "HTTP 500: " + ("upstream exploded " * 20)[:200]
    assert _failures("disable", "http_500") == failures + 1


@pytest.mark.django_db
def test_timeout_is_recorded_as_a_timeout(alertmanager):
    # given
    alertmanager.mode = "slow"
    row = AlertOutboxFactory()
    failures = _failures("disable", "timeout")
    # when
    result = outbox.alerts_deliver()
    # then
    assert result.retrying == 1
    row.refresh_from_db()
    assert row.last_error.startswith("Timeout: ")
    assert row.attempts == 1
    assert _failures("disable", "timeout") == failures + 1


@pytest.mark.django_db
def test_refused_connection_is_a_connection_error(settings):
    # given nothing listens on port 1
    settings.ALERTMANAGER_URL = "http://127.0.0.1:1"
    row = AlertOutboxFactory(alert_type="enable")
    failures = _failures("enable", "connection")
    # when
    outbox.alerts_deliver()
    # then
    row.refresh_from_db()
    assert row.attempts == 1
    assert row.last_error
    assert len(row.last_error) <= 500
    assert _failures("enable", "connection") == failures + 1


@pytest.mark.django_db
def test_last_allowed_attempt_fails_the_alert_for_good(alertmanager):
    # given
    alertmanager.mode = "error"
    row = AlertOutboxFactory(attempts=9, max_attempts=10)
    # when
    result = outbox.alerts_deliver()
    # then
    assert result.failed == 1
    row.refresh_from_db()
    assert row.status == AlertStatus.FAILED
    assert row.attempts == 10


def test_backoff_doubles_up_to_five_minutes():
    # then
    assert [outbox.backoff_seconds(n) for n in range(1, 11)] == [
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]


@pytest.mark.django_db
def test_without_alertmanager_url_alerts_are_skipped(settings):
    # given
    settings.ALERTMANAGER_URL = None
    row = AlertOutboxFactory()
    # when
    result = outbox.alerts_deliver()
    # then
    assert result.skipped == 1
    row.refresh_from_db()
    assert row.status == AlertStatus.SKIPPED
    assert row.last_error == "alertmanager url not configured"


@pytest.mark.django_db
def test_batch_takes_due_rows_in_order_up_to_the_batch_size(alertmanager, settings):
    # given
    settings.COSTSIM_ALERT_BATCH_SIZE = 2
    later = AlertOutboxFactory(next_attempt_at=T0 - timedelta(minutes=1))
    first = AlertOutboxFactory(next_attempt_at=T0 - timedelta(minutes=3))
    second = AlertOutboxFactory(next_attempt_at=T0 - timedelta(minutes=2))
    not_due = AlertOutboxFactory(next_attempt_at=T0 + timedelta(minutes=1))
    # when
    with time_machine.travel(T0, tick=False):
        result = outbox.alerts_deliver()
    # then
    assert result.sent == 2
    sent = [json.loads(r["body"]) for r in alertmanager.received]
    assert sent == [first.payload, second.payload]
    statuses = {
        row.pk: row.status
        for row in AlertOutbox.objects.filter(pk__in=[later.pk, not_due.pk, first.pk])
    }
    assert statuses == {
        later.pk: AlertStatus.PENDING,
        not_due.pk: AlertStatus.PENDING,
        first.pk: AlertStatus.SENT,
    }


@pytest.mark.django_db
def test_another_leader_means_this_run_touches_nothing(alertmanager, other_connection):
    # given another process delivering
    row = AlertOutboxFactory()
    other_connection.execute("SELECT pg_advisory_lock(7002)")
    skipped = _job("skipped")
    # when
    result = outbox.alerts_deliver()
    # then
    assert result.leader is False
    assert alertmanager.received == []
    row.refresh_from_db()
    assert row.status == AlertStatus.PENDING
    assert _job("skipped") == skipped + 1


@pytest.mark.django_db(transaction=True)
def test_rows_locked_elsewhere_are_skipped_not_waited_for(alertmanager):
    # given a row that another transaction holds FOR UPDATE
    locked = AlertOutboxFactory(next_attempt_at=T0)
    free = AlertOutboxFactory(next_attempt_at=T0 + timedelta(seconds=1))
    holding, release = threading.Event(), threading.Event()

    def hold_lock():
        try:
            with transaction.atomic():
                AlertOutbox.objects.select_for_update().get(pk=locked.pk)
                holding.set()
                release.wait(timeout=10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    assert holding.wait(timeout=10)
    # when
    try:
        result = outbox.alerts_deliver()
    finally:
        release.set()
        thread.join(timeout=10)
    # then
    assert result.sent == 1
    assert AlertOutbox.objects.get(pk=locked.pk).status == AlertStatus.PENDING
    assert AlertOutbox.objects.get(pk=free.pk).status == AlertStatus.SENT


# Operator actions ---------------------------------------------------------------------


@pytest.mark.django_db
def test_retry_failed_requeues_with_three_more_attempts():
    # given
    failed = AlertOutboxFactory(status=AlertStatus.FAILED, attempts=10, max_attempts=10)
    other_failed = AlertOutboxFactory(status=AlertStatus.FAILED, attempts=10, max_attempts=10)
    sent = AlertOutboxFactory(status=AlertStatus.SENT)
    # when
    with time_machine.travel(T0, tick=False):
        count = outbox.alerts_retry_failed(ids=[failed.pk, sent.pk])
    # then
    assert count == 1
    failed.refresh_from_db()
    assert (failed.status, failed.max_attempts, failed.next_attempt_at) == (
        AlertStatus.PENDING,
        13,
        T0,
    )
    assert AlertOutbox.objects.get(pk=other_failed.pk).status == AlertStatus.FAILED
    assert AlertOutbox.objects.get(pk=sent.pk).status == AlertStatus.SENT


@pytest.mark.django_db
def test_purge_deletes_finished_alerts_older_than_30_days_only():
    # given
    old = T0 - timedelta(days=31)
    doomed = [
        AlertOutboxFactory(created_at=old, status=status)
        for status in (AlertStatus.SENT, AlertStatus.FAILED, AlertStatus.SKIPPED)
    ]
    old_pending = AlertOutboxFactory(created_at=old)
    recent_sent = AlertOutboxFactory(created_at=T0 - timedelta(days=29), status=AlertStatus.SENT)
    # when
    with time_machine.travel(T0, tick=False):
        would = outbox.alerts_purge(dry_run=True)
        deleted = outbox.alerts_purge()
    # then
    assert would == deleted == 3
    remaining = set(AlertOutbox.objects.values_list("pk", flat=True))
    assert remaining == {old_pending.pk, recent_sent.pk}
    assert not remaining & {row.pk for row in doomed}


@pytest.mark.django_db
def test_queue_stats_count_by_status():
    # given
    with time_machine.travel(T0, tick=False):
        AlertOutboxFactory(created_at=T0 - timedelta(minutes=5))
        AlertOutboxFactory(next_attempt_at=T0 + timedelta(minutes=5))
        AlertOutboxFactory(status=AlertStatus.SENT)
        AlertOutboxFactory(status=AlertStatus.FAILED)
        stats = outbox.alert_queue_stats()
    # then
    assert stats == {
        "pending": 2,
        "due": 1,
        "sent": 1,
        "failed": 1,
        "skipped": 0,
        "oldest_pending_at": T0 - timedelta(minutes=5),
    }


# Commands and tasks -------------------------------------------------------------------


@pytest.mark.django_db
def test_deliver_alerts_command_prints_the_queue(alertmanager):
    # given
    AlertOutboxFactory()
    out = StringIO()
    # when
    call_command("deliver_alerts", stdout=out)
    # then
    text = out.getvalue()
    assert "Queue before: 1 pending (1 due)" in text
    assert "Queue after:  0 pending (0 due), 1 sent" in text
    assert "1 sent, 0 to retry, 0 failed, 0 skipped" in text


@pytest.mark.django_db
def test_retry_and_purge_commands(other_connection):
    # given
    failed = AlertOutboxFactory(status=AlertStatus.FAILED)
    AlertOutboxFactory(created_at=utc(2020, 1, 1), status=AlertStatus.SENT)
    out = StringIO()
    # when
    call_command("retry_failed_alerts", stdout=out)
    call_command("purge_alerts", "--dry-run", stdout=out)
    other_connection.execute("SELECT pg_advisory_lock(7003)")
    call_command("purge_alerts", stdout=out)
    other_connection.execute("SELECT pg_advisory_unlock(7003)")
    call_command("purge_alerts", stdout=out)
    # then
    text = out.getvalue()
    assert "Re-queued 1 failed alerts." in text
    assert "Would delete 1 alerts." in text
    assert "skipped: another process holds lock 7003" in text
    assert "Deleted 1 alerts." in text
    assert AlertOutbox.objects.get().pk == failed.pk


@pytest.mark.django_db
def test_deliver_task_reports_what_it_did(alertmanager):
    # given
    AlertOutboxFactory()
    # when
    result = deliver_alerts_task.apply().get()
    # then
    assert result == {"leader": True, "sent": 1, "retrying": 0, "failed": 0, "skipped": 0}


@pytest.mark.django_db
def test_prune_task_deletes_old_provenance_and_old_alerts(tenant, settings):
    # given
    settings.COSTSIM_PROVENANCE_RETENTION_DAYS = 90
    ProvenanceFactory(tenant=tenant, created_at=T0 - timedelta(days=91))
    kept = ProvenanceFactory(tenant=tenant, created_at=T0 - timedelta(days=89))
    AlertOutboxFactory(created_at=T0 - timedelta(days=31), status=AlertStatus.SENT)
    success = _job("success", job="provenance_prune")
    # when
    with time_machine.travel(T0, tick=False):
        result = prune_provenance_task.apply().get()
    # then
    assert result == {"status": "success", "provenance_deleted": 1, "alerts_deleted": 1}
    assert list(kept._meta.model.objects.values_list("pk", flat=True)) == [kept.pk]
    assert _job("success", job="provenance_prune") == success + 1


@pytest.mark.django_db
def test_prune_task_skips_without_the_lock(other_connection):
    # given
    other_connection.execute("SELECT pg_advisory_lock(7003)")
    AlertOutboxFactory(created_at=utc(2020, 1, 1), status=AlertStatus.SENT)
    # when
    result = prune_provenance_task.apply().get()
    # then
    assert result == {"status": "skipped"}
    assert AlertOutbox.objects.count() == 1
