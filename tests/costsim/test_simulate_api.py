"""The simulation, status and provenance endpoints, through the HTTP API."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from analytics.hashing import short_hash
from costsim.models import BREAKER_NAME, CircuitBreaker, Provenance
from costsim.services import breaker, estimators
from costsim.services.estimators import estimate_v1
from tests.costsim.factories import BackfillProvenanceFactory, ProvenanceFactory
from tests.factories import utc

pytestmark = pytest.mark.django_db

SIMULATE = "/api/v1/costsim/simulate/"
SIMULATE_V1 = "/api/v1/costsim/v1/simulate/"
SIMULATE_V2 = "/api/v1/costsim/v2/simulate/"
STATUS = "/api/v1/costsim/status/"
PROVENANCE = "/api/v1/costsim/provenance/"
DRIFT_STATS = "/api/v1/costsim/provenance/drift-stats/"

# The reference plan (V1 cost 5, V2 cost 4, minor_drift 0.12).
EXAMPLE_PLAN = [
    {"skill": "http_call", "params": {"url": "https://api.example.com"}},
    {"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}},
    {"skill": "json_transform", "params": {"query": "$.result"}},
]
EXAMPLE_BODY = {"plan": EXAMPLE_PLAN, "budget_cents": 100}
# V1 10 cents, V2 5 cents: drift 0.3 (major_drift), above the default breaker threshold.
MYSTERY_BODY = {"plan": [{"skill": "mystery"}], "budget_cents": 100}


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
    return settings


def _open_breaker(until=None):
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(
        disabled=True, disabled_reason="test", disabled_until=until
    )


def _sample(name, labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


# POST /costsim/simulate/ -------------------------------------------------------------


def test_simulate_with_sandbox_off_returns_v1_only_and_writes_nothing(api_client):
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["v1"]["status"] == "feasible"
    assert body["v1"]["estimated_cost_cents"] == 5
    assert body["v1"]["estimated_duration_ms"] == 2510
    assert body["v1"]["metadata"] == {
        "plan_steps": 3,
        "cumulative_risk": 0.15355,
        "budget_utilization": 0.05,
    }
    assert body["v2"] is None
    assert body["comparison"] is None
    assert body["sandbox_enabled"] is False
    assert body["v2_error"] is None
    assert Provenance.objects.count() == 0


def test_simulate_with_sandbox_on_returns_shadow_comparison_and_one_provenance_row(
    api_client, sandbox_on, tenant
):
    # when
    response = api_client.post(SIMULATE, {**EXAMPLE_BODY, "run_id": "run-7"}, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["sandbox_enabled"] is True
    assert body["v2_error"] is None
    assert body["v2"]["estimated_cost_cents"] == 4
    assert body["v2"]["output_hash"] == (
        "34d570a3bac19a8a87fea945f4a090b112b8c1a88622b31b13c8bfd6e9463066"
    )
    assert body["comparison"]["verdict"] == "minor_drift"
    assert body["comparison"]["drift_score"] == 0.12
    assert body["comparison"]["duration_delta_ms"] == -201
    row = Provenance.objects.get()
    assert row.tenant == tenant
    assert (row.variant_slug, row.source, row.run_id) == ("v2", "sandbox", "run-7")
    assert (row.v1_cost, row.v2_cost, row.cost_delta) == (5, 4, -1)
    assert (row.verdict, row.drift_score, row.v2_status) == ("minor_drift", 0.12, "success")
    assert row.input_json == {"plan": EXAMPLE_PLAN, "budget_cents": 100}
    assert row.input_hash == short_hash({"plan": EXAMPLE_PLAN, "budget_cents": 100})
    assert row.output_hash == body["v2"]["output_hash"]
    assert row.output_json["step_estimates"] == body["v2"]["step_estimates"]


def test_simulate_hashes_the_plan_as_received_with_the_effective_budget(api_client, sandbox_on):
    # given: no params, no iterations, no budget in the request
    plan = [{"skill": "kv_get"}]
    # when
    api_client.post(SIMULATE, {"plan": plan}, format="json")
    # then: no defaults were added to the plan; the budget is the effective default
    row = Provenance.objects.get()
    assert row.input_json == {"plan": [{"skill": "kv_get"}], "budget_cents": 1000}
    assert row.input_hash == short_hash({"plan": [{"skill": "kv_get"}], "budget_cents": 1000})


@pytest.mark.parametrize(
    ("extra", "expected_input"),
    [
        ({}, {}),
        ({"allowed_skills": None}, {}),
        ({"allowed_skills": []}, {"allowed_skills": []}),
        ({"allowed_skills": ["kv_get"]}, {"allowed_skills": ["kv_get"]}),
    ],
)
def test_provenance_input_carries_allowed_skills_only_when_a_list_was_sent(
    api_client, sandbox_on, extra, expected_input
):
    # when
    api_client.post(SIMULATE, {"plan": [{"skill": "kv_get"}], **extra}, format="json")
    # then
    row = Provenance.objects.get()
    assert row.input_json == {"plan": [{"skill": "kv_get"}], "budget_cents": 1000, **expected_input}


def test_simulate_with_open_breaker_skips_v2(api_client, sandbox_on):
    # given
    _open_breaker()
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    body = response.json()
    assert response.status_code == 200
    assert body["v1"]["estimated_cost_cents"] == 5
    assert body["v2"] is None
    assert body["comparison"] is None
    assert body["sandbox_enabled"] is False
    assert body["v2_error"] == "V2 disabled by circuit breaker"
    assert Provenance.objects.count() == 0


def test_simulate_v2_exception_still_answers_200_with_v1_unchanged(
    api_client, sandbox_on, monkeypatch
):
    # given
    def broken_v2(*args, **kwargs):
        raise RuntimeError("coefficient table unavailable")

    monkeypatch.setattr(estimators, "estimate_v2", broken_v2)
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    body = response.json()
    assert response.status_code == 200
    assert body["v1"] == estimate_v1(EXAMPLE_PLAN, budget_cents=100).to_dict()
    assert body["v2"] is None
    assert body["comparison"] is None
    assert body["sandbox_enabled"] is True
    assert body["v2_error"] == "coefficient table unavailable"
    assert Provenance.objects.count() == 0


def test_simulate_metrics_count_the_comparison(api_client, sandbox_on):
    # given
    tenant = {"tenant": "acme"}
    before = {
        "drift_le_015": _sample("costsim_v2_drift_score_bucket", {**tenant, "le": "0.15"}),
        "drift_le_01": _sample("costsim_v2_drift_score_bucket", {**tenant, "le": "0.1"}),
        "delta_le_1": _sample("costsim_v2_cost_delta_cents_bucket", {**tenant, "le": "1.0"}),
        "verdict": _sample(
            "costsim_v2_comparison_verdict_total", {**tenant, "verdict": "minor_drift"}
        ),
        "success": _sample("costsim_v2_simulations_total", {**tenant, "status": "success"}),
        "provenance": _sample("costsim_v2_provenance_logs_total", {**tenant, "source": "sandbox"}),
        "duration": _sample("costsim_v2_simulation_duration_ms_count", tenant),
    }
    # when
    api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then: one drift observation (score 0.12) and one cost delta (-1 cent) are recorded
    assert _sample("costsim_v2_drift_score_bucket", {**tenant, "le": "0.15"}) == (
        before["drift_le_015"] + 1
    )
    assert (
        _sample("costsim_v2_drift_score_bucket", {**tenant, "le": "0.1"}) == (before["drift_le_01"])
    )
    assert _sample("costsim_v2_cost_delta_cents_bucket", {**tenant, "le": "1.0"}) == (
        before["delta_le_1"] + 1
    )
    assert _sample("costsim_v2_comparison_verdict_total", {**tenant, "verdict": "minor_drift"}) == (
        before["verdict"] + 1
    )
    assert _sample("costsim_v2_simulations_total", {**tenant, "status": "success"}) == (
        before["success"] + 1
    )
    assert _sample("costsim_v2_provenance_logs_total", {**tenant, "source": "sandbox"}) == (
        before["provenance"] + 1
    )
    assert _sample("costsim_v2_simulation_duration_ms_count", tenant) == before["duration"] + 1


def test_third_drifting_shadow_run_reports_the_trip(api_client, sandbox_on):
    # given: threshold 0.2, three consecutive failures trip the breaker
    sandbox_on.COSTSIM_DRIFT_THRESHOLD = 0.2
    sandbox_on.COSTSIM_FAILURE_THRESHOLD = 3
    first = api_client.post(SIMULATE, MYSTERY_BODY, format="json").json()
    second = api_client.post(SIMULATE, MYSTERY_BODY, format="json").json()
    # when
    third = api_client.post(SIMULATE, MYSTERY_BODY, format="json").json()
    # then
    assert first["v2_error"] is None
    assert second["v2_error"] is None
    assert third["v2_error"] == "Circuit breaker tripped: Drift exceeded threshold: 0.3000 > 0.2"
    assert third["v2"] is not None
    assert third["comparison"]["verdict"] == "major_drift"
    assert Provenance.objects.count() == 3
    # and the next request finds the breaker open
    fourth = api_client.post(SIMULATE, MYSTERY_BODY, format="json").json()
    assert fourth["v2_error"] == "V2 disabled by circuit breaker"


# POST /costsim/v1/simulate/ and /costsim/v2/simulate/ ---------------------------------


def test_v1_endpoint_returns_the_v1_result_and_writes_nothing(api_client, sandbox_on):
    # when
    response = api_client.post(
        SIMULATE_V1,
        {
            "plan": [{"skill": "llm_invoke", "params": {"prompt": "Test"}, "iterations": 50}],
            "budget_cents": 100,
        },
        format="json",
    )
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "budget_insufficient"
    assert body["estimated_cost_cents"] == 250
    assert body["budget_remaining_cents"] == -150
    assert body["alternatives"] == [
        {"suggestion": "Reduce LLM calls", "potential_savings_cents": 250}
    ]
    assert Provenance.objects.count() == 0


def test_v2_endpoint_runs_whatever_the_flag_and_breaker_and_records_api_provenance(
    api_client, settings
):
    # given: sandbox off and breaker open
    settings.COSTSIM_V2_SANDBOX = False
    _open_breaker()
    # when
    response = api_client.post(SIMULATE_V2, MYSTERY_BODY, format="json")
    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"v2", "comparison"}
    assert body["v2"]["estimated_cost_cents"] == 5
    assert body["comparison"]["drift_score"] == 0.3
    row = Provenance.objects.get()
    assert (row.source, row.variant_slug, row.v1_cost, row.v2_cost) == ("api", "v2", 10, 5)


def test_v2_endpoint_does_not_report_to_the_breaker(api_client, settings):
    # given
    settings.COSTSIM_FAILURE_THRESHOLD = 1
    # when: a drift of 0.3 would trip a breaker that counted it
    for _ in range(2):
        assert api_client.post(SIMULATE_V2, MYSTERY_BODY, format="json").status_code == 200
    # then
    breaker = CircuitBreaker.objects.get(name=BREAKER_NAME)
    assert breaker.disabled is False
    assert breaker.consecutive_failures == 0


def test_v2_endpoint_error_is_500_without_details(api_client, monkeypatch):
    # given
    def broken_v2(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(estimators, "estimate_v2", broken_v2)
    # when
    response = api_client.post(SIMULATE_V2, EXAMPLE_BODY, format="json")
    # then
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "message": "Internal server error",
        "field_errors": [],
    }
    assert Provenance.objects.count() == 0


# Validation --------------------------------------------------------------------------

STEP = {"skill": "kv_get"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "plan"),
        ({"plan": None}, "plan"),
        ({"plan": "kv_get"}, "plan"),
        ({"plan": []}, "plan"),
        ({"plan": [STEP] * 201}, "plan"),
        ({"plan": ["kv_get"]}, "plan[0]"),
        ({"plan": [{}]}, "plan[0].skill"),
        ({"plan": [{"skill": "has space"}]}, "plan[0].skill"),
        ({"plan": [{"skill": "x" * 65}]}, "plan[0].skill"),
        ({"plan": [{"skill": "kv_get\n"}]}, "plan[0].skill"),
        ({"plan": [{"skill": 7}]}, "plan[0].skill"),
        ({"plan": [STEP, {"skill": "kv_get", "retries": 2}]}, "plan[1].retries"),
        ({"plan": [{"skill": "kv_get", "params": []}]}, "plan[0].params"),
        ({"plan": [{"skill": "kv_get", "params": None}]}, "plan[0].params"),
        ({"plan": [{"skill": "llm_invoke", "params": {"prompt": 5}}]}, "plan[0].params.prompt"),
        ({"plan": [{"skill": "http_call", "params": {"url": None}}]}, "plan[0].params.url"),
        ({"plan": [{"skill": "shell_lite", "params": {"command": []}}]}, "plan[0].params.command"),
        ({"plan": [{"skill": "http_call", "params": {"timeout": 0}}]}, "plan[0].params.timeout"),
        ({"plan": [{"skill": "http_call", "params": {"timeout": "5"}}]}, "plan[0].params.timeout"),
        ({"plan": [{"skill": "http_call", "params": {"timeout": True}}]}, "plan[0].params.timeout"),
        ({"plan": [{"skill": "kv_get", "iterations": 0}]}, "plan[0].iterations"),
        ({"plan": [{"skill": "kv_get", "iterations": 101}]}, "plan[0].iterations"),
        ({"plan": [{"skill": "kv_get", "iterations": 2.5}]}, "plan[0].iterations"),
        ({"plan": [{"skill": "kv_get", "iterations": "2"}]}, "plan[0].iterations"),
        (
            {"plan": [{"skill": "kv_get", "params": {"prompt": "a\u0000b"}}]},
            "plan[0].params.prompt",
        ),
        ({"plan": [STEP], "budget_cents": -1}, "budget_cents"),
        ({"plan": [STEP], "budget_cents": 10.5}, "budget_cents"),
        ({"plan": [STEP], "budget_cents": None}, "budget_cents"),
        ({"plan": [STEP], "budget_cents": True}, "budget_cents"),
        ({"plan": [STEP], "allowed_skills": "kv_get"}, "allowed_skills"),
        ({"plan": [STEP], "allowed_skills": ["kv_get"] * 201}, "allowed_skills"),
        ({"plan": [STEP], "allowed_skills": ["kv_get", "bad skill"]}, "allowed_skills[1]"),
        ({"plan": [STEP], "run_id": "r" * 65}, "run_id"),
        ({"plan": [STEP], "run_id": 12}, "run_id"),
        ({"plan": [STEP], "run_id": " "}, "run_id"),
        ({"plan": [STEP], "dry_run": True}, "dry_run"),
    ],
)
@pytest.mark.parametrize("url", [SIMULATE, SIMULATE_V1, SIMULATE_V2])
def test_invalid_simulation_body_is_400_naming_the_field(api_client, sandbox_on, url, body, field):
    # when
    response = api_client.post(url, body, format="json")
    # then
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"] == "validation_error"
    assert field in [item["field"] for item in payload["field_errors"]]
    assert Provenance.objects.count() == 0


def test_every_bad_field_is_reported_at_once(api_client):
    # when
    response = api_client.post(
        SIMULATE,
        {"plan": [{"skill": "kv_get", "iterations": 0}, {"skill": "?"}], "budget_cents": -5},
        format="json",
    )
    # then
    fields = [item["field"] for item in response.json()["field_errors"]]
    assert sorted(fields) == ["budget_cents", "plan[0].iterations", "plan[1].skill"]


def test_valid_edge_values_are_accepted(api_client):
    # given: 200 steps, 100 iterations, budget 0, 200 allowed skills, a 64-char run id
    body = {
        "plan": [
            {"skill": "a.b:c-d_e", "params": {"timeout": 0.5, "other": [1]}, "iterations": 100}
        ]
        * 200,
        "budget_cents": 0,
        "allowed_skills": ["a.b:c-d_e"] * 200,
        "run_id": "r" * 64,
    }
    # when
    response = api_client.post(SIMULATE, body, format="json")
    # then
    assert response.status_code == 200
    assert response.json()["v1"]["metadata"]["plan_steps"] == 200


def test_malformed_json_is_400_parse_error(api_client):
    response = api_client.post(SIMULATE, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "parse_error"


def test_non_json_body_is_415(api_client):
    response = api_client.post(SIMULATE, "plan=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


def test_body_that_is_not_an_object_is_400(api_client):
    response = api_client.post(SIMULATE, [EXAMPLE_BODY], format="json")
    assert response.status_code == 400
    assert response.json()["field_errors"][0]["field"] == "non_field_errors"


def test_simulate_without_credentials_is_401():
    response = APIClient().post(SIMULATE, EXAMPLE_BODY, format="json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_simulate_with_staff_session_is_403_tenant_required(staff_user):
    # given: a logged-in staff user without an API key (CSRF is not what is tested here)
    client = APIClient()
    client.force_login(staff_user)
    # when
    response = client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"


def test_provenance_with_staff_session_is_403_tenant_required(staff_session_client):
    response = staff_session_client.get(PROVENANCE)
    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"


def test_simulate_get_is_405(api_client):
    response = api_client.get(SIMULATE)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


def test_revoked_key_is_refused_by_the_next_simulation(api_client, api_key):
    # given: the key has just been used on every simulate endpoint, then it is revoked
    for path in (SIMULATE, SIMULATE_V1, SIMULATE_V2):
        assert api_client.post(path, EXAMPLE_BODY, format="json").status_code == 200
    key, _ = api_key
    key.revoked_at = timezone.now()
    key.save()
    # when / then: nothing remembers the key, so the very next request is refused
    for path in (SIMULATE, SIMULATE_V1, SIMULATE_V2):
        response = api_client.post(path, EXAMPLE_BODY, format="json")
        assert response.status_code == 401
        assert response.json()["error"] == "authentication_failed"
    assert Provenance.objects.count() == 1  # only the V2 call made before the revocation


def _prepared_provenance_statements() -> list[tuple[str, int]]:
    """The session's prepared provenance statements: their text and how often they ran."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE %s",
            ['%INSERT INTO "costsim_provenance"%'],
        )
        return cursor.fetchall()


