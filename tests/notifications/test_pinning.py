"""The URL guard resolves a host once and the sender connects to that very address, over
TLS that still verifies the host name: against a real local HTTPS server with a test CA.

Only the resolver is replaced (DNS is outside the system): a few `.test` names map to
chosen addresses, every other lookup goes to the real resolver.
"""

import json
import socket
import ssl
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from notifications.models import Delivery, DeliveryStatus
from notifications.services import http
from notifications.services.events import incident_event_record
from notifications.services.outbox import deliveries_dispatch
from notifications.services.safety import UnsafeUrl, url_check, url_resolve
from tests.analytics.factories import IncidentFactory
from tests.factories import ChannelFactory, RuleFactory

SECRET = ChannelFactory.secret
HOST = "hooks.example.test"


class FakeDns:
    """Answers for the names in `table` (a list of addresses per lookup, the last one
    repeating) and counts the lookups of each name."""

    def __init__(self, real):
        self.real = real
        self.table: dict[str, list[str]] = {}
        self.lookups: Counter = Counter()

    def __call__(self, host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002
        if host not in self.table:
            return self.real(host, port, family, type, proto, flags)
        answers = self.table[host]
        address = answers[min(self.lookups[host], len(answers) - 1)]
        self.lookups[host] += 1
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def https_server(tmp_path, settings):
    """An HTTPS server on 127.0.0.1 whose certificate names only `hooks.example.test`,
    signed by a test CA that NOTIFY_CA_BUNDLE trusts."""
    ca = trustme.CA()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    settings.NOTIFY_CA_BUNDLE = str(bundle)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert(HOST).configure_cert(context)
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802 (http.server naming)
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            received.append({"headers": dict(self.headers), "body": body, "path": self.path})
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.received = received
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _queue_one(tenant, url: str):
    RuleFactory(channel=ChannelFactory(tenant=tenant, url=url))
    incident_event_record(incident=IncidentFactory(tenant=tenant), event="opened")


def test_webhook_connects_to_the_checked_address_and_verifies_the_host_name(
    tenant, dns, https_server, settings
):
    # given: the name resolves to the local server (a private address, allowed here)
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    dns.table[HOST] = ["127.0.0.1"]
    port = https_server.server_address[1]
    _queue_one(tenant, f"https://{HOST}:{port}/hook?team=ops")
    # when
    result = deliveries_dispatch()
    # then: delivered over verified TLS, with the name looked up exactly once
    assert result.sent == 1
    assert dns.lookups[HOST] == 1
    [request] = https_server.received
    assert request["path"] == "/hook?team=ops"
    assert request["headers"]["host"] == f"{HOST}:{port}"
    headers = {key.lower(): value for key, value in request["headers"].items()}
    assert Webhook(SECRET).verify(request["body"], headers)["type"] == "incident.opened"


def test_a_certificate_for_another_name_is_refused(tenant, dns, https_server, settings):
    # given: another name pointing at the same server, whose certificate does not cover it
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    dns.table["other.example.test"] = ["127.0.0.1"]
    port = https_server.server_address[1]
    # when
    with pytest.raises(http.PostError) as caught:
        http.post(f"https://other.example.test:{port}/hook", body=b"{}", headers={}, timeout=2)
    # then
    assert caught.value.error_type == "tls"
    assert caught.value.args[0].startswith("tls error: ")
    assert https_server.received == []


def test_a_name_rebound_to_a_private_address_after_the_check_is_not_followed(
    tenant, dns, https_server, settings
):
    # given: the first answer is public, every later one the local server's (rebinding)
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    settings.NOTIFY_TIMEOUT = 0.3
    dns.table[HOST] = ["93.184.215.14", "127.0.0.1"]
    port = https_server.server_address[1]
    _queue_one(tenant, f"https://{HOST}:{port}/hook")
    dns.lookups.clear()
    # when
    result = deliveries_dispatch()
    # then: one lookup, the public answer is where it tried to go; the server saw nothing
    assert result.retrying == 1
    assert dns.lookups[HOST] == 1
    assert https_server.received == []


def test_a_host_name_resolving_to_a_private_address_is_refused(dns):
    # given
    dns.table["internal.example.test"] = ["10.1.2.3"]
    dns.table["metadata.example.test"] = ["169.254.169.254"]
    dns.table["v6.example.test"] = ["::1"]
    # then
    for host in ("internal.example.test", "metadata.example.test", "v6.example.test"):
        with pytest.raises(UnsafeUrl, match="private"):
            url_check(f"https://{host}/hook", allow_private=False)


def test_a_host_with_one_private_address_among_public_ones_is_refused(dns):
    dns.table["mixed.example.test"] = ["93.184.215.14"]
    assert url_resolve("https://mixed.example.test/x", allow_private=False).addresses == (
        "93.184.215.14",
    )
    dns.table["mixed.example.test"] = ["10.0.0.1"]
    with pytest.raises(UnsafeUrl):
        url_resolve("https://mixed.example.test/x", allow_private=False)


def test_the_api_refuses_a_name_that_resolves_inside(api_client, dns, settings):
    # given
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    dns.table["internal.example.test"] = ["192.168.1.20"]
    # when
    response = api_client.post(
        "/api/v1/notification-channels/",
        {"name": "inside", "kind": "webhook", "url": "https://internal.example.test/hook"},
        format="json",
    )
    # then
    assert response.status_code == 400
    assert "url" in json.dumps(response.json())


def test_a_name_re_pointed_inside_after_saving_is_refused_at_send_time(tenant, dns, settings):
    # given: public when the channel was saved, private now
    settings.NOTIFY_ALLOW_PRIVATE_URLS = False
    dns.table[HOST] = ["10.9.8.7"]
    _queue_one(tenant, f"https://{HOST}/hook")
    # when
    deliveries_dispatch()
    # then
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.last_error.startswith("unsafe url: ")
