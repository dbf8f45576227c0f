"""Divergence report: SQL percentiles, distances, window and tenancy."""

from datetime import timedelta

import pytest
import time_machine

from costsim.models import Provenance
from costsim.selectors.divergence import divergence_report
from costsim.services.distances import distribution_distances
from costsim.services.drift import verdict_for
from tests.costsim.factories import BackfillProvenanceFactory
from tests.factories import utc

NOW = utc(2026, 3, 9, 12)


def _rows(tenant, pairs, *, start=NOW - timedelta(hours=1), step=timedelta(seconds=-1)):
    """Bulk-insert comparison rows; pairs are (v1, v2[, drift]) and get older one by one."""
    rows = []
    for index, pair in enumerate(pairs):
        v1, v2 = pair[0], pair[1]
        drift = pair[2] if len(pair) > 2 else round(0.6 * min(abs(v2 - v1) / max(v1, 1), 1), 4)
        rows.append(
            Provenance(
                tenant=tenant,
                variant_slug="v2",
                source="sandbox",
                model_version="2.0.0",
                adapter_version="2.0.0",
                commit_sha="unknown",
                input_json={},
                input_hash=f"{index:016x}",
                v1_cost=v1,
                v2_cost=v2,
                cost_delta=v2 - v1,
                drift_score=drift,
                verdict=verdict_for(drift),
                v2_status="success",
                created_at=start + index * step,
            )
        )
    return Provenance.objects.bulk_create(rows)


@pytest.mark.django_db
def test_percentiles_are_element_floor_f_n_not_percentile_disc(tenant):
    # given ten absolute deltas 0..9 in shuffled order
    _rows(tenant, [(100, 100 + d) for d in (7, 2, 9, 0, 5, 3, 8, 1, 6, 4)])
    # when
    report = divergence_report(tenant=tenant, now=NOW)
    # then element 5 and element 9 (percentile_disc would give 4 and 8)
    assert report["sample_count"] == 10
    assert report["delta_p50"] == 5.0
    assert report["delta_p90"] == 9.0


@pytest.mark.django_db
def test_small_sample_percentiles(tenant):
    # given |deltas| 1, 2, 3, 4 (signs mixed)
    _rows(tenant, [(10, 9), (10, 12), (10, 7), (10, 14)])
    # when
    report = divergence_report(tenant=tenant, now=NOW)
    # then floor(0.5*4) = 2 and floor(0.9*4) = 3
    assert (report["delta_p50"], report["delta_p90"]) == (3.0, 4.0)


@pytest.mark.django_db
def test_distances_and_rates_follow_the_spec_example(tenant, settings):
    # given P = [100]*5 and Q = [50, 150, 75, 125, 100], judged with a floor of 5
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 5
    _rows(
        tenant,
        [(100, 50, 0.3), (100, 150, 0.3), (100, 75, 0.15), (100, 125, 0.15), (100, 100, 0.0)],
    )
    # when
    report = divergence_report(tenant=tenant, now=NOW)
    # then
    kl, js = distribution_distances([100] * 5, [50, 150, 75, 125, 100])
    assert (report["status"], report["min_samples"]) == ("ok", 5)
    assert report["kl_divergence"] == round(kl, 4) == 1.6094
    assert report["js_distance"] == round(js, 4) == 0.781
    assert report["outlier_count"] == 0
    assert report["fail_ratio"] == 0.4
    assert report["matching_rate"] == 0.2
    assert report["version"] == "2.0.0"


@pytest.mark.django_db
def test_outliers_and_fail_ratio_use_strict_bounds(tenant):
    # given drift scores at and above the bounds
    _rows(tenant, [(10, 10, 0.2), (10, 10, 0.21), (10, 10, 0.5), (10, 10, 0.51)])
    # when
    report = divergence_report(tenant=tenant, now=NOW)
    # then
    assert report["outlier_count"] == 1
    assert report["fail_ratio"] == 0.75