def test_steady_shadowed_simulation_is_one_statement(
    api_client, sandbox_on, django_assert_num_queries
):
    # given: a warm key (cached by this process, last_used_at fresh), a steady breaker, and
    # a session that has prepared the steady statement
    for _ in range(2):
        assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    [(prepared, runs_before)] = _prepared_provenance_statements()
    # when / then: key generation, breaker row and provenance INSERT in one statement, the
    # one this session prepared
    with django_assert_num_queries(1) as captured:
        response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    assert response.json()["v2_error"] is None
    assert captured.captured_queries[0]["sql"].startswith("EXECUTE costsim_provenance_steady")
    assert "analytics_apikey_generation" in prepared
    assert "costsim_circuitbreaker" in prepared
    assert _prepared_provenance_statements()[0][1] == runs_before + 1
    assert Provenance.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_steady_statement_is_prepared_once_per_connection(
    api_client, sandbox_on, django_assert_num_queries
):
    # given: a warm key and a session that has prepared the statement
    for _ in range(2):
        assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    [(_, runs)] = _prepared_provenance_statements()
    # when: two more simulations on the same connection
    for _ in range(2):
        with django_assert_num_queries(1):
            answer = api_client.post(SIMULATE, EXAMPLE_BODY, format="json").json()
        assert answer["v2_error"] is None
    # then: they ran the same prepared statement
    assert _prepared_provenance_statements()[0][1] == runs + 2
    # and a new connection (a new session) prepares it again, and every row is written
    connection.close()
    with django_assert_num_queries(2) as captured:
        assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    assert captured.captured_queries[0]["sql"].startswith("PREPARE costsim_provenance_steady")
    assert _prepared_provenance_statements()[0][1] == 1
    assert Provenance.objects.count() == 5


