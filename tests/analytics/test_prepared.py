"""Statements prepared once per session: the PREPARE/EXECUTE pair, the session tracking, and
the two hot paths that use them sharing one connection."""

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError
from django.test.utils import CaptureQueriesContext

from analytics.models import BudgetReservation
from analytics.prepared import (
    ensure_prepared,
    prepared_statement,
    session_prepared,
    session_prepared_unknown,
)
from analytics.services.reservations import budget_reserve
from costsim.models import BREAKER_NAME, CircuitBreaker, Provenance
from costsim.services.drift import compare
from costsim.services.estimators import estimate_v1, estimate_v2
from costsim.services.provenance import provenance_input_json, provenance_record_if_steady
from tests.factories import BudgetFactory

PLAN = [{"skill": "http_call", "params": {"url": "https://api.example.com"}}]


def _session_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        return {name for (name,) in cursor.fetchall()}


def test_a_statement_numbers_its_parameters_and_declares_their_types():
    statement = prepared_statement(
        "costwise_test_numbering",
        "SELECT %(b)s + 1, %(a)s, %(b)s * 2, %(free)s",
        {"a": "text", "b": "bigint"},
    )
    # Each name becomes one $n in order of first use; one without a type is left to infer.
    assert statement.prepare == (
        "PREPARE costwise_test_numbering (bigint, text, unknown) AS SELECT $1 + 1, $2, $1 * 2, $3"
    )
    assert statement.execute == "EXECUTE costwise_test_numbering (%(b)s, %(a)s, %(free)s)"


def test_a_prepared_statement_runs_once_prepared(db):
    statement = prepared_statement(
        "costwise_test_binding",
        "SELECT %(n)s + 1, %(label)s || '!', %(doc)s->>'k', %(missing)s IS NULL",
        {"n": "bigint", "label": "text", "doc": "jsonb", "missing": "text"},
    )
    params = {"n": 41, "label": "ok", "doc": '{"k": "v"}', "missing": None}
    with connection.cursor() as cursor:
        ensure_prepared(cursor, statement)
        cursor.execute(statement.execute, params)
        assert cursor.fetchone() == (42, "ok!", "v", True)
    # Prepared once: the second use sends the EXECUTE alone.
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        ensure_prepared(cursor, statement)
        cursor.execute(statement.execute, params)
    assert [query["sql"][:7] for query in captured.captured_queries] == ["EXECUTE"]


@pytest.mark.django_db(transaction=True)
def test_the_session_is_asked_after_a_failure_and_a_new_connection_starts_empty():
    statement = prepared_statement("costwise_test_session", "SELECT %(n)s * 2", {"n": "bigint"})
    with connection.cursor() as cursor:
        ensure_prepared(cursor, statement)
        # when a round trip fails, the tracking forgets what it knew
        with pytest.raises(ProgrammingError):
            cursor.execute("EXECUTE costwise_test_missing (1)")
        session_prepared_unknown()
    # then the session is asked, and the statement it holds is not prepared twice
    with CaptureQueriesContext(connection) as captured, connection.cursor() as cursor:
        assert statement.name in session_prepared(cursor)
        ensure_prepared(cursor, statement)
    assert ["pg_prepared_statements" in q["sql"] for q in captured.captured_queries] == [True]
    # and a new connection is a new session: nothing is assumed prepared there
    connection.close()
    with connection.cursor() as cursor:
        assert session_prepared(cursor) == set()
        assert statement.name not in _session_names()


def _simulate_steady(tenant):
    v1 = estimate_v1(PLAN, budget_cents=100, allowed_skills=None)
    v2 = estimate_v2(PLAN, budget_cents=100, allowed_skills=None)
    written = provenance_record_if_steady(
        tenant=tenant,
        run_id=None,
        source="sandbox",
        input_json=provenance_input_json(plan=PLAN, budget_cents=100, allowed_skills=None),
        v1_result=v1,
        v2_result=v2,
        comparison=compare(v1, v2),
    )
    assert written.row_id is not None
    return written


def _reserve(tenant, request_id):
    return budget_reserve(tenant=tenant, amount_cents=1, ttl_seconds=60, request_id=request_id)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_transaction_keeps_both_hot_paths_prepared(tenant):
    # given: one connection that has run a steady shadowed simulation and a reservation
    CircuitBreaker.objects.get_or_create(name=BREAKER_NAME)
    BudgetFactory(tenant=tenant, daily_limit_cents=1_000, monthly_limit_cents=10_000)
    _simulate_steady(tenant)
    assert _reserve(tenant, "first").allowed
    prepared_before = _session_names()
    assert {"costsim_provenance_steady", "costwise_reserve_request"} <= prepared_before
    # when: a transaction on it rolls back (and a DDL statement runs, as partition
    # maintenance does)
    with pytest.raises(RuntimeError), transaction.atomic():
        Provenance.objects.filter(tenant=tenant).delete()
        raise RuntimeError("roll back")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE costwise_scratch (id int)")
        cursor.execute("DROP TABLE costwise_scratch")
    # then: the session still holds every statement, and both paths run without preparing
    assert _session_names() == prepared_before
    with CaptureQueriesContext(connection) as captured:
        _simulate_steady(tenant)
        assert _reserve(tenant, "second").allowed
    assert not any("PREPARE" in query["sql"] for query in captured.captured_queries)
    assert Provenance.objects.filter(tenant=tenant).count() == 2
    assert BudgetReservation.objects.filter(tenant=tenant).count() == 2
