"""Calibration report (docs/calibration.md): V2 estimates against actual cost records."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from costsim.selectors.calibration import calibration_report
from tests.costsim.factories import ProvenanceFactory
from tests.factories import CostRecordFactory, utc

NOW = utc(2026, 3, 31, 12)
START = NOW - timedelta(days=30)


def _estimate(tenant, run_id, steps, *, total=None, created_at=NOW - timedelta(days=1)):
    """A V2 provenance row whose result estimates `steps` [(skill, cents), ...]."""
    total = round(sum(c for _, c in steps)) if total is None else total
    return ProvenanceFactory(
        tenant=tenant,
        run_id=run_id,
        created_at=created_at,
        output_json={
            "estimated_cost_cents": total,
            "step_estimates": [
                {"step_index": i, "skill_id": skill, "cost_cents": float(cents)}
                for i, (skill, cents) in enumerate(steps)
            ],
        },
    )


def _actual(tenant, cents, *, skill="llm_invoke", **ids):
    return CostRecordFactory(tenant=tenant, cost_cents=Decimal(str(cents)), skill_id=skill, **ids)


def _report(tenant, *, tolerance=0.25, start=START, end=NOW):
    return calibration_report(tenant=tenant, start=start, end=end, tolerance=tolerance)


@pytest.mark.django_db
def test_spec_example_minus_20_percent_bias_and_covered(tenant):
    # given run R estimated at 40 cents of llm_invoke, actually 50 cents of llm_invoke
    _estimate(tenant, "R", [("llm_invoke", 40)])
    _actual(tenant, 30, run_id="R")
    _actual(tenant, 20, run_id="R")
    # when
    report = _report(tenant)
    # then
    expected = {
        "runs": 1,
        "estimated_cents": Decimal(40),
        "actual_cents": Decimal(50),
        "bias_pct": -20.0,
        "mean_abs_error_cents": 10.0,
        "coverage": 1.0,
    }
    assert report["overall"] == expected
    assert report["by_skill"] == [{"skill_id": "llm_invoke", **expected}]
    assert (report["runs_matched"], report["runs_unmatched"]) == (1, 0)
    assert report["tolerance"] == 0.25
    assert report["window"] == {"from": START, "to": NOW}


@pytest.mark.django_db
def test_only_the_newest_estimate_of_a_run_counts(tenant):
    # given
    _estimate(tenant, "R", [("llm_invoke", 10)], created_at=NOW - timedelta(days=3))
    _estimate(tenant, "R", [("llm_invoke", 48)], created_at=NOW - timedelta(days=2))
    _actual(tenant, 50, run_id="R")
    # when
    report = _report(tenant)
    # then
    assert report["overall"]["estimated_cents"] == Decimal(48)
    assert report["overall"]["runs"] == 1


@pytest.mark.django_db
def test_records_match_by_run_workflow_or_request_id_and_count_once(tenant):
    # given
    _estimate(tenant, "R", [("llm_invoke", 10)])
    _actual(tenant, 1, run_id="R")
    _actual(tenant, 2, workflow_id="R")
    _actual(tenant, 4, request_id="R")
    _actual(tenant, 8, run_id="R", workflow_id="R", request_id="R")
    _actual(tenant, 100, run_id="other")
    # when
    report = _report(tenant)
    # then
    assert report["overall"]["actual_cents"] == Decimal(15)


@pytest.mark.django_db
def test_per_skill_rows_include_unattributed_and_skip_zero_skills(tenant):
    # given
    _estimate(
        tenant, "R1", [("llm_invoke", 3.56), ("http_call", 0.0), ("email_send", 0.8)], total=4
    )
    _actual(tenant, "3.5", run_id="R1")
    _actual(tenant, "0.25", run_id="R1", skill=None)
    # when
    report = _report(tenant)
    # then
    by_skill = {row["skill_id"]: row for row in report["by_skill"]}
    assert list(by_skill) == ["email_send", "llm_invoke", "unattributed"]
    assert by_skill["llm_invoke"]["estimated_cents"] == Decimal("3.56")
    assert by_skill["llm_invoke"]["actual_cents"] == Decimal("3.5")
    assert by_skill["llm_invoke"]["mean_abs_error_cents"] == 0.06
    assert by_skill["email_send"]["actual_cents"] == Decimal(0)
    assert by_skill["email_send"]["bias_pct"] is None
    assert by_skill["unattributed"]["estimated_cents"] == Decimal(0)
    assert by_skill["unattributed"]["bias_pct"] == -100.0
    assert report["overall"]["estimated_cents"] == Decimal(4)
    assert report["overall"]["actual_cents"] == Decimal("3.75")


@pytest.mark.django_db
def test_runs_without_records_are_unmatched_and_ignored(tenant):
    # given
    _estimate(tenant, "R1", [("llm_invoke", 40)])
    _estimate(tenant, "R2", [("llm_invoke", 999)])
    _actual(tenant, 40, run_id="R1")
    # when
    report = _report(tenant)
    # then
    assert (report["runs_matched"], report["runs_unmatched"]) == (1, 1)
    assert report["overall"]["estimated_cents"] == Decimal(40)


@pytest.mark.django_db
def test_coverage_band_is_max_of_one_cent_and_tolerance(tenant):
    # given: |2-3| = 1 <= max(1, 0.5); |40-51| = 11 > 10; |40-30| = 10 <= 10
    _estimate(tenant, "small", [("llm_invoke", 2)])
    _actual(tenant, 3, run_id="small")
    _estimate(tenant, "over", [("llm_invoke", 40)])
    _actual(tenant, 51, run_id="over")
    _estimate(tenant, "under", [("llm_invoke", 40)])
    _actual(tenant, 30, run_id="under")
    # when
    report = _report(tenant)
    # then
    assert report["overall"]["runs"] == 3
    assert report["overall"]["coverage"] == 0.6667
    assert report["overall"]["mean_abs_error_cents"] == round((1 + 11 + 10) / 3, 2)
    assert _report(tenant, tolerance=0.5)["overall"]["coverage"] == 1.0


@pytest.mark.django_db
def test_other_tenants_window_and_missing_run_ids_are_ignored(tenant, other_tenant):
    # given
    _estimate(tenant, "R", [("llm_invoke", 40)])
    _actual(tenant, 50, run_id="R")
    _actual(other_tenant, 1000, run_id="R")
    _estimate(other_tenant, "X", [("llm_invoke", 5)])
    _actual(other_tenant, 5, run_id="X")
    _estimate(tenant, "old", [("llm_invoke", 5)], created_at=START - timedelta(seconds=1))
    _actual(tenant, 5, run_id="old")
    _estimate(tenant, None, [("llm_invoke", 5)])
    # when
    report = _report(tenant)
    # then
    assert report["overall"]["actual_cents"] == Decimal(50)
    assert (report["runs_matched"], report["runs_unmatched"]) == (1, 0)


@pytest.mark.django_db
def test_empty_report(tenant):
    # when
    report = _report(tenant)
    # then
    assert report["runs_matched"] == report["runs_unmatched"] == 0
    assert report["overall"] == {
        "runs": 0,
        "estimated_cents": Decimal(0),
        "actual_cents": Decimal(0),
        "bias_pct": None,
        "mean_abs_error_cents": 0.0,
        "coverage": 0.0,
    }
    assert report["by_skill"] == []


# API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_defaults_to_the_last_30_days_and_renders_exact_cents(api_client, tenant):
    # given
    _estimate(tenant, "R", [("llm_invoke", 40)])
    _actual(tenant, "50.125", run_id="R")
    # when
    with time_machine.travel(NOW, tick=False):
        response = api_client.get("/api/v1/costsim/calibration/")
    # then
    assert response.status_code == 200
    assert b'"actual_cents":50.125' in response.content
    body = response.json()
    assert body["window"] == {"from": "2026-03-01T12:00:00Z", "to": "2026-03-31T12:00:00Z"}
    assert body["overall"]["estimated_cents"] == 40
    assert body["overall"]["bias_pct"] == -20.2
    assert body["by_skill"][0]["skill_id"] == "llm_invoke"
    assert list(body) == [
        "window",
        "tolerance",
        "runs_matched",
        "runs_unmatched",
        "overall",
        "by_skill",
    ]


@pytest.mark.django_db
def test_api_is_scoped_to_the_callers_tenant(other_client, tenant):
    # given
    _estimate(tenant, "R", [("llm_invoke", 40)])
    _actual(tenant, 50, run_id="R")
    # when
    with time_machine.travel(NOW, tick=False):
        body = other_client.get("/api/v1/costsim/calibration/").json()
    # then
    assert body["runs_matched"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"from": "2026-03-01T00:00:00"}, "from", "timezone is required"),
        ({"to": "yesterday"}, "to", "must be an ISO-8601 datetime"),
        (
            {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
            "from",
            "must be before 'to'",
        ),
        (
            {"from": "2025-12-01T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
            "to",
            "time window cannot exceed 90 days",
        ),
    ],
)
def test_api_rejects_bad_windows(api_client, params, field, reason):
    # when
    response = api_client.get("/api/v1/costsim/calibration/", params)
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"] == [{"field": field, "reason": reason}]


@pytest.mark.django_db
def test_api_accepts_exactly_90_days(api_client):
    # when
    response = api_client.get(
        "/api/v1/costsim/calibration/",
        {"from": "2026-01-01T00:00:00Z", "to": "2026-04-01T00:00:00Z"},
    )
    # then
    assert response.status_code == 200
    assert response.json()["window"]["from"] == "2026-01-01T00:00:00Z"
