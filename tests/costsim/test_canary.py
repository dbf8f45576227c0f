"""The canary service, command, task and endpoints."""

import os
import subprocess
import sys
import threading
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from prometheus_client import REGISTRY

from costsim.collectors import STATE_COLLECTOR
from costsim.models import BREAKER_NAME, BreakerIncident, CanaryReport, CircuitBreaker
from costsim.services import canary as canary_service
from costsim.services.canary import canary_run, canary_samples
from costsim.tasks import canary_task
from tests.costsim.factories import ProvenanceFactory
from tests.costsim.safety_factories import CanaryReportFactory
from tests.factories import utc

T0 = utc(2026, 3, 2, 2)


def _json_plan(i: int) -> list[dict]:
    return [{"skill": "json_transform", "params": {"query": f"$.field{i}"}}]


def _mystery_plan(i: int) -> list[dict]:
    # V1 prices an unknown skill at 10 cents, V2 at 5: a major drift every time.
    return [{"skill": f"mystery_{i}", "params": {}}]


def _traffic(tenant, plan, count: int, *, first: int = 0) -> None:
    """`count` distinct recent inputs, one provenance row each."""
    for i in range(first, first + count):
        ProvenanceFactory(tenant=tenant, plan=plan(i))


def _runs(status: str) -> float:
    return REGISTRY.get_sample_value("costsim_v2_canary_runs_total", {"status": status}) or 0.0


def _breaker() -> CircuitBreaker:
    return CircuitBreaker.objects.get(name=BREAKER_NAME)


@pytest.fixture(autouse=True)
def _defaults(settings):
    settings.COSTSIM_DRIFT_THRESHOLD = 0.2
    settings.COSTSIM_FAILURE_THRESHOLD = 3
    settings.COSTSIM_DISABLE_TTL_HOURS = 24
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 100


# Samples ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_samples_are_recent_successful_v2_inputs_newest_per_hash(tenant, other_tenant):
    # given
    with time_machine.travel(T0, tick=False):
        old_of_a = ProvenanceFactory(
            tenant=tenant, plan=_json_plan(1), created_at=T0 - timedelta(hours=3)
        )
        b = ProvenanceFactory(
            tenant=other_tenant, plan=_json_plan(2), created_at=T0 - timedelta(hours=2)
        )
        newest_of_a = ProvenanceFactory(
            tenant=tenant, plan=_json_plan(1), created_at=T0 - timedelta(hours=1)
        )
        ProvenanceFactory(tenant=tenant, plan=_json_plan(3), created_at=T0 - timedelta(days=8))
        # V2 refuses this one (budget), so it is not a success
        ProvenanceFactory(tenant=tenant, plan=_mystery_plan(4), budget_cents=1)
        ProvenanceFactory(
            tenant=tenant, plan=_json_plan(5), input_json={"plan": [], "budget_cents": 5}
        )
        ProvenanceFactory(tenant=tenant, plan=_json_plan(6), variant_slug="v1")
        samples = canary_samples(limit=10)
    # then
    assert old_of_a.input_hash == newest_of_a.input_hash
    assert [s.sample_id for s in samples] == [
        f"provenance_{newest_of_a.pk}",
        f"provenance_{b.pk}",
    ]
    assert samples[0].plan == _json_plan(1)
    assert samples[0].budget_cents == 100
    assert samples[0].allowed_skills is None


@pytest.mark.django_db
def test_samples_carry_budget_and_allowlist_and_respect_the_limit(tenant):
    # given
    for i in range(3):
        ProvenanceFactory(
            tenant=tenant, plan=_json_plan(i), budget_cents=7, allowed_skills=["json_transform"]
        )
    # when
    samples = canary_samples(limit=2)
    # then
    assert len(samples) == 2
    assert {(s.budget_cents, tuple(s.allowed_skills)) for s in samples} == {
        (7, ("json_transform",))
    }


