"""config/webserver.py: the command `make run` and the benchmark start, and the real server."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.db import connection

from analytics.models import ApiKey
from config.database import database_url_from_settings
from config.webserver import web_bind, web_command, web_environment
from costsim.models import BREAKER_NAME, CircuitBreaker, Provenance
from tests.factories import ApiKeyFactory, TenantFactory

PYTHON = sys.executable


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_default_is_granian_with_one_thread_per_worker():
    # when
    command = web_command(PYTHON, {})
    # then
    assert command[:3] == [PYTHON, "-m", "granian"]
    assert _option(command, "--interface") == "wsgi"
    assert (_option(command, "--host"), _option(command, "--port")) == ("127.0.0.1", "8000")
    assert _option(command, "--workers") == "2"
    assert _option(command, "--blocking-threads") == "1"
    assert "--no-access-log" in command
    assert command[-1] == "config.wsgi:application"


def test_environment_sets_bind_workers_threads_and_access_log():
    # when
    command = web_command(
        PYTHON,
        {
            "WEB_BIND": "0.0.0.0:8765",
            "WEB_CONCURRENCY": "3",
            "WEB_THREADS": "2",
            "WEB_ACCESS_LOG": "1",
        },
    )
    # then
    assert (_option(command, "--host"), _option(command, "--port")) == ("0.0.0.0", "8765")
    assert _option(command, "--workers") == "3"
    assert _option(command, "--blocking-threads") == "2"
    assert "--access-log" in command


def test_gunicorn_bind_is_still_read():
    assert web_bind({"GUNICORN_BIND": "127.0.0.1:9000"}) == "127.0.0.1:9000"
    assert web_bind({"GUNICORN_BIND": "127.0.0.1:9000", "WEB_BIND": "127.0.0.1:9001"}) == (
        "127.0.0.1:9001"
    )


def test_gunicorn_runs_its_configuration_file_with_the_bind_address():
    # when
    env = {"WEB_SERVER": "gunicorn", "WEB_BIND": "127.0.0.1:8123"}
    command = web_command(PYTHON, env)
    # then
    assert command[:3] == [PYTHON, "-m", "gunicorn"]
    assert _option(command, "-c").endswith("config/gunicorn.conf.py")
    assert web_environment(env)["GUNICORN_BIND"] == "127.0.0.1:8123"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEB_SERVER": "uwsgi"}, "WEB_SERVER"),
        ({"WEB_CONCURRENCY": "two"}, "WEB_CONCURRENCY"),
        ({"WEB_THREADS": "0"}, "WEB_THREADS"),
    ],
)
def test_bad_settings_are_refused_by_name(env, named):
    with pytest.raises(ValueError, match=named):
        web_command(PYTHON, env)


# The real server -----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _database_url() -> str:
    return database_url_from_settings(connection.settings_dict)


@pytest.fixture
def granian(transactional_db, tmp_path):
    """granian as `make run` starts it, on a free port, against the test database."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "test-secret-key-for-the-live-server-only",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "COSTSIM_V2_SANDBOX": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "WEB_SERVER": "granian",
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
    }
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        web_command(PYTHON, env),
        env=web_environment(env),
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/health/")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "granian did not answer within 60 s"
            time.sleep(0.2)
        yield port, server
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=20)
        log.close()


def test_granian_serves_shadowed_simulations_on_one_connection_and_a_crash_loses_no_row(
    granian,
):
    # given: a tenant with a key, the breaker closed
    port, server = granian
    CircuitBreaker.objects.get_or_create(name=BREAKER_NAME)
    raw = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=TenantFactory(slug="live"), raw_key=raw)
    body = json.dumps({"plan": [{"skill": "http_call", "params": {"url": "https://example.com"}}]})
    headers = {"Authorization": f"Api-Key {raw}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    # when: three simulations on one keep-alive connection
    answers = []
    for _ in range(3):
        conn.request("POST", "/api/v1/costsim/simulate/", body=body, headers=headers)
        response = conn.getresponse()
        answers.append((response.status, json.loads(response.read())))
    # and the server dies at once, without a chance to flush anything
    os.killpg(server.pid, signal.SIGKILL)
    server.wait(timeout=20)
    # then: every answer had V2, and each one's row is in the database
    assert [status for status, _ in answers] == [200, 200, 200]
    assert all(answer["v2_error"] is None and answer["v2"] for _, answer in answers)
    assert Provenance.objects.filter(tenant__slug="live").count() == 3