def test_unsteady_breaker_reads_key_and_breaker_in_one_statement(api_client, sandbox_on):
    # given: a warm key, and a breaker with a failure streak this process has seen
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(consecutive_failures=1)
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(consecutive_failures=1)
    # when / then: key generation with the breaker row first, then the locked reset and a
    # plain INSERT
    with CaptureQueriesContext(connection) as captured:
        response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    assert response.json()["v2_error"] is None
    statements = [query["sql"] for query in captured.captured_queries]
    assert "analytics_apikey_generation" in statements[0]
    assert "costsim_circuitbreaker" in statements[0]
    assert not any("INSERT" in sql for sql in statements[:-1])
    assert statements[-1].startswith('INSERT INTO "costsim_provenance"')
    assert CircuitBreaker.objects.get(name=BREAKER_NAME).consecutive_failures == 0


def test_breaker_opened_between_two_requests_is_seen_by_the_second(api_client, sandbox_on):
    # given
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").json()["v2_error"] is None
    _open_breaker()
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then
    assert response.json()["v2"] is None
    assert response.json()["v2_error"] is not None
    assert Provenance.objects.count() == 1


def test_warm_key_still_simulates_when_the_breaker_row_is_missing(api_client, sandbox_on):
    # given: a warm key; then the breaker row disappears (a flushed database)
    assert api_client.post(SIMULATE, EXAMPLE_BODY, format="json").status_code == 200
    CircuitBreaker.objects.all().delete()
    # when
    response = api_client.post(SIMULATE, EXAMPLE_BODY, format="json")
    # then: the key is checked on its own and the sandbox's check creates the row
    assert response.status_code == 200
    assert response.json()["v2_error"] is None
    assert CircuitBreaker.objects.filter(name=BREAKER_NAME).exists()