# Runs ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_provenance_the_synthetic_set_runs_but_leaves_the_breaker_alone():
    # given a fresh install whose breaker already counts two sandbox failures
    from costsim.services.breaker import breaker_report_drift

    with time_machine.travel(T0 - timedelta(hours=1), tick=False):
        for _ in range(2):
            breaker_report_drift(score=0.9, sample_count=1, details={})
    counted = _runs("insufficient_data")
    failed = _runs("fail")
    # when
    with time_machine.travel(T0, tick=False):
        report = canary_run(sample_count=100, drift_threshold=0.2)
    # then the four synthetic plans ran (a smoke test of V1 and V2) ...
    assert report.sample_source == "synthetic"
    assert report.total_samples == report.evaluated_samples == 4
    assert [c["sample_id"] for c in report.comparisons] == [
        "synthetic_1",
        "synthetic_2",
        "synthetic_3",
        "synthetic_4",
    ]
    assert [d["sample_id"] for d in report.diffs] == ["synthetic_4"]
    # ... but judged nothing
    assert report.status == "insufficient_data"
    assert report.passed is False
    assert report.kl_divergence is None
    assert report.min_samples == 100
    assert report.failure_reasons == [
        "Insufficient data: synthetic samples only check that V2 runs; judging V2 needs "
        "100 evaluated samples of recent V2 traffic, found 0"
    ]
    row = CanaryReport.objects.get(run_id=report.run_id)
    assert row.timestamp == T0
    assert (row.status, row.evaluated_samples, row.min_samples) == ("insufficient_data", 4, 100)
    assert (row.kl_divergence, row.js_distance) == (None, None)
    assert row.comparisons == report.comparisons
    assert row.failure_reasons == report.failure_reasons
    breaker = _breaker()
    assert breaker.consecutive_failures == 2
    assert breaker.last_failure_at == T0 - timedelta(hours=1)
    assert breaker.disabled is False
    assert _runs("insufficient_data") == counted + 1
    assert _runs("fail") == failed


@pytest.mark.django_db
def test_synthetic_samples_stay_out_of_the_breaker_even_with_a_floor_of_one(settings):
    # given a floor the four synthetic samples would clear
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 1
    # when three days pass without traffic
    reports = [canary_run(sample_count=100, drift_threshold=0.2) for _ in range(3)]
    # then
    assert [r.status for r in reports] == ["insufficient_data"] * 3
    assert BreakerIncident.objects.count() == 0
    assert _breaker().consecutive_failures == 0


@pytest.mark.django_db
def test_three_quiet_days_with_one_sample_each_do_not_disable_v2(tenant):
    # given one real input a day on which V1 and V2 disagree (KL 23 on its own)
    reports = []
    for day in range(3):
        with time_machine.travel(T0 + timedelta(days=day), tick=False):
            ProvenanceFactory(tenant=tenant, plan=_mystery_plan(day))
            # when the daily canary runs
            reports.append(canary_run(sample_count=100, drift_threshold=0.2))
    # then no verdict, no failure counted, V2 still enabled
    assert [r.status for r in reports] == ["insufficient_data"] * 3
    assert [r.evaluated_samples for r in reports] == [1, 2, 3]
    assert reports[2].failure_reasons == [
        "Insufficient data: 3 samples evaluated, judging V2 needs 100"
    ]
    assert {r.kl_divergence for r in reports} == {None}
    assert reports[0].major_drift_samples == 1
    assert BreakerIncident.objects.count() == 0
    breaker = _breaker()
    assert (breaker.disabled, breaker.consecutive_failures) == (False, 0)


@pytest.mark.django_db
@pytest.mark.parametrize("plan", [_mystery_plan, _json_plan], ids=["drifting", "agreeing"])
def test_too_few_samples_neither_extend_nor_reset_the_streak(tenant, plan):
    # given two sandbox failures and a few inputs that would fail or pass a judged canary
    from costsim.services.breaker import breaker_report_drift

    for _ in range(2):
        breaker_report_drift(score=0.9, sample_count=1, details={})
    _traffic(tenant, plan, 5)
    # when
    report = canary_run(sample_count=100, drift_threshold=0.2)
    # then
    assert report.status == "insufficient_data"
    assert _breaker().consecutive_failures == 2


