"""The breaker's scrape-time gauges."""

from datetime import timedelta

import pytest
import time_machine

from costsim.collectors import STATE_COLLECTOR
from costsim.services import breaker as svc
from tests.costsim.breaker_support import (
    T0,
    breaker_defaults,  # noqa: F401 (autouse fixture)
    breaker_row,
    trip_by_drift,
)
from tests.costsim.safety_factories import AlertDeliveryFactory

# Scrape-time gauges -------------------------------------------------------------------


def _gauges() -> dict:
    values = {}
    for family in STATE_COLLECTOR.collect():
        for sample in family.samples:
            values[sample.name] = (sample.value, sample.labels)
    return values


@pytest.mark.django_db
def test_gauges_read_the_database_without_side_effects(settings):
    # given an automatic trip, one pending alert more, and an expired TTL
    with time_machine.travel(T0, tick=False):
        trip_by_drift()
    AlertDeliveryFactory()
    # when
    with time_machine.travel(T0 + timedelta(hours=1), tick=False):
        open_gauges = _gauges()
    with time_machine.travel(T0 + timedelta(hours=25), tick=False):
        expired_gauges = _gauges()
    # then
    assert open_gauges["costsim_v2_circuit_breaker_state"][0] == 1
    assert open_gauges["costsim_cb_consecutive_failures"][0] == 3
    assert open_gauges["costsim_cb_alert_queue_depth"][0] == 2
    assert open_gauges["costsim_v2_version_info"] == (
        1,
        {
            "model_version": settings.COSTSIM_MODEL_VERSION,
            "adapter_version": settings.COSTSIM_ADAPTER_VERSION,
        },
    )
    # no canary report yet: the distances are absent, not 0
    assert "costsim_v2_kl_divergence" not in open_gauges
    # past the TTL the gauge reads 0, but the scrape did not close the breaker
    assert expired_gauges["costsim_v2_circuit_breaker_state"][0] == 0
    assert breaker_row().disabled is True


@pytest.mark.django_db
def test_metrics_endpoint_shows_the_breaker_state(client):
    # given
    trip_by_drift()
    # when
    body = client.get("/metrics").content.decode()
    # then
    assert "costsim_v2_circuit_breaker_state 1.0" in body
    assert "costsim_cb_consecutive_failures 3.0" in body
    assert "costsim_cb_alert_queue_depth 1.0" in body
    assert body.count("# TYPE costsim_v2_circuit_breaker_state gauge") == 1


@pytest.mark.django_db
def test_multiprocess_metrics_include_the_state_gauges(client, monkeypatch, tmp_path):
    # given a multiprocess deployment whose shared directory holds nothing yet
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    svc.breaker_disable(reason="maintenance", actor="user:ops")
    # when
    body = client.get("/metrics").content.decode()
    # then
    assert body.count("# TYPE costsim_v2_circuit_breaker_state gauge") == 1
    assert "costsim_v2_circuit_breaker_state 1.0" in body
    assert "costsim_v2_version_info{" in body
