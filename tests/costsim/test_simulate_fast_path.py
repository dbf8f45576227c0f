"""The one-statement shadow step: key generation, breaker check, reports and provenance.

When this process last saw the breaker steady (closed, no streak) and V2's result is one
whose reports change nothing, `simulate` writes the provenance row in a statement that
re-reads the breaker and the API key generation and inserts only while both are as
expected. These tests pin what that must never change: a breaker opened anywhere is seen by
the next statement (staleness bound: none), a streak or a drifting result still goes
through the breaker service, a moved key generation stops the request before it writes or
reports anything, and the row is committed before the answer exists.
"""

import threading
from datetime import timedelta

import pytest
from django.db import DataError, connection, connections
from django.utils import timezone

from analytics.hashing import short_hash
from analytics.models import ApiKey
from analytics.prepared import ensure_prepared
from costsim.models import BREAKER_NAME, CircuitBreaker, Provenance
from costsim.selectors import BreakerSnapshot, circuit_breaker_snapshot
from costsim.services import breaker, estimators, sandbox
from costsim.services.drift import compare
from costsim.services.estimators import estimate_v1, estimate_v2
from costsim.services.provenance import (
    ProvenanceEntry,
    _steady_insert,
    provenance_input_json,
    provenance_record_if_steady,
    provenance_record_many,
)
from costsim.services.sandbox import KeyGenerationChanged, simulate
from tests.factories import ApiKeyFactory