@pytest.mark.django_db
def test_the_canary_decides_from_the_floor_on(tenant):
    # given 99 recent inputs that all drift
    _traffic(tenant, _mystery_plan, 99)
    # when
    below = canary_run(sample_count=100, drift_threshold=0.2)
    _traffic(tenant, _mystery_plan, 1, first=99)
    at = canary_run(sample_count=100, drift_threshold=0.2)
    # then
    assert (below.status, below.evaluated_samples) == ("insufficient_data", 99)
    assert (at.status, at.evaluated_samples) == ("fail", 100)
    assert at.kl_divergence is not None
    assert _breaker().consecutive_failures == 1


@pytest.mark.django_db
def test_three_failed_canaries_trip_the_breaker_with_trigger_canary(tenant):
    # given
    _traffic(tenant, _mystery_plan, 100)
    # when
    reports = [canary_run(sample_count=100, drift_threshold=0.2) for _ in range(3)]
    # then
    assert [r.status for r in reports] == ["fail", "fail", "fail"]
    assert reports[0].sample_source == "provenance"
    assert reports[0].major_drift_samples == 100
    incident = BreakerIncident.objects.get()
    assert incident.trigger == "canary"
    assert incident.severity == "P1"
    assert incident.sample_count == 100
    assert incident.drift_score == reports[2].kl_divergence
    assert incident.details["run_id"] == reports[2].run_id
    assert _breaker().disabled is True


@pytest.mark.django_db
def test_a_passing_canary_resets_the_drift_streak(tenant):
    # given two sandbox failures and identical V1/V2 traffic
    from costsim.services.breaker import breaker_report_drift

    for _ in range(2):
        breaker_report_drift(score=0.9, sample_count=1, details={})
    _traffic(tenant, _json_plan, 102)
    passed = _runs("pass")
    # when
    report = canary_run(sample_count=100, drift_threshold=0.2)
    # then
    assert report.status == "pass"
    assert report.passed is True
    assert report.failure_reasons == []
    assert report.total_samples == report.evaluated_samples == 100
    assert report.matching_samples == 100
    assert report.kl_divergence == 0.0
    assert _breaker().consecutive_failures == 0
    assert _runs("pass") == passed + 1


def _unreadable(tenant, count: int) -> None:
    # stored plans the estimators cannot read (no skill key)
    for i in range(count):
        ProvenanceFactory(
            tenant=tenant,
            plan=_json_plan(i),
            input_json={"plan": [{"params": {"n": i}}], "budget_cents": 100},
            input_hash=f"{i:016x}",
        )


@pytest.mark.django_db
def test_enough_samples_that_mostly_raise_give_an_error_that_counts_as_failure(settings, tenant):
    # given a floor of 4 and four inputs of which three cannot be read
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 4
    _unreadable(tenant, 3)
    _traffic(tenant, _json_plan, 1, first=10)
    # when
    report = canary_run(sample_count=10, drift_threshold=0.2)
    # then
    assert report.status == "error"
    assert (report.total_samples, report.evaluated_samples) == (4, 1)
    assert report.failure_reasons == ["3 of 4 samples could not be evaluated"]
    assert report.kl_divergence is None
    assert CanaryReport.objects.get(run_id=report.run_id).status == "error"
    assert _breaker().consecutive_failures == 1


@pytest.mark.django_db
def test_a_few_samples_that_all_raise_are_insufficient_data(tenant):
    # given
    _unreadable(tenant, 2)
    # when
    report = canary_run(sample_count=10, drift_threshold=0.2)
    # then
    assert report.status == "insufficient_data"
    assert report.comparisons == []
    assert report.failure_reasons == [
        "Insufficient data: 0 samples evaluated, judging V2 needs 100",
        "2 of 2 samples could not be evaluated",
    ]
    assert _breaker().consecutive_failures == 0