def test_unknown_key_is_401_on_simulate():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Api-Key ck_" + "x" * 40)
    response = client.post(SIMULATE, EXAMPLE_BODY, format="json")
    assert response.status_code == 401


# GET /costsim/status/ ----------------------------------------------------------------


def test_status_reports_flag_versions_and_closed_breaker(api_client, settings):
    # given
    settings.COSTSIM_V2_SANDBOX = True
    settings.COSTSIM_MODEL_VERSION = "2.1.0"
    settings.COSTSIM_DRIFT_THRESHOLD = 0.25
    # when
    response = api_client.get(STATUS)
    # then
    assert response.status_code == 200
    assert response.json() == {
        "sandbox_enabled": True,
        "circuit_breaker_open": False,
        "model_version": "2.1.0",
        "adapter_version": settings.COSTSIM_ADAPTER_VERSION,
        "drift_threshold": 0.25,
        "consecutive_failures": 0,
        "disabled_until": None,
    }


def test_status_shows_an_open_breaker_to_a_staff_session(staff_session_client):
    # given
    CircuitBreaker.objects.filter(name=BREAKER_NAME).update(consecutive_failures=2)
    _open_breaker(until=utc(2099, 1, 1, 12))
    # when
    response = staff_session_client.get(STATUS)
    # then
    body = response.json()
    assert response.status_code == 200
    assert body["circuit_breaker_open"] is True
    assert body["consecutive_failures"] == 2
    assert body["disabled_until"] == "2099-01-01T12:00:00Z"