@pytest.mark.django_db
def test_window_tenant_and_costs_select_the_samples(tenant, other_tenant):
    # given
    inside = _rows(tenant, [(10, 12)], start=NOW - timedelta(days=6, hours=23))
    _rows(tenant, [(10, 99)], start=NOW - timedelta(days=7, seconds=1))
    _rows(tenant, [(10, 99)], start=NOW)
    _rows(other_tenant, [(10, 99)])
    BackfillProvenanceFactory(tenant=tenant, created_at=NOW - timedelta(hours=1))
    # when
    report = divergence_report(tenant=tenant, days=7, now=NOW)
    # then
    assert report["sample_count"] == 1
    assert report["start_date"] == NOW - timedelta(days=7)
    assert report["end_date"] == NOW
    assert report["detailed_samples"] == [
        {
            "timestamp": inside[0].created_at,
            "input_hash": inside[0].input_hash,
            "v1_cost_cents": 10,
            "v2_cost_cents": 12,
            "cost_delta_cents": 2,
            "drift_score": 0.12,
            "verdict": "minor_drift",
        }
    ]


@pytest.mark.django_db
def test_only_the_newest_1000_rows_count_and_100_are_detailed(tenant):
    # given 1000 recent rows with delta 1 and one older row with a huge delta
    _rows(tenant, [(10, 11)] * 1000)
    _rows(tenant, [(10, 5000)], start=NOW - timedelta(days=1))
    # when
    report = divergence_report(tenant=tenant, now=NOW)
    # then
    assert report["sample_count"] == 1000
    assert report["delta_p90"] == 1.0
    assert len(report["detailed_samples"]) == 100
    timestamps = [s["timestamp"] for s in report["detailed_samples"]]
    assert timestamps == sorted(timestamps, reverse=True)
    assert timestamps[0] == NOW - timedelta(hours=1)


@pytest.mark.django_db
def test_no_samples_gives_zeros_and_no_distance(tenant):
    # when
    report = divergence_report(tenant=tenant, now=NOW)
    # then
    assert report["sample_count"] == 0
    assert report["status"] == "insufficient_data"
    assert report["delta_p50"] == report["fail_ratio"] == 0.0
    assert (report["kl_divergence"], report["js_distance"]) == (None, None)
    assert report["outlier_count"] == 0
    assert report["detailed_samples"] == []


@pytest.mark.django_db
def test_below_the_floor_the_report_gives_no_distance_but_still_describes_the_rows(
    tenant, settings
):
    # given the default floor and 99 rows whose costs differ (KL 23 on such a few)
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 100
    _rows(tenant, [(10, 25)] + [(10, 10)] * 98)
    # when
    below = divergence_report(tenant=tenant, now=NOW)
    _rows(tenant, [(10, 10)], start=NOW - timedelta(minutes=30))
    at = divergence_report(tenant=tenant, now=NOW)
    # then
    assert (below["status"], below["sample_count"], below["min_samples"]) == (
        "insufficient_data",
        99,
        100,
    )
    assert (below["kl_divergence"], below["js_distance"]) == (None, None)
    assert below["delta_p90"] == 0.0
    assert below["outlier_count"] == 1
    assert below["matching_rate"] == round(98 / 99, 4)
    assert len(below["detailed_samples"]) == 99
    assert (at["status"], at["sample_count"]) == ("ok", 100)
    assert at["kl_divergence"] == round(distribution_distances([10] * 100, [25] + [10] * 99)[0], 4)
    assert at["kl_divergence"] > 0


# API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_report_is_scoped_to_the_callers_tenant(api_client, other_client, tenant):
    # given
    with time_machine.travel(NOW, tick=False):
        _rows(tenant, [(10, 12), (10, 10)])
        mine = api_client.get("/api/v1/costsim/divergence/", {"days": 1}).json()
        theirs = other_client.get("/api/v1/costsim/divergence/").json()
    # then
    assert mine["sample_count"] == 2
    assert (mine["status"], mine["min_samples"]) == ("insufficient_data", 100)
    assert (mine["kl_divergence"], mine["js_distance"]) == (None, None)
    assert mine["start_date"] == "2026-03-08T12:00:00Z"
    assert mine["end_date"] == "2026-03-09T12:00:00Z"
    assert mine["detailed_samples"][0]["timestamp"] == "2026-03-09T11:00:00Z"
    assert theirs["sample_count"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("days", ["0", "91", "seven", "1.5"])
def test_api_rejects_bad_days(api_client, days):
    # when
    response = api_client.get("/api/v1/costsim/divergence/", {"days": days})
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == "days"


@pytest.mark.django_db
def test_api_needs_a_tenant_key(staff_session_client):
    # when
    response = staff_session_client.get("/api/v1/costsim/divergence/")
    # then
    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"