@pytest.mark.django_db
def test_a_run_without_the_lock_is_skipped_and_changes_nothing(other_session):
    # given another instance is running the canary
    other_session.execute("SELECT pg_advisory_lock(7001)")
    skipped = _runs("skipped")
    # when
    report = canary_run(sample_count=10, drift_threshold=0.2)
    # then
    assert report.status == "skipped"
    assert report.passed is True
    assert report.failure_reasons == ["Skipped: another instance is the leader"]
    assert report.total_samples == 0
    assert CanaryReport.objects.count() == 0
    assert CircuitBreaker.objects.filter(consecutive_failures__gt=0).count() == 0
    assert _runs("skipped") == skipped + 1


@pytest.mark.django_db(transaction=True)
def test_two_canaries_started_at_once_one_runs_one_is_skipped(monkeypatch):
    # given a first run that is held inside its evaluation
    evaluating, release = threading.Event(), threading.Event()
    real_evaluate = canary_service.samples_evaluate

    def held_evaluate(samples, **kwargs):
        evaluating.set()
        release.wait(timeout=10)
        return real_evaluate(samples, **kwargs)

    monkeypatch.setattr(canary_service, "samples_evaluate", held_evaluate)
    reports = {}

    def first():
        try:
            reports["first"] = canary_run(sample_count=10, drift_threshold=0.2)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert evaluating.wait(timeout=10)
    # when the second starts while the first holds lock 7001
    try:
        reports["second"] = canary_run(sample_count=10, drift_threshold=0.2)
    finally:
        release.set()
        thread.join(timeout=30)
    # then
    assert reports["second"].status == "skipped"
    assert reports["first"].status == "insufficient_data"
    assert list(CanaryReport.objects.values_list("run_id", flat=True)) == [reports["first"].run_id]


# Command, task, gauges ----------------------------------------------------------------


@pytest.mark.django_db
def test_command_exits_1_when_the_canary_fails(tenant):
    # given
    _traffic(tenant, _mystery_plan, 100)
    out = StringIO()
    # when
    with pytest.raises(CommandError) as raised:
        call_command("run_canary", "--sample-count", "100", stdout=out)
    # then
    assert raised.value.returncode == 1
    text = out.getvalue()
    assert "status:           fail" in text
    assert "samples:          100 taken, 100 evaluated, 100 needed" in text
    assert "  - Major drift samples 100.00% > 10%" in text
    assert CanaryReport.objects.count() == 1


@pytest.mark.django_db
def test_command_on_a_fresh_install_says_what_it_needs_and_exits_0():
    # given
    out = StringIO()
    # when
    call_command("run_canary", "--sample-count", "10", stdout=out)
    # then
    text = out.getvalue()
    assert "status:           insufficient_data" in text
    assert "distances:        KL -, JS -, 1 outliers" in text
    assert "could not decide: 4 samples evaluated, 100 needed" in text
    assert CanaryReport.objects.get().status == "insufficient_data"


@pytest.mark.django_db
def test_command_succeeds_on_pass_and_on_skip(tenant, other_session):
    # given
    _traffic(tenant, _json_plan, 100)
    out = StringIO()
    # when
    call_command("run_canary", "--sample-count", "100", "--drift-threshold", "0.3", stdout=out)
    other_session.execute("SELECT pg_advisory_lock(7001)")
    call_command("run_canary", stdout=out)
    # then
    text = out.getvalue()
    assert "passed." in text
    assert "Canary skipped: another instance is running." in text
    assert CanaryReport.objects.get().drift_threshold == 0.3


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args", [["--sample-count", "9"], ["--sample-count", "1001"], ["--drift-threshold", "1.5"]]
)
def test_command_rejects_out_of_range_options(args):
    # when / then
    with pytest.raises(CommandError):
        call_command("run_canary", *args, stdout=StringIO())
    assert CanaryReport.objects.count() == 0