def test_status_auto_recovers_an_expired_breaker(api_client, settings):
    # given
    settings.COSTSIM_AUTO_RECOVER = True
    _open_breaker(until=timezone.now() - timedelta(minutes=1))
    # when
    body = api_client.get(STATUS).json()
    # then
    assert body["circuit_breaker_open"] is False
    assert body["disabled_until"] is None


def test_status_needs_authentication():
    assert APIClient().get(STATUS).status_code == 401


# GET /costsim/provenance/ ------------------------------------------------------------


def test_provenance_list_shows_only_the_callers_rows_newest_first(api_client, tenant, other_tenant):
    # given
    older = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1, 10))
    newer = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 2, 10), run_id="r-1")
    ProvenanceFactory(tenant=other_tenant, created_at=utc(2026, 3, 3, 10))
    # when
    response = api_client.get(PROVENANCE)
    # then
    assert response.status_code == 200
    results = response.json()["results"]
    assert [row["id"] for row in results] == [newer.id, older.id]
    assert results[0] == {
        "id": newer.id,
        "run_id": "r-1",
        "variant_slug": "v2",
        "source": "sandbox",
        "model_version": newer.model_version,
        "adapter_version": newer.adapter_version,
        "commit_sha": newer.commit_sha,
        "input_hash": newer.input_hash,
        "output_hash": newer.output_hash,
        "v1_cost_cents": 5,
        "v2_cost_cents": 4,
        "cost_delta_cents": -1,
        "drift_score": 0.12,
        "verdict": "minor_drift",
        "v2_status": "success",
        "runtime_ms": newer.runtime_ms,
        "created_at": "2026-03-02T10:00:00Z",
    }