EXAMPLE_PLAN = [
    {"skill": "http_call", "params": {"url": "https://api.example.com"}},
    {"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}},
    {"skill": "json_transform", "params": {"query": "$.result"}},
]
EXAMPLE_BODY = {"plan": EXAMPLE_PLAN, "budget_cents": 100}
# V1 10 cents, V2 5 cents: drift 0.3, above a 0.2 threshold.
MYSTERY_PLAN = [{"skill": "mystery"}]
SIMULATE = "/api/v1/costsim/simulate/"
STEADY = BreakerSnapshot(
    disabled=False, disabled_until=None, consecutive_failures=0, consecutive_schema_errors=0
)


@pytest.fixture(autouse=True)
def sandbox_on(settings):
    settings.COSTSIM_V2_SANDBOX = True
    settings.COSTSIM_PROVENANCE_ENABLED = True
    settings.COSTSIM_DRIFT_THRESHOLD = 0.2
    return settings


@pytest.fixture(autouse=True)
def steady_guess():
    """This process last saw the breaker steady; restored to no guess afterwards."""
    breaker.breaker_remember(STEADY)
    yield
    breaker.breaker_remember(None)


@pytest.fixture
def breaker_row(db):
    CircuitBreaker.objects.get_or_create(name=BREAKER_NAME)


@pytest.fixture
def steady_statement_prepared(db):
    """The session has prepared the steady statement, as every connection has after its
    first shadowed simulation: a count of the steady path's statements sees its EXECUTE."""
    with connection.cursor() as cursor:
        ensure_prepared(cursor, _steady_insert())


@pytest.fixture
def breaker_calls(monkeypatch):
    """Record every breaker report and pass it on to the real breaker."""
    calls = []
    for name in ("breaker_report_drift", "breaker_report_schema_error", "breaker_report_success"):
        real = getattr(breaker, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(breaker, name, spy)
    return calls


def _simulate(tenant, plan=EXAMPLE_PLAN, **kwargs):
    return simulate(
        tenant=tenant,
        plan=plan,
        budget_cents=100,
        allowed_skills=kwargs.pop("allowed_skills", None),
        run_id=kwargs.pop("run_id", None),
        **kwargs,
    )


def _generation() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM analytics_apikey_generation WHERE id = 1")
        return cursor.fetchone()[0]


def _breaker() -> CircuitBreaker:
    return CircuitBreaker.objects.get(name=BREAKER_NAME)


def _in_other_connection(work):
    """Run `work` in a thread with a database connection of its own, committed."""
    errors = []

    def target():
        try:
            work()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    assert not errors, errors


# The service ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_steady_guess_makes_the_shadow_step_one_statement(
    tenant, breaker_row, breaker_calls, steady_statement_prepared, django_assert_num_queries
):
    # when
    with django_assert_num_queries(1) as captured:
        result = _simulate(tenant, run_id="run-1")
    # then: no report was needed, the row is written, the guess still says steady
    assert result["v2_error"] is None
    assert result["sandbox_enabled"] is True
    assert breaker_calls == []
    assert captured.captured_queries[0]["sql"].startswith("EXECUTE costsim_provenance_steady")
    row = Provenance.objects.get()
    assert (row.v1_cost, row.v2_cost, row.run_id) == (5, 4, "run-1")
    assert row.output_json == result["v2"]
    assert breaker.breaker_probably_steady()


@pytest.mark.django_db
def test_one_statement_row_has_every_column_the_orm_would_write(tenant, breaker_row):
    # given: the same comparison written by the one-statement path and by the ORM path
    _simulate(tenant, run_id="run-7", allowed_skills=["kv_get"])
    fast = Provenance.objects.get()
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
    assert {c: getattr(fast, c) for c in columns} == {c: getattr(orm, c) for c in columns}


@pytest.mark.django_db
def test_a_value_too_long_for_its_column_is_refused_not_cut(tenant, breaker_row):
    # given: a run id one character longer than its varchar(64) column
    v1 = estimate_v1(EXAMPLE_PLAN, budget_cents=100)
    v2 = estimate_v2(EXAMPLE_PLAN, budget_cents=100)
    # when / then: PostgreSQL refuses it, as it does for provenance_record
    with pytest.raises(DataError):
        provenance_record_if_steady(
            tenant=tenant,
            run_id="r" * 65,
            source="sandbox",
            input_json={"plan": EXAMPLE_PLAN, "budget_cents": 100},
            v1_result=v1,
            v2_result=v2,
            comparison=compare(v1, v2),
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change",
    [
        {"disabled": True, "disabled_reason": "operator"},
        {"consecutive_failures": 2},
        {"consecutive_schema_errors": 1},
    ],
    ids=["opened", "failure streak", "schema-error streak"],
)
def test_statement_writes_nothing_when_the_breaker_is_not_steady(tenant, breaker_row, change):
    # given
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(**change)
    v1 = estimate_v1(EXAMPLE_PLAN, budget_cents=100)
    v2 = estimate_v2(EXAMPLE_PLAN, budget_cents=100)
    # when
    written = provenance_record_if_steady(
        tenant=tenant,
        run_id=None,
        source="sandbox",
        input_json={"plan": EXAMPLE_PLAN, "budget_cents": 100},
        v1_result=v1,
        v2_result=v2,
        comparison=compare(v1, v2),
    )
    # then: it says what it saw and wrote nothing
    assert written.row_id is None
    assert written.breaker == circuit_breaker_snapshot()
    assert written.key_generation == _generation()
    assert Provenance.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_breaker_opened_by_another_process_is_seen_by_the_next_request(tenant, breaker_row):
    # given: this process saw the breaker steady; another connection opens it and commits
    assert _simulate(tenant)["v2_error"] is None

    def open_breaker():
        CircuitBreaker.objects.filter(name=BREAKER_NAME).update(
            disabled=True, disabled_reason="tripped elsewhere"
        )

    _in_other_connection(open_breaker)
    # when: the very next request, still guessing steady
    result = _simulate(tenant)
    # then: V2 is off for it, nothing was written, and the guess follows the row
    assert result["v2"] is None
    assert result["v2_error"] == sandbox.V2_DISABLED_MESSAGE
    assert Provenance.objects.count() == 1
    assert not breaker.breaker_probably_steady()


@pytest.mark.django_db
def test_streak_recorded_elsewhere_goes_through_the_breaker(tenant, breaker_row, breaker_calls):
    # given: a failure streak this process has not seen
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(consecutive_failures=2)
    # when
    result = _simulate(tenant)
    # then: both reports were made on the statement's reading; the good drift reset it
    assert result["v2_error"] is None
    assert breaker_calls == ["breaker_report_success", "breaker_report_drift"]
    assert _breaker().consecutive_failures == 0
    assert Provenance.objects.count() == 1


@pytest.mark.django_db
def test_drift_above_the_threshold_never_skips_the_breaker(tenant, breaker_row, breaker_calls):
    # when
    result = _simulate(tenant, plan=MYSTERY_PLAN)
    # then: reported and counted as a failure, one row
    assert result["comparison"]["drift_score"] == 0.3
    assert breaker_calls == ["breaker_report_success", "breaker_report_drift"]
    assert _breaker().consecutive_failures == 1
    assert Provenance.objects.count() == 1


@pytest.mark.django_db
def test_three_drifting_requests_trip_the_breaker_as_before(tenant, breaker_row):
    # when
    results = [_simulate(tenant, plan=MYSTERY_PLAN) for _ in range(3)]
    # then
    assert results[-1]["v2_error"].startswith("Circuit breaker tripped")
    assert _breaker().disabled is True
    assert not breaker.breaker_probably_steady()


@pytest.mark.django_db
def test_v2_exception_with_a_steady_guess_is_a_schema_error(
    tenant, breaker_row, breaker_calls, monkeypatch
):
    # given
    def broken(*args, **kwargs):
        raise RuntimeError("V2 blew up")

    monkeypatch.setattr(estimators, "estimate_v2", broken)
    # when
    result = _simulate(tenant)
    # then
    assert result["v2"] is None
    assert result["v2_error"] == "V2 blew up"
    assert breaker_calls == ["breaker_report_schema_error"]
    assert _breaker().consecutive_schema_errors == 1
    assert Provenance.objects.count() == 0


@pytest.mark.django_db
def test_missing_breaker_row_with_a_steady_guess_is_created(tenant, breaker_calls):
    # given: a flushed database without the migration's breaker row
    CircuitBreaker.objects.all().delete()
    # when
    result = _simulate(tenant)
    # then: the long way created the row and wrote the comparison
    assert result["v2_error"] is None
    assert CircuitBreaker.objects.filter(name=BREAKER_NAME).exists()
    assert Provenance.objects.count() == 1


@pytest.mark.django_db
def test_failing_statement_keeps_v1_and_writes_nothing(tenant, breaker_row, monkeypatch):
    # given
    def failing(**kwargs):
        raise RuntimeError("database unavailable")

    monkeypatch.setattr(sandbox, "provenance_record_if_steady", failing)
    # when
    result = _simulate(tenant)
    # then: as a failed breaker check, V2 is not shown
    assert result["v1"]["estimated_cost_cents"] == 5
    assert result["v2"] is None
    assert result["v2_error"] == "database unavailable"
    assert Provenance.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case", ["steady", "drifting", "no guess", "sandbox off", "provenance off", "opened"]
)
def test_moved_key_generation_stops_the_request_before_any_write(
    tenant, breaker_row, sandbox_on, case
):
    # given: a generation the key was cached under, moved since
    stale = _generation() - 1
    plan = MYSTERY_PLAN if case == "drifting" else EXAMPLE_PLAN
    if case == "no guess":
        breaker.breaker_remember(None)
    if case == "sandbox off":
        sandbox_on.COSTSIM_V2_SANDBOX = False
    if case == "provenance off":
        sandbox_on.COSTSIM_PROVENANCE_ENABLED = False
    if case == "opened":
        CircuitBreaker.objects.filter(name=BREAKER_NAME).update(disabled=True)
    before = circuit_breaker_snapshot()
    # when / then
    with pytest.raises(KeyGenerationChanged):
        _simulate(tenant, plan=plan, key_generation=stale)
    assert Provenance.objects.count() == 0
    assert circuit_breaker_snapshot() == before