@pytest.mark.django_db
def test_task_uses_the_configured_sample_count_gate_and_floor(settings, tenant):
    # given
    settings.COSTSIM_CANARY_SAMPLE_COUNT = 10
    settings.COSTSIM_CANARY_DRIFT_THRESHOLD = 0.5
    settings.COSTSIM_MIN_DRIFT_SAMPLES = 10
    _traffic(tenant, _json_plan, 12)
    # when
    result = canary_task.apply().get()
    # then
    row = CanaryReport.objects.get()
    assert result == {"run_id": row.run_id, "status": "pass", "passed": True}
    assert (row.total_samples, row.drift_threshold, row.min_samples) == (10, 0.5, 10)


@pytest.mark.django_db
def test_gauges_show_the_newest_pass_or_fail_report():
    # given
    CanaryReportFactory(
        timestamp=utc(2026, 3, 1), status="fail", kl_divergence=0.4, js_distance=0.3
    )
    CanaryReportFactory(
        timestamp=utc(2026, 3, 2), status="pass", kl_divergence=0.1, js_distance=0.05
    )
    CanaryReportFactory(timestamp=utc(2026, 3, 3), status="error", kl_divergence=None)
    CanaryReportFactory(timestamp=utc(2026, 3, 4), status="insufficient_data", kl_divergence=None)
    # when
    values = {s.name: s.value for f in STATE_COLLECTOR.collect() for s in f.samples}
    # then
    assert values["costsim_v2_kl_divergence"] == 0.1
    assert values["costsim_v2_js_distance"] == 0.05


# API ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_staff_runs_the_canary_through_the_api(staff_key_client):
    # when
    response = staff_key_client.post(
        "/api/v1/costsim/canary/run/", {"sample_count": 10, "drift_threshold": 1}, format="json"
    )
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "insufficient_data"
    assert body["passed"] is False
    assert (body["evaluated_samples"], body["min_samples"]) == (4, 100)
    assert body["kl_divergence"] is None
    assert body["js_distance"] is None
    assert "needs 100 evaluated samples" in body["failure_reasons"][0]
    assert body["drift_threshold"] == 1.0
    assert body["sample_source"] == "synthetic"
    assert len(body["comparisons"]) == 4
    assert body["diffs"][0]["diff_summary"] == "Drift: 0.6000, Cost delta: 15"
    assert body["timestamp"].endswith("Z")
    assert CanaryReport.objects.get().run_id == body["run_id"]


@pytest.mark.django_db
def test_canary_run_is_staff_only(api_client):
    # when
    response = api_client.post("/api/v1/costsim/canary/run/", {}, format="json")
    # then
    assert response.status_code == 403
    assert CanaryReport.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sample_count": 9}, "sample_count"),
        ({"sample_count": 1001}, "sample_count"),
        ({"drift_threshold": -0.1}, "drift_threshold"),
        ({"drift_threshold": 1.5}, "drift_threshold"),
        ({"samples": 10}, "samples"),
    ],
)
def test_canary_run_rejects_bad_parameters(staff_key_client, body, field):
    # when
    response = staff_key_client.post("/api/v1/costsim/canary/run/", body, format="json")
    # then
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["field_errors"]] == [field]
    assert CanaryReport.objects.count() == 0


