"""Notifications in the operator console."""

from datetime import timedelta

from django.utils import timezone

from notifications.admin import retry_deliveries
from notifications.models import Channel, Delivery
from notifications.services.events import incident_event_record
from notifications.services.outbox import deliveries_dispatch
from tests.analytics.factories import IncidentFactory
from tests.factories import ChannelFactory, RuleFactory


def test_pages_render_and_never_show_the_secret(client, staff_user, tenant):
    # given
    channel = ChannelFactory(tenant=tenant)
    Delivery.objects.create(
        tenant=tenant, channel=channel, event_key="k", event_type="test", payload={}
    )
    client.force_login(staff_user)
    # then
    for url in (
        "/admin/notifications/channel/",
        f"/admin/notifications/channel/{channel.pk}/change/",
        "/admin/notifications/delivery/",
        "/admin/notifications/rule/",
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert channel.secret not in response.content.decode()
        assert channel.secret.removeprefix("whsec_") not in response.content.decode()


def test_retry_requeues_only_failed_deliveries(tenant):
    channel = ChannelFactory(tenant=tenant)
    failed = Delivery.objects.create(
        tenant=tenant,
        channel=channel,
        event_key="a",
        event_type="test",
        payload={},
        status="failed",
        attempts=8,
    )
    Delivery.objects.create(
        tenant=tenant,
        channel=channel,
        event_key="b",
        event_type="test",
        payload={},
        status="sent",
    )
    assert retry_deliveries(Delivery.objects.all()) == 1
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("pending", 0)


CHANNELS = "/admin/notifications/channel/"
DELIVERIES = "/admin/notifications/delivery/"


def test_creating_a_webhook_channel_shows_its_secret_once(client, staff_user, tenant, settings):
    # given
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    client.force_login(staff_user)
    form = {
        "tenant": tenant.pk,
        "name": "ops hook",
        "kind": "webhook",
        "url": "https://hooks.example.com/costwise",
        "email_to": "",
        "enabled": "on",
    }
    # when
    response = client.post(f"{CHANNELS}add/", form)
    # then: the answer holds the generated secret, with no cache allowed
    assert response.status_code == 200
    channel = Channel.objects.get(tenant=tenant, name="ops hook")
    assert channel.secret.startswith("whsec_")
    assert channel.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # and no page shows it again
    for url in (CHANNELS, f"{CHANNELS}{channel.pk}/change/", "/admin/admin/logentry/"):
        page = client.get(url)
        assert channel.secret not in page.content.decode(), url


def test_the_admin_refuses_what_the_api_refuses(client, staff_user, tenant, settings):
    # given
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    client.force_login(staff_user)
    base = {"tenant": tenant.pk, "email_to": "", "enabled": "on"}
    # when
    private = client.post(
        f"{CHANNELS}add/",
        {**base, "name": "a", "kind": "webhook", "url": "https://127.0.0.1/hook"},
    )
    email = client.post(
        f"{CHANNELS}add/", {**base, "name": "b", "kind": "email", "email_to": "not-an-address"}
    )
    alertmanager = client.post(
        f"{CHANNELS}add/",
        {**base, "name": "c", "kind": "alertmanager", "url": "https://am.example.com"},
    )
    # then
    assert "loopback, private" in private.content.decode()
    assert "is not an email address" in email.content.decode()
    assert "Select a valid choice" in alertmanager.content.decode()
    assert not Channel.objects.exists()


def test_editing_a_channel_goes_through_the_service(client, staff_user, tenant, settings):
    # given
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    channel = ChannelFactory(tenant=tenant, kind="email", url="", secret="", email_to=["a@x.io"])
    client.force_login(staff_user)
    # when
    response = client.post(
        f"{CHANNELS}{channel.pk}/change/",
        {"name": "renamed", "url": "", "email_to": "b@x.io, c@x.io", "enabled": ""},
    )
    # then
    assert response.status_code == 302
    channel.refresh_from_db()
    assert (channel.name, channel.email_to, channel.enabled) == (
        "renamed",
        ["b@x.io", "c@x.io"],
        False,
    )


def test_rotating_a_secret_shows_the_new_one_once(client, staff_user, tenant):
    # given
    channel = ChannelFactory(tenant=tenant)
    old = channel.secret
    client.force_login(staff_user)
    # when
    response = client.post(CHANNELS, {"action": "rotate_secret", "_selected_action": [channel.pk]})
    # then
    channel.refresh_from_db()
    assert channel.secret != old and channel.secret.startswith("whsec_")
    assert channel.secret in response.content.decode()
    assert channel.secret not in client.get(CHANNELS).content.decode()


def test_delivery_actions_send_test_and_purge(client, staff_user, tenant, receiver):
    # given
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    old = timezone.now() - timedelta(days=40)
    finished = Delivery.objects.create(
        tenant=tenant,
        channel=channel,
        event_key="done",
        event_type="test",
        payload={},
        status="sent",
        created_at=old,
    )
    pending = Delivery.objects.create(
        tenant=tenant, channel=channel, event_key="queued", event_type="test", payload={}
    )
    client.force_login(staff_user)
    # when
    tested = client.post(
        DELIVERIES, {"action": "send_test", "_selected_action": [finished.pk]}, follow=True
    )
    purged = client.post(
        DELIVERIES,
        {"action": "purge", "_selected_action": [finished.pk, pending.pk]},
        follow=True,
    )
    # then
    assert "1 test(s) sent, 0 failed." in tested.content.decode()
    assert len(receiver.accepted["/hook"]) == 1
    assert "1 delivery(ies) deleted." in purged.content.decode()
    assert Delivery.objects.filter(pk=pending.pk).exists()
    assert not Delivery.objects.filter(pk=finished.pk).exists()


def test_delivery_page_shows_the_payload_and_filters_by_kind(client, staff_user, tenant):
    # given
    channel = ChannelFactory(tenant=tenant)
    delivery = Delivery.objects.create(
        tenant=tenant,
        channel=channel,
        event_key="k",
        event_type="test",
        payload={"type": "test", "data": {"message": "hello-payload"}},
    )
    client.force_login(staff_user)
    # when
    detail = client.get(f"{DELIVERIES}{delivery.pk}/change/").content.decode()
    slack_only = client.get(DELIVERIES, {"channel__kind": "slack"}).content.decode()
    # then
    assert "hello-payload" in detail
    assert f"{DELIVERIES}{delivery.pk}/change/" not in slack_only


def test_metrics_expose_outbox_counters_and_queue_depth(client, tenant, receiver):
    # given one sent delivery and one waiting
    channel = ChannelFactory(tenant=tenant, url=f"{receiver.url}/hook")
    RuleFactory(channel=channel)
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")
    deliveries_dispatch()
    Delivery.objects.create(
        tenant=tenant,
        channel=channel,
        event_key="later",
        event_type="test",
        payload={},
        next_attempt_at=timezone.now() + timedelta(hours=1),
    )
    # when
    body = client.get("/metrics").content.decode()
    # then
    assert 'notifications_delivery_queue_depth{kind="webhook"} 1.0' in body
    assert 'notifications_delivery_queue_due{kind="webhook"} 0.0' in body
    assert 'notifications_delivery_attempts_total{kind="webhook",outcome="sent"}' in body
    assert 'notifications_delivery_latency_seconds_bucket{kind="webhook",le="60.0"}' in body
    assert 'notifications_delivery_errors_total{error_type="timeout",kind="alertmanager"}' in body
