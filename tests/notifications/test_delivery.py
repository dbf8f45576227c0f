"""The outbox end to end, against real local receivers."""

import logging
import statistics
import threading
import time
from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from analytics.models import Incident, Severity
from analytics.services.anomalies import anomalies_detect
from analytics.services.incidents import IncidentTransitionConflict, incident_resolve
from notifications.models import Delivery, DeliveryStatus
from notifications.services.channels import channel_test
from notifications.services.events import (
    budget_thresholds_check,
    digests_build,
    incident_event_record,
)
from notifications.services.outbox import deliveries_dispatch
from tests.analytics.factories import IncidentFactory, outlier_history
from tests.factories import BudgetFactory, ChannelFactory, CostRecordFactory, RuleFactory, utc

SPIKE_DAY = date(2026, 3, 10)


def detect_after_spike(tenant) -> dict:
    with time_machine.travel(utc(2026, 3, 11, 6), tick=False):
        return anomalies_detect(tenant=tenant)


def make_due() -> None:
    """Retries become due now (the backoff has passed)."""
    Delivery.objects.filter(status=DeliveryStatus.PENDING).update(next_attempt_at=timezone.now())


def dispatch_in_parallel(n: int = 2) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run():
        try:
            barrier.wait()
            deliveries_dispatch()
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors


@pytest.mark.django_db(transaction=True)
def test_one_incident_reaches_each_channel_exactly_once(tenant, receiver):
    # given: a webhook and a Slack channel, both receivers failing their first two requests
    webhook = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    slack = ChannelFactory(tenant=tenant, kind="slack", url=f"{receiver.url}/slack", secret="")
    RuleFactory(channel=webhook)
    RuleFactory(channel=slack)
    receiver.fail_first.update({"/hook": 2, "/slack": 2})
    receiver.delay = 0.05
    outlier_history(tenant, SPIKE_DAY)
    # when: detection three times, then two dispatchers side by side, until nothing is due
    for _ in range(3):
        detect_after_spike(tenant)
    for _ in range(5):
        dispatch_in_parallel()
        make_due()
    # then
    incident = Incident.objects.get(tenant=tenant)
    rows = Delivery.objects.filter(event_key=f"incident.opened:{incident.pk}")
    assert sorted(rows.values_list("channel_id", "status", "attempts")) == [
        (webhook.pk, "sent", 3),
        (slack.pk, "sent", 3),
    ]
    assert receiver.requests == {"/hook": 3, "/slack": 3}
    assert list(receiver.accepted["/hook"].values()) == [1]
    assert list(receiver.accepted["/slack"].values()) == [1]
    assert receiver.rejected == []
    body = receiver.bodies["/hook"][0]
    assert body["type"] == "incident.opened"
    assert body["data"]["incident"]["id"] == incident.pk
    assert body["data"]["admin_url"].endswith(f"/admin/analytics/incident/{incident.pk}/change/")
    slack_text = str(receiver.bodies["/slack"][0])
    assert "Expected $" in slack_text and "Root cause" in slack_text


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_detection_queues_nothing(tenant, receiver):
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    outlier_history(tenant, SPIKE_DAY)
    with time_machine.travel(utc(2026, 3, 11, 6), tick=False):
        result = anomalies_detect(tenant=tenant, dry_run=True)
    assert result["opened"]
    assert not Delivery.objects.exists()


def test_resolving_and_escalating_are_events_once_each(tenant, receiver):
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    RuleFactory(channel=channel)
    incident = IncidentFactory(tenant=tenant, severity=Severity.MEDIUM)
    incident_event_record(incident=incident, event="opened")
    incident.severity = Severity.HIGH
    incident_event_record(incident=incident, event="escalated")
    incident_event_record(incident=incident, event="escalated")
    # when
    incident_resolve(incident=incident, actor="api-key:x", resolution="resolved")
    with pytest.raises(IncidentTransitionConflict):  # resolving again changes nothing
        incident_resolve(incident=incident, actor="api-key:x", resolution="resolved")
    deliveries_dispatch()
    # then
    assert sorted(Delivery.objects.values_list("event_type", flat=True)) == [
        "incident.escalated",
        "incident.opened",
        "incident.resolved",
    ]
    assert sum(len(c) for c in receiver.accepted.values()) == 3


def test_min_severity_and_events_filter_rules(tenant, receiver):
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    RuleFactory(channel=channel, min_severity=Severity.CRITICAL)
    RuleFactory(channel=ChannelFactory(tenant=tenant), events=["budget.threshold"])
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    assert not Delivery.objects.exists()