@pytest.mark.django_db
def test_current_key_generation_is_accepted(
    tenant, breaker_row, steady_statement_prepared, django_assert_num_queries
):
    # given
    current = _generation()
    # when
    with django_assert_num_queries(1):
        result = _simulate(tenant, key_generation=current)
    # then
    assert result["v2_error"] is None
    assert Provenance.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_row_is_committed_before_the_answer_exists(tenant, breaker_row):
    # when
    result = _simulate(tenant, run_id="durable")
    # then: another connection sees it at once; no buffer holds it back
    seen = []
    _in_other_connection(lambda: seen.append(Provenance.objects.filter(run_id="durable").count()))
    assert result["v2_error"] is None
    assert seen == [1]


# Through the API -----------------------------------------------------------------------


@pytest.mark.django_db
def test_key_revoked_while_cached_is_refused_and_reports_nothing(
    api_client, api_key, breaker_row, sandbox_on
):
    # given: a warm key; then it is revoked
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    key, _ = api_key
    key.revoked_at = timezone.now()
    key.save()
    # when: a drifting plan, which would count a breaker failure
    response = api_client.post(SIMULATE, {"plan": MYSTERY_PLAN, "budget_cents": 100}, format="json")
    # then
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Api-Key"
    assert Provenance.objects.count() == 1
    assert _breaker().consecutive_failures == 0