def test_provenance_list_filters(api_client, tenant):
    # given
    sandbox = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1, 10))
    api = ProvenanceFactory(
        tenant=tenant, source="api", plan=[{"skill": "kv_get"}], created_at=utc(2026, 3, 2)
    )
    backfill = BackfillProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 3))

    def ids(query):
        response = api_client.get(PROVENANCE, query)
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    # then
    assert ids({"variant_slug": "v1"}) == {backfill.id}
    assert ids({"variant_slug": "v2"}) == {sandbox.id, api.id}
    assert ids({"source": "api"}) == {api.id}
    assert ids({"input_hash": sandbox.input_hash}) == {sandbox.id}
    assert ids({"from": "2026-03-02T00:00:00Z"}) == {api.id, backfill.id}
    assert ids({"to": "2026-03-02T00:00:00Z"}) == {sandbox.id}
    assert ids({"from": "2026-03-02T00:00:00+00:00", "to": "2026-03-03T00:00:00Z"}) == {api.id}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"variant_slug": "v3"}, "variant_slug"),
        ({"source": "manual"}, "source"),
        ({"input_hash": "xyz"}, "input_hash"),
        ({"input_hash": "7d2218dea0c346ce0"}, "input_hash"),
        ({"from": "2026-03-01T00:00:00"}, "from"),
        ({"to": "yesterday"}, "to"),
        ({"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"}, "from"),
        ({"page_size": "0"}, "page_size"),
    ],
)
def test_provenance_list_rejects_bad_filters(api_client, query, field):
    response = api_client.get(PROVENANCE, query)
    assert response.status_code == 400
    assert [item["field"] for item in response.json()["field_errors"]] == [field]