def test_budget_crossing_50_then_80_the_same_day_is_two_messages(tenant, receiver):
    # given: a $10 daily budget
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    BudgetFactory(tenant=tenant, daily_limit_cents=1000)
    with time_machine.travel(utc(2026, 3, 10, 12), tick=False):
        CostRecordFactory(tenant=tenant, cost_cents=Decimal(600), created_at=utc(2026, 3, 10, 9))
        # when
        first = budget_thresholds_check(tenant=tenant)
        again = budget_thresholds_check(tenant=tenant)
        CostRecordFactory(tenant=tenant, cost_cents=Decimal(250), created_at=utc(2026, 3, 10, 10))
        second = budget_thresholds_check(tenant=tenant)
        third = budget_thresholds_check(tenant=tenant)
    deliveries_dispatch()
    # then
    assert (first, again, second, third) == (1, 0, 1, 0)
    thresholds = sorted(b["data"]["threshold_pct"] for b in receiver.bodies["/hook"])
    assert thresholds == [50, 80]
    # the next day starts a new period
    with time_machine.travel(utc(2026, 3, 11, 12), tick=False):
        CostRecordFactory(tenant=tenant, cost_cents=Decimal(700), created_at=utc(2026, 3, 11, 9))
        assert budget_thresholds_check(tenant=tenant) == 1


def test_digest_rule_gets_one_message_for_the_day(tenant, receiver):
    # given
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    RuleFactory(channel=channel, mode="daily_digest")
    with time_machine.travel(utc(2026, 3, 10, 8), tick=False):
        for _ in range(3):
            incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    assert deliveries_dispatch().claimed == 0  # held rows are not sent one by one
    # when
    queued = digests_build(day=date(2026, 3, 10))
    queued_again = digests_build(day=date(2026, 3, 10))
    deliveries_dispatch()
    # then
    assert (queued, queued_again) == (1, 0)
    assert len(receiver.bodies["/hook"]) == 1
    digest = receiver.bodies["/hook"][0]
    assert digest["type"] == "digest" and len(digest["data"]["events"]) == 3
    assert Delivery.objects.filter(status=DeliveryStatus.DIGESTED).count() == 3


def test_failing_receiver_ends_failed_after_max_attempts(tenant, receiver, settings, caplog):
    settings.NOTIFY_MAX_ATTEMPTS = 3
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    RuleFactory(channel=channel)
    receiver.fail_first["/hook"] = 99
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    # when
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            deliveries_dispatch()
            make_due()
    # then
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert delivery.response_status == 500
    assert len(delivery.response_excerpt) <= 200
    assert channel.secret not in caplog.text


def test_backoff_waits_before_the_next_attempt(tenant, receiver):
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    receiver.fail_first["/hook"] = 1
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    deliveries_dispatch()
    assert deliveries_dispatch().claimed == 0  # not due yet
    delivery = Delivery.objects.get()
    assert delivery.next_attempt_at - delivery.last_attempt_at == timedelta(seconds=10)


def test_url_is_checked_again_at_send_time(tenant, receiver, settings):
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    deliveries_dispatch()
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.last_error.startswith("unsafe url")
    assert receiver.requests == {}


def test_channel_test_sends_now_and_returns_the_delivery(api_client, tenant, receiver):
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    response = api_client.post(f"/api/v1/notification-channels/{channel.pk}/test/")
    assert response.status_code == 200
    assert response.json()["status"] == "sent"
    assert response.json()["idempotency_key"] in receiver.accepted["/hook"]
    # a failing test is tried once and never picked up by the dispatcher
    receiver.fail_first["/hook"] = 10**6
    failed = channel_test(channel=channel)
    assert failed.status == "failed" and failed.attempts == 1
    assert deliveries_dispatch().claimed == 0


def test_email_reaches_a_real_smtp_server(tenant, smtp_server):
    channel = ChannelFactory(
        tenant=tenant, kind="email", url="", secret="", email_to=["ops@example.com"]
    )
    RuleFactory(channel=channel)
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    # when
    result = deliveries_dispatch()
    # then
    assert result.sent == 1
    [envelope] = smtp_server.messages
    assert envelope.rcpt_tos == ["ops@example.com"]
    content = envelope.content.decode()
    assert "Subject: [costwise] Incident opened" in content
    assert "text/plain" in content and "text/html" in content


def test_detection_to_delivery_p95_under_60s_on_the_beat_schedule(tenant, receiver):
    """Events land at arbitrary moments; the dispatcher runs every 10 s as beat runs it.

    Latency is the event's time to the accepted attempt, on the shifted clock plus the real
    time each send took against the local receiver.
    """
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    start = utc(2026, 3, 10, 12)
    with time_machine.travel(start, tick=True) as traveller:
        elapsed = 0.0
        next_tick = 10.0
        for n in range(40):
            step = (n * 7.3) % 9.1 + 0.5
            elapsed += step
            while elapsed >= next_tick:  # the beat ticks that passed before this event
                traveller.move_to(start + timedelta(seconds=next_tick))
                deliveries_dispatch()
                next_tick += 10.0
            traveller.move_to(start + timedelta(seconds=elapsed))
            incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
        traveller.move_to(start + timedelta(seconds=next_tick))
        deliveries_dispatch(batch_size=100)
    latencies = sorted(Delivery.objects.values_list("latency_ms", flat=True))
    assert len(latencies) == 40 and None not in latencies
    p95 = statistics.quantiles(latencies, n=20)[-1]
    print(f"detection-to-delivery p95 {p95:.0f} ms, max {latencies[-1]} ms")
    assert p95 < 60_000