@pytest.mark.django_db
def test_reports_list_filters_newest_first_without_samples(api_client):
    # given
    CanaryReportFactory(run_id="a" * 12, timestamp=utc(2026, 3, 1), status="pass")
    CanaryReportFactory(run_id="b" * 12, timestamp=utc(2026, 3, 2), status="fail")
    CanaryReportFactory(
        run_id="c" * 12,
        timestamp=utc(2026, 3, 3),
        status="pass",
        comparisons=[{"sample_id": "x"}],
        diffs=[{"sample_id": "x"}],
    )
    # when
    everything = api_client.get("/api/v1/costsim/canary/reports/").json()
    passed = api_client.get(
        "/api/v1/costsim/canary/reports/", {"passed": "true", "page_size": 1}
    ).json()
    failed = api_client.get("/api/v1/costsim/canary/reports/", {"status": "fail"}).json()
    # then
    assert set(everything) == {"next", "previous", "results", "total"}
    assert [r["run_id"] for r in everything["results"]] == ["c" * 12, "b" * 12, "a" * 12]
    assert everything["total"] == 3
    assert "comparisons" not in everything["results"][0]
    assert "diffs" not in everything["results"][0]
    assert everything["results"][0]["timestamp"] == "2026-03-03T00:00:00Z"
    assert passed["total"] == 2
    assert [r["run_id"] for r in passed["results"]] == ["c" * 12]
    assert [r["run_id"] for r in failed["results"]] == ["b" * 12]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params", [{"status": "great"}, {"passed": "perhaps"}, {"page_size": 0}, {"limit": 5}]
)
def test_reports_list_rejects_bad_filters(api_client, params):
    # when
    response = api_client.get("/api/v1/costsim/canary/reports/", params)
    # then
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == next(iter(params))


@pytest.mark.django_db
def test_reports_list_query_count_is_fixed(api_client, django_assert_num_queries):
    # given
    for day in range(1, 6):
        CanaryReportFactory(timestamp=utc(2026, 3, day))
    # when / then: key lookup, last_used touch, page, count
    with django_assert_num_queries(4):
        response = api_client.get("/api/v1/costsim/canary/reports/")
    assert len(response.json()["results"]) == 5


@pytest.mark.django_db
def test_reports_list_shows_and_filters_insufficient_data(api_client):
    # given
    CanaryReportFactory(run_id="a" * 12, timestamp=utc(2026, 3, 1), status="pass")
    CanaryReportFactory(
        run_id="b" * 12,
        timestamp=utc(2026, 3, 2),
        status="insufficient_data",
        passed=False,
        total_samples=3,
        evaluated_samples=2,
        min_samples=100,
        kl_divergence=None,
        js_distance=None,
        failure_reasons=["Insufficient data: 2 samples evaluated, judging V2 needs 100"],
    )
    # when
    body = api_client.get("/api/v1/costsim/canary/reports/", {"status": "insufficient_data"})
    # then
    assert body.status_code == 200
    (report,) = body.json()["results"]
    assert report["run_id"] == "b" * 12
    assert (report["total_samples"], report["evaluated_samples"]) == (3, 2)
    assert report["min_samples"] == 100
    assert (report["kl_divergence"], report["js_distance"]) == (None, None)
    assert report["failure_reasons"] == [
        "Insufficient data: 2 samples evaluated, judging V2 needs 100"
    ]


# Configuration ------------------------------------------------------------------------


def _load_settings(**env: str) -> subprocess.CompletedProcess:
    child_env = {
        **os.environ,
        "DJANGO_DEBUG": "true",
        # never the embedded server: the settings only parse the URL
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        env=child_env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"COSTSIM_CANARY_SAMPLE_COUNT": "50"}, "COSTSIM_CANARY_SAMPLE_COUNT (50) is below"),
        ({"COSTSIM_MIN_DRIFT_SAMPLES": "0"}, "COSTSIM_MIN_DRIFT_SAMPLES"),
        ({"COSTSIM_CANARY_SAMPLE_COUNT": "50", "COSTSIM_MIN_DRIFT_SAMPLES": "50"}, None),
    ],
    ids=["sample_count_below_floor", "floor_below_one", "consistent"],
)
def test_start_up_refuses_a_canary_that_could_never_decide(env, error):
    # when
    result = _load_settings(**env)
    # then
    if error is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert error in result.stderr
