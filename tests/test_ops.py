import os
import runpy
import subprocess
import sys
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from prometheus_client.core import GaugeMetricFamily

from config import ops
from config.celery import app as celery_app

METRICS_CHILD = """
from prometheus_client import Counter
Counter("costwise_ops_probe", "Counted by a child process.").inc(3)
"""


class StateCollector:
    def collect(self):
        yield GaugeMetricFamily("costwise_ops_state", "Computed at scrape time.", value=1)


class BrokenCollector:
    def collect(self):
        raise RuntimeError("database is gone")


def test_health_is_ok_without_touching_the_database(client):
    # when (no django_db mark: any query would raise)
    response = client.get("/api/health/")
    # then
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_ready_when_database_broker_and_migrations_are_fine(client):
    # when
    response = client.get("/api/ready/")
    # then
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "migrations": "ok"},
    }


@pytest.mark.django_db
def test_unreachable_broker_is_not_ready(client, monkeypatch):
    # given nothing listens on port 1
    monkeypatch.setitem(celery_app.conf, "broker_url", "redis://127.0.0.1:1/0")
    # when
    response = client.get("/api/ready/")
    # then
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["migrations"] == "ok"
    assert body["checks"]["broker"].startswith("error: ")


@pytest.mark.django_db
def test_unapplied_migration_is_not_ready(client):
    # given the test transaction forgets that the sessions table was migrated
    MigrationRecorder(connection).record_unapplied("sessions", "0001_initial")
    # when
    response = client.get("/api/ready/")
    # then
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["migrations"] == "error: 1 unapplied migration(s): sessions.0001_initial"
    assert checks["database"] == "ok"


def test_metrics_exposes_request_counters(client):
    # given
    client.get("/api/health/")
    # when
    response = client.get("/metrics")
    # then
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "django_http_requests_total_by_method_total" in response.content.decode()


def test_metrics_adds_scrape_time_collectors_and_survives_a_broken_one(client, monkeypatch):
    # given
    monkeypatch.setattr(ops, "SCRAPE_COLLECTORS", [BrokenCollector(), StateCollector()])
    # when
    response = client.get("/metrics")
    # then
    assert response.status_code == 200
    body = response.content.decode()
    assert "costwise_ops_state 1.0" in body
    assert "django_http_requests_total_by_method_total" in body


def test_metrics_aggregates_the_multiprocess_directory(client, monkeypatch, tmp_path):
    # given a process that counted into the shared directory and has exited
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", METRICS_CHILD], env=env, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(ops, "SCRAPE_COLLECTORS", [StateCollector()])
    # when
    response = client.get("/metrics")
    # then
    body = response.content.decode()
    assert response.status_code == 200
    assert "costwise_ops_probe_total 3.0" in body
    assert "costwise_ops_state 1.0" in body


def test_gunicorn_child_exit_drops_the_dead_workers_live_gauges(monkeypatch, tmp_path):
    # given a dead worker's files: a live gauge (dropped) and a counter (kept)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"")
    (tmp_path / "counter_4242.db").write_bytes(b"")
    conf = runpy.run_path(str(settings.BASE_DIR / "config" / "gunicorn.conf.py"))
    # when
    conf["child_exit"](None, SimpleNamespace(pid=4242))
    # then
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_4242.db"]
