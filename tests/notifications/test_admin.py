"""Notifications in the operator console."""

from notifications.admin import retry_deliveries
from notifications.models import Delivery
from tests.factories import ChannelFactory


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
