"""The sandbox service: V1 authoritative, V2 in shadow, breaker reports, provenance."""

import json
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.hashing import sha256_hex
from costsim.models import BREAKER_NAME, CircuitBreaker, Provenance
from costsim.selectors import BreakerSnapshot
from costsim.services import breaker, estimators, sandbox
from costsim.services.datasets import DATASETS
from costsim.services.drift import compare
from costsim.services.estimators import estimate_v1, estimate_v2
from costsim.services.provenance import (
    ProvenanceEntry,
    provenance_input_json,
    provenance_record_many,
)
from costsim.services.sandbox import result_dict, simulate, simulate_v1, simulate_v2_explicit

pytestmark = pytest.mark.django_db

EXAMPLE_PLAN = [
    {"skill": "http_call", "params": {"url": "https://api.example.com"}},
    {"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}},
    {"skill": "json_transform", "params": {"query": "$.result"}},
]
MYSTERY_PLAN = [{"skill": "mystery", "params": {}, "iterations": 1}]


@pytest.fixture(autouse=True)
def breaker_row(db):
    """The breaker row of migration 0002; a transactional test elsewhere may have flushed it."""
    CircuitBreaker.objects.get_or_create(name=BREAKER_NAME)


@pytest.fixture(autouse=True)
def no_breaker_guess():
    """Start and end without this process's guess of the breaker (breaker_remember), so a
    test's path does not depend on the tests before it."""
    breaker.breaker_remember(None)
    yield
    breaker.breaker_remember(None)


@pytest.fixture
def sandbox_on(settings):
    settings.COSTSIM_V2_SANDBOX = True
    settings.COSTSIM_PROVENANCE_ENABLED = True
    return settings


@pytest.fixture
def breaker_calls(monkeypatch):
    """Record every breaker report and pass it on to the real breaker."""
    calls = []
    for name in ("breaker_report_drift", "breaker_report_schema_error", "breaker_report_success"):
        real = getattr(breaker, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append((_name, kwargs))
            return _real(*args, **kwargs)

        monkeypatch.setattr(breaker, name, spy)
    return calls


def _simulate(tenant, plan=EXAMPLE_PLAN, budget_cents=100, allowed_skills=None, run_id=None):
    return simulate(
        tenant=tenant,
        plan=plan,
        budget_cents=budget_cents,
        allowed_skills=allowed_skills,
        run_id=run_id,
    )


def _raise(message):
    def broken(*args, **kwargs):
        raise RuntimeError(message)

    return broken


def _breaker() -> CircuitBreaker:
    return CircuitBreaker.objects.get(name=BREAKER_NAME)


def test_sandbox_off_runs_v1_only(tenant, settings, breaker_calls):
    # given
    settings.COSTSIM_V2_SANDBOX = False
    # when
    result = _simulate(tenant)
    # then
    assert result == {
        "v1": estimate_v1(EXAMPLE_PLAN, budget_cents=100).to_dict(),
        "v2": None,
        "comparison": None,
        "sandbox_enabled": False,
        "v2_error": None,
    }
    assert breaker_calls == []
    assert Provenance.objects.count() == 0


def test_shadow_run_writes_exactly_one_row_with_both_costs(tenant, sandbox_on):
    # when
    result = _simulate(tenant, run_id="run-1")
    # then
    row = Provenance.objects.get()
    assert (row.v1_cost, row.v2_cost, row.cost_delta) == (5, 4, -1)
    assert row.drift_score == result["comparison"]["drift_score"]
    assert row.verdict == result["comparison"]["verdict"]
    assert row.output_json == result["v2"]
    assert row.runtime_ms == result["v2"]["runtime_ms"]
    assert row.run_id == "run-1"


def test_shadow_run_with_streaks_reports_success_and_drift_to_the_breaker(
    tenant, sandbox_on, breaker_calls
):
    # given: a closed breaker with a failure streak and a schema-error streak
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(
        consecutive_failures=2, consecutive_schema_errors=3
    )
    # when
    _simulate(tenant, run_id="run-1")
    # then: both streaks are reset through the breaker service, which got the check's reading
    seen = BreakerSnapshot(
        disabled=False, disabled_until=None, consecutive_failures=2, consecutive_schema_errors=3
    )
    assert breaker_calls == [
        ("breaker_report_success", {"seen": seen}),
        (
            "breaker_report_drift",
            {
                "score": 0.12,
                "sample_count": 1,
                "details": {
                    "source": "sandbox",
                    "verdict": "minor_drift",
                    "cost_delta_cents": -1,
                    "cost_delta_pct": 0.2,
                    "feasibility_match": True,
                    "run_id": "run-1",
                },
                "source": "sandbox",
                "seen": seen,
            },
        ),
    ]
    row = _breaker()
    assert (row.consecutive_failures, row.consecutive_schema_errors) == (0, 0)


def test_reports_that_cannot_change_a_clean_breaker_take_no_lock(
    tenant, sandbox_on, breaker_calls, django_assert_num_queries
):
    # given: closed, no streaks; the example plan drifts 0.12, within the 0.2 threshold
    sandbox_on.COSTSIM_DRIFT_THRESHOLD = 0.2
    # when / then: the check's unlocked read and the provenance INSERT, nothing else
    with django_assert_num_queries(2):
        result = _simulate(tenant)
    assert result["v2_error"] is None
    assert [name for name, _ in breaker_calls] == [
        "breaker_report_success",
        "breaker_report_drift",
    ]
    assert [kwargs["seen"] for _, kwargs in breaker_calls] == [
        breaker.circuit_breaker_snapshot()
    ] * 2


def test_missing_breaker_row_sends_every_report_to_the_breaker(tenant, sandbox_on, breaker_calls):
    # given: a flushed database without the migration's breaker row
    CircuitBreaker.objects.all().delete()
    # when
    result = _simulate(tenant)
    # then: the breaker service recreated its row and got both reports
    assert result["v2_error"] is None
    assert [name for name, _ in breaker_calls] == [
        "breaker_report_success",
        "breaker_report_drift",
    ]
    assert CircuitBreaker.objects.filter(name=BREAKER_NAME).exists()


def test_drift_above_the_threshold_is_always_reported(tenant, sandbox_on, breaker_calls):
    # given
    sandbox_on.COSTSIM_DRIFT_THRESHOLD = 0.2
    # when
    _simulate(tenant, plan=MYSTERY_PLAN)
    # then
    assert [name for name, _ in breaker_calls] == [
        "breaker_report_success",
        "breaker_report_drift",
    ]
    assert breaker_calls[1][1]["score"] == 0.3
    assert _breaker().consecutive_failures == 1


def test_after_auto_recovery_every_report_goes_to_the_breaker(tenant, sandbox_on, breaker_calls):
    # given: an open breaker whose TTL has passed
    sandbox_on.COSTSIM_AUTO_RECOVER = True
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(
        disabled=True, disabled_until=timezone.now() - timedelta(seconds=1)
    )
    # when
    result = _simulate(tenant)
    # then: the check closed it, and the reports saw it closed
    assert result["v2_error"] is None
    assert result["v2"] is not None
    assert [name for name, _ in breaker_calls] == [
        "breaker_report_success",
        "breaker_report_drift",
    ]
    assert _breaker().disabled is False


def test_v1_result_is_the_same_with_and_without_the_shadow(tenant, settings):
    # given
    settings.COSTSIM_V2_SANDBOX = False
    without = _simulate(tenant)["v1"]
    # when
    settings.COSTSIM_V2_SANDBOX = True
    with_shadow = _simulate(tenant)["v1"]
    # then
    assert with_shadow == without


def test_v2_exception_keeps_v1_and_reports_a_schema_error(
    tenant, sandbox_on, monkeypatch, breaker_calls
):
    # given
    monkeypatch.setattr(estimators, "estimate_v2", _raise("V2 blew up"))
    # when
    result = _simulate(tenant, run_id="run-2")
    # then
    assert result["v1"] == estimate_v1(EXAMPLE_PLAN, budget_cents=100).to_dict()
    assert result["v2"] is None
    assert result["comparison"] is None
    assert result["sandbox_enabled"] is True
    assert result["v2_error"] == "V2 blew up"
    assert [name for name, _ in breaker_calls] == ["breaker_report_schema_error"]
    assert breaker_calls[0][1]["details"]["error_type"] == "exception"
    assert _breaker().consecutive_schema_errors == 1
    assert Provenance.objects.count() == 0


def test_v2_schema_error_result_is_reported_and_recorded(
    tenant, sandbox_on, monkeypatch, breaker_calls
):
    # given: V2 answering as it does for an empty plan
    monkeypatch.setattr(estimators, "estimate_v2", lambda plan, **kwargs: estimate_v2([]))
    # when
    result = _simulate(tenant)
    # then
    assert result["v2"]["status"] == "schema_error"
    assert result["comparison"] is not None
    assert result["v2_error"] is None
    assert [name for name, _ in breaker_calls] == ["breaker_report_schema_error"]
    assert Provenance.objects.get().v2_status == "schema_error"


def test_schema_error_trip_is_reported_in_v2_error(tenant, sandbox_on, monkeypatch):
    # given: one more schema error trips the breaker
    sandbox_on.COSTSIM_SCHEMA_ERROR_THRESHOLD = 1
    monkeypatch.setattr(estimators, "estimate_v2", lambda plan, **kwargs: estimate_v2([]))
    # when
    result = _simulate(tenant)
    # then
    assert result["v2_error"] == "Circuit breaker tripped: Schema error threshold exceeded: 1 >= 1"
    assert _breaker().disabled is True


def test_breaker_failure_ends_the_shadow_step_but_keeps_v2(tenant, sandbox_on, monkeypatch):
    # given: a drift above the threshold, so the report is sent
    monkeypatch.setattr(breaker, "breaker_report_drift", _raise("breaker row locked"))
    # when
    result = _simulate(tenant, plan=MYSTERY_PLAN)
    # then: the comparison exists, provenance (after the breaker) was not reached
    assert result["v2"]["estimated_cost_cents"] == 5
    assert result["comparison"]["verdict"] == "major_drift"
    assert result["v2_error"] == "breaker row locked"
    assert Provenance.objects.count() == 0


def test_provenance_failure_is_caught(tenant, sandbox_on, monkeypatch):
    # given
    monkeypatch.setattr(sandbox, "provenance_record", _raise("disk full"))
    # when
    result = _simulate(tenant)
    # then
    assert result["v1"]["estimated_cost_cents"] == 5
    assert result["v2"]["estimated_cost_cents"] == 4
    assert result["v2_error"] == "disk full"


@pytest.mark.parametrize("failing", ["read", "auto_recovery"])
def test_breaker_check_failure_skips_v2_and_keeps_v1(tenant, sandbox_on, monkeypatch, failing):
    # given: the read of the breaker row, or the auto-recovery of an expired one, fails
    if failing == "read":
        monkeypatch.setattr(breaker, "circuit_breaker_snapshot", _raise("database unavailable"))
    else:
        sandbox_on.COSTSIM_AUTO_RECOVER = True
        CircuitBreaker.objects.filter(name=BREAKER_NAME).update(
            disabled=True, disabled_until=timezone.now() - timedelta(seconds=1)
        )
        monkeypatch.setattr(breaker, "breaker_auto_recover", _raise("database unavailable"))
    # when
    result = _simulate(tenant)
    # then
    assert result["v1"]["estimated_cost_cents"] == 5
    assert result["v2"] is None
    assert result["v2_error"] == "database unavailable"
    assert Provenance.objects.count() == 0


def test_open_breaker_skips_v2(tenant, sandbox_on, breaker_calls):
    # given
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(disabled=True)
    # when
    result = _simulate(tenant)
    # then
    assert result["sandbox_enabled"] is False
    assert result["v2_error"] == "V2 disabled by circuit breaker"
    assert breaker_calls == []
    assert Provenance.objects.count() == 0


def test_provenance_disabled_still_compares(tenant, sandbox_on):
    # given
    sandbox_on.COSTSIM_PROVENANCE_ENABLED = False
    # when
    result = _simulate(tenant)
    # then
    assert result["comparison"]["verdict"] == "minor_drift"
    assert Provenance.objects.count() == 0


def test_drift_trip_message_names_the_incident_reason(tenant, sandbox_on):
    # given: threshold 0.2 and one failure trips
    sandbox_on.COSTSIM_DRIFT_THRESHOLD = 0.2
    sandbox_on.COSTSIM_FAILURE_THRESHOLD = 1
    # when
    result = _simulate(tenant, plan=MYSTERY_PLAN)
    # then
    assert result["v2_error"] == "Circuit breaker tripped: Drift exceeded threshold: 0.3000 > 0.2"
    assert result["comparison"]["drift_score"] == 0.3
    assert Provenance.objects.count() == 1


def test_raw_plan_is_what_provenance_hashes(tenant, sandbox_on):
    # given: the validated plan has defaults filled in, the raw one does not
    raw = [{"skill": "kv_get"}]
    completed = [{"skill": "kv_get", "params": {}, "iterations": 1}]
    # when
    simulate(
        tenant=tenant,
        plan=completed,
        raw_plan=raw,
        budget_cents=100,
        allowed_skills=None,
        run_id=None,
    )
    # then
    assert Provenance.objects.get().input_json == {"plan": raw, "budget_cents": 100}


def test_explicit_v2_writes_api_provenance_and_skips_the_breaker(tenant, settings, breaker_calls):
    # given
    settings.COSTSIM_V2_SANDBOX = False
    # when
    result = simulate_v2_explicit(
        tenant=tenant, plan=MYSTERY_PLAN, budget_cents=100, allowed_skills=None, run_id="r"
    )
    # then
    assert result["v2"]["estimated_cost_cents"] == 5
    assert result["comparison"]["verdict"] == "major_drift"
    assert breaker_calls == []
    row = Provenance.objects.get()
    assert (row.source, row.run_id) == ("api", "r")


def test_explicit_v2_propagates_errors(tenant, monkeypatch):
    # given
    monkeypatch.setattr(estimators, "estimate_v2", _raise("broken"))
    # when / then
    with pytest.raises(RuntimeError, match="broken"):
        simulate_v2_explicit(
            tenant=tenant, plan=EXAMPLE_PLAN, budget_cents=100, allowed_skills=None, run_id=None
        )


@pytest.mark.parametrize("dataset_id", list(DATASETS))
def test_result_dict_equals_to_dict_on_every_reference_sample(dataset_id):
    # given: every plan shape the reference datasets hold (risks, gaps, floats, empty)
    for sample in DATASETS[dataset_id].samples:
        v1 = estimate_v1(sample.plan, budget_cents=sample.budget_cents, allowed_skills=["kv_get"])
        v2 = estimate_v2(sample.plan, budget_cents=sample.budget_cents)
        # then
        assert result_dict(v1) == v1.to_dict()
        assert result_dict(v2) == v2.to_dict()
        assert result_dict(compare(v1, v2)) == compare(v1, v2).to_dict()
        assert json.dumps(result_dict(v2)) == json.dumps(v2.to_dict())
        # the output hash skips asdict too, and must still be the hash of asdict's steps
        assert v2.output_hash == sha256_hex(
            {
                "feasible": v2.feasible,
                "status": v2.status,
                "estimated_cost_cents": v2.estimated_cost_cents,
                "estimated_duration_ms": v2.estimated_duration_ms,
                "step_estimates": [asdict(step) for step in v2.step_estimates],
            }
        )


def test_shadow_row_has_every_column_the_orm_would_write(tenant, sandbox_on):
    # given: the same comparison written by the hot path and by the ORM path
    result = _simulate(tenant, run_id="run-7", allowed_skills=["kv_get"])
    hot = Provenance.objects.get()
    v1 = estimate_v1(EXAMPLE_PLAN, budget_cents=100, allowed_skills=["kv_get"])
    v2 = estimate_v2(EXAMPLE_PLAN, budget_cents=100, allowed_skills=["kv_get"])
    entry = ProvenanceEntry(
        tenant=tenant,
        run_id="run-7",
        source="sandbox",
        input_json=provenance_input_json(
            plan=EXAMPLE_PLAN, budget_cents=100, allowed_skills=["kv_get"]
        ),
        v1_result=v1,
        v2_result=v2,
        comparison=compare(v1, v2),
    )
    # when
    (orm,) = provenance_record_many(entries=[entry])
    orm.refresh_from_db()
    # then: every column but the id, the timestamp and V2's measured runtime is equal
    varying = {"id", "created_at", "runtime_ms"}
    columns = [f.attname for f in Provenance._meta.concrete_fields if f.attname not in varying]
    assert {c: getattr(hot, c) for c in columns} == {c: getattr(orm, c) for c in columns}
    assert hot.output_json == result["v2"]
    assert hot.created_at is not None


def test_simulate_v1_matches_the_estimator():
    # when
    result = simulate_v1(
        plan=[{"skill": "http_call"}, {"skill": "fs_write"}],
        budget_cents=1000,
        allowed_skills=["http_call"],
    )
    # then: a skill outside the allowlist is a permission gap, not an error
    assert result["status"] == "permission_denied"
    assert result["permission_gaps"] == ["fs_write"]
    assert result["estimated_duration_ms"] == 600
