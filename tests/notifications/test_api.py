"""Notification channels, rules and deliveries through the API."""

import pytest

from notifications.models import Channel, Delivery
from tests.factories import ChannelFactory, RuleFactory

CHANNELS = "/api/v1/notification-channels/"
RULES = "/api/v1/notification-rules/"
DELIVERIES = "/api/v1/notification-deliveries/"


def reasons(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


@pytest.fixture(autouse=True)
def _public_urls(settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False


@pytest.fixture
def _resolve_public(monkeypatch):
    """hooks.example.com resolves to a public address without the network."""
    import socket

    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host.endswith("example.com"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.usefixtures("_resolve_public")
def test_webhook_secret_is_generated_and_shown_only_on_create(api_client):
    # when
    created = api_client.post(
        CHANNELS,
        {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/x"},
        format="json",
    )
    # then
    assert created.status_code == 201, created.json()
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    assert Channel.objects.get().secret == secret
    shown = api_client.get(f"{CHANNELS}{created.json()['id']}/").json()
    assert "secret" not in shown
    listed = api_client.get(CHANNELS).json()
    assert set(listed) == {"next", "previous", "results"}
    assert secret not in str(listed)


@pytest.mark.usefixtures("_resolve_public")
def test_given_secret_is_kept_and_never_returned_on_update(api_client):
    secret = "whsec_" + "A" * 44
    created = api_client.post(
        CHANNELS,
        {"name": "ops", "kind": "webhook", "url": "https://hooks.example.com/x", "secret": secret},
        format="json",
    )
    assert created.json()["secret"] == secret
    # when
    patched = api_client.patch(
        f"{CHANNELS}{created.json()['id']}/", {"enabled": False}, format="json"
    )
    # then
    assert patched.status_code == 200
    assert "secret" not in patched.json()
    assert patched.json()["enabled"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "kind": "pager", "url": "https://hooks.example.com/"}, "kind"),
        ({"name": "x", "kind": "webhook"}, "url"),
        ({"name": "x", "kind": "email"}, "email_to"),
        ({"name": "x", "kind": "email", "email_to": ["not-an-address"]}, "email_to[0]"),
        (
            {"name": "x", "kind": "webhook", "url": "https://hooks.example.com/", "secret": "abc"},
            "secret",
        ),
        (
            {"name": "x", "kind": "slack", "url": "https://hooks.example.com/", "colour": 1},
            "colour",
        ),
    ],
)
@pytest.mark.usefixtures("_resolve_public")
def test_bad_channel_is_a_400_naming_the_field(api_client, body, field):
    response = api_client.post(CHANNELS, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert field in reasons(response)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]/hook",
        "https://localhost/hook",  # a host name that resolves to a loopback address
        "https://192.168.1.20/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "http://hooks.example.com/hook",  # not https
    ],
)
@pytest.mark.usefixtures("_resolve_public")
def test_channel_url_to_a_private_address_is_refused(api_client, url):
    response = api_client.post(
        CHANNELS, {"name": "x", "kind": "webhook", "url": url}, format="json"
    )
    assert response.status_code == 400
    assert "url" in reasons(response)
    assert not Channel.objects.exists()


@pytest.mark.usefixtures("_resolve_public")
def test_rule_round_trip_and_validation(api_client, tenant):
    channel = ChannelFactory(tenant=tenant)
    created = api_client.post(
        RULES,
        {
            "channel": channel.pk,
            "events": ["incident.opened", "budget.threshold"],
            "min_severity": "HIGH",
            "mode": "daily_digest",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["events"] == ["budget.threshold", "incident.opened"]
    bad = api_client.post(
        RULES, {"channel": channel.pk, "events": ["incident.exploded"]}, format="json"
    )
    assert bad.status_code == 400
    assert "events[0]" in reasons(bad)
    empty = api_client.post(RULES, {"channel": channel.pk, "events": []}, format="json")
    assert "events" in reasons(empty)
    listed = api_client.get(RULES).json()
    assert [r["id"] for r in listed["results"]] == [created.json()["id"]]


def test_other_tenants_objects_are_404(api_client, other_tenant):
    # given
    channel = ChannelFactory(tenant=other_tenant)
    rule = RuleFactory(channel=channel)
    delivery = Delivery.objects.create(
        tenant=other_tenant, channel=channel, event_key="k", event_type="test", payload={}
    )
    # then
    for url in (
        f"{CHANNELS}{channel.pk}/",
        f"{RULES}{rule.pk}/",
        f"{DELIVERIES}{delivery.pk}/",
    ):
        assert api_client.get(url).status_code == 404
        assert api_client.delete(url).status_code in (404, 405)
    assert api_client.post(f"{CHANNELS}{channel.pk}/test/").status_code == 404
    assert (
        api_client.patch(f"{RULES}{rule.pk}/", {"enabled": False}, format="json").status_code == 404
    )
    for url in (CHANNELS, RULES, DELIVERIES):
        assert api_client.get(url).json()["results"] == []
    # a rule cannot point at another tenant's channel
    response = api_client.post(
        RULES, {"channel": channel.pk, "events": ["incident.opened"]}, format="json"
    )
    assert response.status_code == 400
    assert "channel" in reasons(response)


def test_delivery_list_filters_and_refuses_offset(api_client, tenant):
    channel = ChannelFactory(tenant=tenant)
    for n in range(3):
        Delivery.objects.create(
            tenant=tenant,
            channel=channel,
            event_key=f"k{n}",
            event_type="test",
            payload={},
            status="sent" if n else "failed",
        )
    page = api_client.get(DELIVERIES, {"status": "sent", "page_size": 1}).json()
    assert len(page["results"]) == 1 and page["next"]
    assert api_client.get(page["next"]).json()["results"][0]["status"] == "sent"
    assert api_client.get(DELIVERIES, {"offset": 1}).status_code == 400
    assert api_client.get(DELIVERIES, {"status": "nope"}).status_code == 400


def test_no_key_is_401(client):
    assert client.get(CHANNELS).status_code in (401, 403)


def test_budget_thresholds_default_set_and_isolated(api_client, other_client, tenant):
    from tests.factories import BudgetFactory

    budget = BudgetFactory(tenant=tenant)
    url = f"/api/v1/budgets/{budget.pk}/notification-thresholds/"
    # then
    assert api_client.get(url).json() == {"budget": budget.pk, "thresholds_pct": [50, 80, 100]}
    put = api_client.put(url, {"thresholds_pct": [90, 25, 90, 120]}, format="json")
    assert put.status_code == 200
    assert put.json()["thresholds_pct"] == [25, 90, 120]
    bad = api_client.put(url, {"thresholds_pct": [0]}, format="json")
    assert bad.status_code == 400 and "thresholds_pct[0]" in reasons(bad)
    assert api_client.put(url, {"thresholds_pct": []}, format="json").status_code == 400
    assert other_client.get(url).status_code == 404
    assert other_client.put(url, {"thresholds_pct": [10]}, format="json").status_code == 404