@pytest.mark.django_db
def test_tenant_deactivated_while_cached_is_refused(api_client, tenant, breaker_row):
    # given
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    tenant.is_active = False
    tenant.save()
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    assert response.status_code == 401
    assert Provenance.objects.count() == 1


@pytest.mark.django_db
def test_another_keys_change_rechecks_the_key_and_serves_once(
    api_client, tenant, breaker_row, django_assert_num_queries
):
    # given: a warm key; then another key is created, which moves the generation
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    ApiKeyFactory(tenant=tenant, raw_key=ApiKey.generate_raw_key())
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then: served with V2, one row for it, and the next request is one statement again
    assert response.status_code == 200
    assert response.json()["v2_error"] is None
    assert Provenance.objects.count() == 2
    with django_assert_num_queries(1):
        assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200


@pytest.mark.django_db
def test_expired_open_breaker_recovers_on_the_api_path(api_client, breaker_row, sandbox_on):
    # given: warm; then the breaker is open with a passed TTL
    sandbox_on.COSTSIM_AUTO_RECOVER = True
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(
        disabled=True, disabled_until=timezone.now() - timedelta(seconds=1)
    )
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    assert response.json()["v2_error"] is None
    assert _breaker().disabled is False
    assert Provenance.objects.count() == 2


@pytest.mark.django_db
def test_input_sent_as_canonical_text_is_stored_as_the_orm_stores_it(tenant, breaker_row):
    # given: a plan whose keys are out of order, with non-ASCII text, floats and nesting
    plan = [
        {
            "skill": "llm_invoke",
            "params": {"zeta": 1.5, "prompt": 'Résumé ☃ "quoted"', "alpha": [3, {"b": 0.1}]},
            "iterations": 2,
        }
    ]
    input_json = provenance_input_json(plan=plan, budget_cents=250, allowed_skills=["llm_invoke"])
    v1 = estimate_v1(plan, budget_cents=250, allowed_skills=["llm_invoke"])
    v2 = estimate_v2(plan, budget_cents=250, allowed_skills=["llm_invoke"])
    fields = {
        "tenant": tenant,
        "run_id": None,
        "source": "sandbox",
        "input_json": input_json,
        "v1_result": v1,
        "v2_result": v2,
        "comparison": compare(v1, v2),
    }
    # when: written by the one-statement path and through JSONField
    fast = provenance_record_if_steady(**fields)
    (orm,) = provenance_record_many(entries=[ProvenanceEntry(**fields)])
    # then: PostgreSQL holds the same document (as jsonb and as its text) and the same hash
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT input_json::text, input_hash FROM costsim_provenance WHERE id = %s "
            "UNION ALL SELECT input_json::text, input_hash FROM costsim_provenance WHERE id = %s",
            [fast.row_id, orm.pk],
        )
        (fast_text, fast_hash), (orm_text, orm_hash) = cursor.fetchall()
    assert fast_text == orm_text
    assert fast_hash == orm_hash == short_hash(input_json, 16)
    assert Provenance.objects.get(pk=fast.row_id).input_json == input_json
