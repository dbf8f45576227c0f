"""Real local receivers: an HTTP server that verifies Standard Webhooks signatures and
checks Slack's message shape, and an SMTP server."""

import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.factories import ChannelFactory

SECRET = ChannelFactory.secret


class Receiver:
    """Accepts POST /hook (verified webhooks) and /slack (Slack JSON) on 127.0.0.1.

    `fail_first[path]` answers that many requests to `path` with a 500 before accepting;
    `delay` slows every answer down (seconds). `accepted[path]` counts accepted messages by
    `webhook-id` (Slack by body), so a duplicate shows as a count of 2.
    """

    def __init__(self):
        self.fail_first: Counter = Counter()
        self.delay = 0.0
        self.requests: Counter = Counter()
        self.accepted: dict[str, Counter] = {"/hook": Counter(), "/slack": Counter()}
        self.bodies: dict[str, list] = {"/hook": [], "/slack": []}
        self.rejected: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0))).decode()
                code = receiver.handle(self.path, dict(self.headers), body)
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"ok" if code < 300 else b"nope " * 100)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, path: str, headers: dict, body: str) -> int:
        time.sleep(self.delay)
        with self.lock:
            self.requests[path] += 1
            if self.requests[path] <= self.fail_first[path]:
                return 500
        if path == "/hook":
            lowered = {k.lower(): v for k, v in headers.items()}
            try:
                payload = Webhook(SECRET).verify(body, lowered)
            except WebhookVerificationError as exc:
                self.rejected.append(str(exc))
                return 400
            key = lowered["webhook-id"]
        elif path == "/slack":
            payload = json.loads(body)
            if not isinstance(payload.get("text"), str) or not isinstance(
                payload.get("blocks"), list
            ):
                self.rejected.append("slack shape")
                return 400
            if not all("type" in block for block in payload["blocks"]):
                self.rejected.append("slack block without type")
                return 400
            key = body
        else:
            return 404
        with self.lock:
            self.accepted[path][key] += 1
            self.bodies[path].append(payload)
        return 200


@pytest.fixture
def receiver(settings):
    settings.NOTIFY_ALLOW_PRIVATE_URLS = True
    receiver = Receiver()
    receiver.thread.start()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


class MailHandler:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_server(settings):
    handler = MailHandler()
    with socket.socket() as probe:  # a free port; the controller cannot take port 0
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    yield handler
    controller.stop()