def test_breaker_trip_and_recovery_reach_the_project_channel(db, receiver, settings, api_client):
    from costsim.services.breaker import breaker_disable, breaker_enable
    from tests.notifications.conftest import SECRET

    # given
    settings.NOTIFY_BREAKER_WEBHOOK_URL = f"{receiver.url}/hook"
    settings.NOTIFY_BREAKER_WEBHOOK_SECRET = SECRET
    settings.ALERTMANAGER_URL = None
    # when
    breaker_disable(reason="drift too high", actor="user:ops", ttl_hours=1)
    breaker_enable(reason="fixed", actor="user:ops")
    deliveries_dispatch()
    # then: the staff channel got both events, and Alertmanager's alerts are in the same
    # outbox (skipped: no ALERTMANAGER_URL here)
    events = [body["data"]["event"] for body in receiver.bodies["/hook"]]
    assert sorted(events) == ["recovered", "tripped"]
    assert (
        sorted(Delivery.objects.filter(tenant=None).values_list("channel__kind", "status"))
        == [("alertmanager", "skipped")] * 2 + [("webhook", "sent")] * 2
    )
    # no tenant sees the project channel or its deliveries
    assert api_client.get("/api/v1/notification-deliveries/").json()["results"] == []
    assert api_client.get("/api/v1/notification-channels/").json()["results"] == []


def test_a_budgets_own_thresholds_replace_the_default(tenant, receiver):
    from notifications.services.channels import budget_thresholds_set

    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000)
    budget_thresholds_set(budget=budget, thresholds_pct=[30, 90])
    with time_machine.travel(utc(2026, 3, 10, 12), tick=False):
        CostRecordFactory(tenant=tenant, cost_cents=Decimal(600), created_at=utc(2026, 3, 10, 9))
        assert budget_thresholds_check(tenant=tenant) == 1
    assert Delivery.objects.get().event_key.endswith(":30")


def test_a_disabled_channel_drops_its_queued_message(tenant, receiver):
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    RuleFactory(channel=channel)
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    channel.enabled = False
    channel.save()
    # when
    result = deliveries_dispatch()
    # then
    assert result.failed == 1
    assert Delivery.objects.get().last_error == "channel disabled"
    assert receiver.requests == {}


def test_daily_digest_job_purges_old_finished_deliveries(tenant):
    from notifications.tasks import daily_digest_task

    channel = ChannelFactory(tenant=tenant)
    old = timezone.now() - timedelta(days=31)
    for key, status in (("a", "sent"), ("b", "failed"), ("c", "pending"), ("d", "held")):
        Delivery.objects.create(
            tenant=tenant,
            channel=channel,
            event_key=key,
            event_type="test",
            payload={},
            status=status,
            created_at=old,
        )
    # when
    result = daily_digest_task()
    # then
    assert result["purged"] == 2
    assert sorted(Delivery.objects.values_list("event_key", flat=True)) == ["c", "d"]


def test_digest_job_catches_up_on_a_missed_day(tenant, receiver):
    from notifications.tasks import daily_digest_task

    RuleFactory(
        channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"), mode="daily_digest"
    )
    with time_machine.travel(utc(2026, 3, 8, 8), tick=False):
        incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    with time_machine.travel(utc(2026, 3, 9, 8), tick=False):
        incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    # when: the job runs on the 10th only
    with time_machine.travel(utc(2026, 3, 10, 0, 15), tick=False):
        result = daily_digest_task()
    # then
    assert result["days"] == ["2026-03-08", "2026-03-09"] and result["queued"] == 2


def test_a_retry_after_a_timeout_the_receiver_accepted_keeps_its_webhook_id(
    tenant, receiver, settings
):
    # given: the receiver takes longer than the timeout, but does accept the first attempt
    settings.NOTIFY_TIMEOUT = 0.2
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook"))
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    receiver.delay = 0.6
    # when
    first = deliveries_dispatch()
    receiver.delay = 0.0
    make_due()
    second = deliveries_dispatch()
    # then: two attempts, one message id: a receiver that remembers ids keeps one
    assert (first.retrying, second.sent) == (1, 1)
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    deadline = time.monotonic() + 5  # the timed-out request is still being handled
    while sum(receiver.accepted["/hook"].values()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dict(receiver.accepted["/hook"]) == {f"msg_{delivery.idempotency_key.hex}": 2}