def test_provenance_list_naive_datetime_reason(api_client):
    response = api_client.get(PROVENANCE, {"from": "2026-03-01T00:00:00"})
    assert response.json()["field_errors"] == [{"field": "from", "reason": "timezone is required"}]


def test_provenance_list_pages_with_a_cursor(api_client, tenant):
    # given
    rows = [ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1, hour)) for hour in range(5)]
    # when
    first = api_client.get(PROVENANCE, {"page_size": 2}).json()
    second = api_client.get(first["next"]).json()
    # then
    assert [r["id"] for r in first["results"]] == [rows[4].id, rows[3].id]
    assert [r["id"] for r in second["results"]] == [rows[2].id, rows[1].id]


def test_provenance_list_query_count_does_not_grow_with_rows(
    api_client, tenant, django_assert_num_queries
):
    # given
    for _ in range(20):
        ProvenanceFactory(tenant=tenant)
    api_client.get(PROVENANCE)  # the key's first use also records last_used_at
    # when / then: api key lookup, page
    with django_assert_num_queries(2):
        response = api_client.get(PROVENANCE)
    assert len(response.json()["results"]) == 20


# GET /costsim/provenance/drift-stats/ ------------------------------------------------


def test_drift_stats_aggregate_the_callers_comparisons(api_client, tenant, other_tenant):
    # given: deltas -1, -5 and +1; a backfilled row and another tenant's row do not count
    ProvenanceFactory(tenant=tenant)  # 5 -> 4
    ProvenanceFactory(tenant=tenant, plan=[{"skill": "mystery"}])  # 10 -> 5
    ProvenanceFactory(tenant=tenant, v1_cost=3, v2_cost=4)
    BackfillProvenanceFactory(tenant=tenant, v1_cost=100)
    ProvenanceFactory(tenant=other_tenant, v1_cost=0, v2_cost=900)
    # when
    response = api_client.get(DRIFT_STATS)
    # then
    assert response.status_code == 200
    assert response.json() == {
        "total": 3,
        "avg_delta_cents": round((-1 - 5 + 1) / 3, 4),
        "min_delta_cents": -5.0,
        "max_delta_cents": 1.0,
        "stddev_delta_cents": 3.0551,
    }


def test_drift_stats_respect_the_window(api_client, tenant):
    # given
    ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1))
    ProvenanceFactory(tenant=tenant, plan=[{"skill": "mystery"}], created_at=utc(2026, 3, 2))
    # when
    body = api_client.get(
        DRIFT_STATS, {"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"}
    ).json()
    # then: one row, so the sample deviation is 0.0
    assert body == {
        "total": 1,
        "avg_delta_cents": -5.0,
        "min_delta_cents": -5.0,
        "max_delta_cents": -5.0,
        "stddev_delta_cents": 0.0,
    }


def test_drift_stats_without_rows_are_zeros(api_client, other_tenant):
    # given: only another tenant has data
    ProvenanceFactory(tenant=other_tenant)
    # when
    body = api_client.get(DRIFT_STATS).json()
    # then
    assert body == {
        "total": 0,
        "avg_delta_cents": 0.0,
        "min_delta_cents": 0.0,
        "max_delta_cents": 0.0,
        "stddev_delta_cents": 0.0,
    }


def test_drift_stats_reject_a_naive_bound(api_client):
    response = api_client.get(DRIFT_STATS, {"to": "2026-03-01T00:00:00"})
    assert response.status_code == 400
    assert response.json()["field_errors"] == [{"field": "to", "reason": "timezone is required"}]
