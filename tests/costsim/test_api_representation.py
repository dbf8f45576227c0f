"""CostSim responses name every amount `*_cents` and say null for "nobody"."""

import pytest
import time_machine

from tests.costsim.factories import ProvenanceFactory
from tests.costsim.safety_factories import BreakerIncidentFactory, CanaryReportFactory
from tests.factories import utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 9, 12)


def test_provenance_rows_and_drift_stats_name_amounts_in_cents(api_client, tenant):
    # given
    ProvenanceFactory(tenant=tenant)  # 5 -> 4
    # when
    (row,) = api_client.get("/api/v1/costsim/provenance/").json()["results"]
    stats = api_client.get("/api/v1/costsim/provenance/drift-stats/").json()
    # then
    assert (row["v1_cost_cents"], row["v2_cost_cents"], row["cost_delta_cents"]) == (5, 4, -1)
    assert not {"v1_cost", "v2_cost", "cost_delta"} & set(row)
    assert set(stats) == {
        "total",
        "avg_delta_cents",
        "min_delta_cents",
        "max_delta_cents",
        "stddev_delta_cents",
    }


def test_divergence_percentiles_are_named_in_cents(api_client, tenant):
    # given
    with time_machine.travel(NOW, tick=False):
        ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 9, 11))
        body = api_client.get("/api/v1/costsim/divergence/", {"days": 1}).json()
    # then
    assert (body["delta_p50_cents"], body["delta_p90_cents"]) == (1.0, 1.0)
    assert not {"delta_p50", "delta_p90"} & set(body)


def test_canary_reports_name_cost_differences_in_cents(api_client, staff_key_client):
    # given
    CanaryReportFactory(median_cost_diff=2.5, p90_cost_diff=7.0)
    # when
    (report,) = api_client.get("/api/v1/costsim/canary/reports/").json()["results"]
    run = staff_key_client.post(
        "/api/v1/costsim/canary/run/", {"sample_count": 10, "drift_threshold": 1}, format="json"
    ).json()
    # then
    assert (report["median_cost_diff_cents"], report["p90_cost_diff_cents"]) == (2.5, 7.0)
    assert {"median_cost_diff_cents", "p90_cost_diff_cents"} <= set(run)
    assert not {"median_cost_diff", "p90_cost_diff"} & (set(report) | set(run))
    assert run["diffs"] and all("cost_diff_cents" in diff for diff in run["diffs"])
    assert not any("cost_diff" in diff for diff in run["diffs"])


def test_an_open_breaker_incident_was_resolved_by_nobody(api_client):
    # given
    BreakerIncidentFactory(resolved=False, resolved_by="")
    # when
    (incident,) = api_client.get("/api/v1/costsim/incidents/").json()["results"]
    # then
    assert incident["resolved_by"] is None
