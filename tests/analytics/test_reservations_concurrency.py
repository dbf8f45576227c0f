"""Reservations under concurrency: many callers in several processes against a live server."""

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from analytics.models import ApiKey, BudgetReservation
from analytics.selectors.budgets import budget_status, budgets_usage
from analytics.services.reservations import reservations_close_lapsed
from tests.factories import ApiKeyFactory, BudgetFactory

PROJECT_DIR = Path(__file__).resolve().parents[2]

# One client process: `threads` connections, each sending its share of reservations at the
# same instant; prints one JSON line per answer.
_CLIENT_SCRIPT = """
import http.client, json, sys, threading, time
host, key = sys.argv[1], sys.argv[3]
port, first, count, threads = (int(value) for value in sys.argv[4:8])
start_at = float(sys.argv[2])
answers, lock = [], threading.Lock()

def warm(conn):
    # A served request before the start: the connection is accepted and kept alive, so
    # all reservations leave together without 50 connects racing the listen backlog.
    for _ in range(20):
        try:
            conn.request("GET", "/api/health/")
            conn.getresponse().read()
            return
        except OSError:
            conn.close()
            time.sleep(0.1)

def send(numbers):
    conn = http.client.HTTPConnection(host, port, timeout=60)
    warm(conn)
    while time.time() < start_at:
        time.sleep(0.0005)
    for number in numbers:
        body = json.dumps({"amount_cents": 10, "request_id": f"call-{number}", "ttl_seconds": 600})
        try:
            conn.request("POST", "/api/v1/budgets/reserve/", body=body, headers={
                "Authorization": f"Api-Key {key}", "Content-Type": "application/json"})
            response = conn.getresponse()
            answer = {"status": response.status, "number": number, **json.loads(response.read())}
        except Exception as exc:
            answer = {"status": 0, "number": number, "error": repr(exc)}
        with lock:
            answers.append(answer)

numbers = list(range(first, first + count))
pool = [threading.Thread(target=send, args=(numbers[i::threads],)) for i in range(threads)]
for thread in pool:
    thread.start()
for thread in pool:
    thread.join()
for answer in answers:
    print(json.dumps(answer))
"""

PROCESSES = 4
RESERVATIONS = 50
LIMIT_CENTS = 100


def _reserve_from_processes(live_server, raw_key: str) -> list[dict]:
    host, port = live_server.url.removeprefix("http://").split(":")
    start_at = time.time() + 3  # every process is up and connected by then
    share = RESERVATIONS // PROCESSES
    children = []
    for index in range(PROCESSES):
        first = index * share
        count = RESERVATIONS - first if index == PROCESSES - 1 else share
        children.append(
            subprocess.Popen(
                [sys.executable, "-c", _CLIENT_SCRIPT, host, str(start_at), raw_key, port]
                + [str(first), str(count), str(count)],
                cwd=PROJECT_DIR,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    answers = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        answers += [json.loads(line) for line in out.splitlines()]
    return answers


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_reservations_from_four_processes_allow_exactly_ten(live_server, tenant):
    # given a 100-cent hard daily budget and a key
    budget = BudgetFactory(
        tenant=tenant,
        daily_limit_cents=LIMIT_CENTS,
        monthly_limit_cents=None,
        hard_limit_enabled=True,
    )
    raw_key = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=tenant, raw_key=raw_key)

    # and a watcher reading spend + reserved over its own connection throughout
    seen: list[Decimal] = []
    done = threading.Event()

    def watch():
        try:
            while not done.is_set():
                usage = budgets_usage(budget_ids=[budget.pk], at=timezone.now())[budget.pk]
                seen.append(usage.day_spend + usage.reserved_cents)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()

    # when 50 reservations of 10 cents arrive at once from 4 processes
    try:
        answers = _reserve_from_processes(live_server, raw_key)
    finally:
        done.set()
        watcher.join(timeout=30)

    # then exactly 10 were allowed, the rest refused by that budget, and the held total
    # never passed the limit
    assert len(answers) == RESERVATIONS
    assert {a["status"] for a in answers} <= {200, 201}, [a for a in answers if a["status"] == 0]
    allowed = [a for a in answers if a["allowed"]]
    refused = [a for a in answers if not a["allowed"]]
    assert len(allowed) == 10
    assert all(a["status"] == 201 and a["reservation_id"] for a in allowed)
    assert all(a["refused_by"][0]["budget_id"] == budget.pk for a in refused)
    assert len(seen) > 0
    assert max(seen) <= LIMIT_CENTS
    assert BudgetReservation.objects.filter(tenant=tenant).count() == 10

    # when six of the allowed calls record their actual cost, larger or smaller than
    # reserved, and the other four expire
    client_costs = {}
    from tests.factories import CostRecordFactory

    now = timezone.now()
    for index, answer in enumerate(allowed[:6]):
        cents = Decimal(4 + 3 * index)  # 4 .. 19 cents
        CostRecordFactory(
            tenant=tenant,
            request_id=f"call-{answer['number']}",
            cost_cents=cents,
            created_at=now - timedelta(seconds=1),
        )
        client_costs[answer["reservation_id"]] = cents
    later = now + timedelta(seconds=601)
    report = reservations_close_lapsed(at=later)

    # then the status adds up to the records alone
    assert report.as_dict() == {"settled": 6, "expired": 4}
    daily = budget_status(budget=budget, at=later)["daily"]
    assert daily["spend_cents"] == sum(client_costs.values())
    assert daily["reserved_cents"] == 0
    assert daily["available_cents"] == LIMIT_CENTS - sum(client_costs.values())


def _other_connection():
    """A psycopg connection of its own to the test database, outside Django's."""
    import psycopg

    settings = connection.settings_dict
    return psycopg.connect(
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        dbname=settings["NAME"],
        autocommit=False,
    )


@pytest.mark.django_db(transaction=True)
def test_a_reservation_committed_while_waiting_for_the_lock_is_counted(tenant):
    # given a hard 100-cent day, whose row another session locks before reserving 60 cents
    from analytics.services.reservations import budget_reserve

    budget = BudgetFactory(tenant=tenant, daily_limit_cents=100, hard_limit_enabled=True)
    locked = threading.Event()

    def other_session():
        with _other_connection() as other:
            other.execute("SELECT id FROM analytics_budget WHERE id = %s FOR UPDATE", [budget.pk])
            locked.set()
            time.sleep(0.5)  # the reserve below is waiting for the lock by now
            other.execute(
                "INSERT INTO analytics_budgetreservation (tenant_id, amount_cents, source, "
                "request_id, status, created_at, expires_at) VALUES "
                "(%s, 60, 'amount', 'other', 'open', now(), now() + interval '10 minutes')",
                [tenant.pk],
            )
            other.commit()

    holder = threading.Thread(target=other_session)
    holder.start()
    assert locked.wait(10)

    # when a reservation of 50 cents arrives while the row is locked
    began = time.monotonic()
    outcome = budget_reserve(tenant=tenant, amount_cents=50, ttl_seconds=600, request_id="mine")
    waited = time.monotonic() - began
    holder.join()

    # then it waited for the lock and counted the 60 cents committed meanwhile
    assert waited >= 0.3
    assert not outcome.allowed
    assert outcome.checks[0].reserved_cents == 60
    assert BudgetReservation.objects.filter(request_id="mine").count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("budgeted", [True, False], ids=["budget-locked", "no-budget"])
def test_concurrent_retries_of_one_call_hold_one_reservation(tenant, budgeted):
    # given (or not) a budget whose lock serialises them
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    from analytics.services.reservations import budget_reserve

    if budgeted:
        BudgetFactory(tenant=tenant, daily_limit_cents=1000, hard_limit_enabled=True)
    start = threading.Barrier(8)

    def retry(_):
        try:
            start.wait()
            outcome = budget_reserve(
                tenant=tenant, amount_cents=40, ttl_seconds=600, request_id="same-call"
            )
            return outcome.reservation.pk, outcome.replayed
        finally:
            connections.close_all()

    # when 8 retries of the same call arrive at once, each on its own connection
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(retry, range(8)))

    # then one reservation was made, and every answer is that one
    assert len({pk for pk, _ in answers}) == 1
    assert sorted(replayed for _, replayed in answers) == [False] + [True] * 7
    assert BudgetReservation.objects.filter(request_id="same-call").count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("durable", [False, True])
def test_a_reserve_outside_a_transaction_commits_asynchronously_unless_told_not_to(
    tenant, settings, durable
):
    # given
    from django.test.utils import CaptureQueriesContext

    from analytics.services.reservations import budget_reserve

    settings.BUDGET_RESERVE_SYNCHRONOUS_COMMIT = durable

    # when
    with CaptureQueriesContext(connection) as captured:
        outcome = budget_reserve(tenant=tenant, amount_cents=1, ttl_seconds=60, request_id="r")

    # then one batch, which turns the flush wait off only when allowed to; committed either way
    (batch,) = [query["sql"] for query in captured.captured_queries]
    assert ("SET LOCAL synchronous_commit = off" in batch) is not durable
    assert not connection.in_atomic_block
    assert BudgetReservation.objects.get(pk=outcome.reservation.pk).status == "open"
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # SET LOCAL ended with the batch's transaction


@pytest.mark.django_db(transaction=True)
def test_the_prepared_statements_survive_a_failed_batch_and_a_new_connection(tenant):
    # given a reserve that fails in the database (its tenant does not exist)
    from django.db.utils import IntegrityError
    from django.test.utils import CaptureQueriesContext

    from analytics.models import Tenant
    from analytics.services.reservations import budget_reserve

    def reserve(who, request_id):
        return budget_reserve(tenant=who, amount_cents=1, ttl_seconds=60, request_id=request_id)

    reserve(tenant, "warm")  # prepares the statements in this session
    with pytest.raises(IntegrityError):
        reserve(Tenant(pk=tenant.pk + 10_000, slug="gone"), "fails")

    # when the same connection reserves again
    with CaptureQueriesContext(connection) as captured:
        after_failure = reserve(tenant, "after-failure")

    # then the session was asked what it has prepared, and nothing was prepared twice
    sent = [query["sql"] for query in captured.captured_queries]
    assert "pg_prepared_statements" in sent[0]
    assert "PREPARE" not in sent[-1] and after_failure.allowed

    # and on a new connection (a new session) the statements are prepared again
    connection.close()
    with CaptureQueriesContext(connection) as captured:
        fresh = reserve(tenant, "fresh-session")
    assert "PREPARE costwise_reserve_lock" in captured.captured_queries[-1]["sql"]
    assert fresh.allowed
    assert BudgetReservation.objects.filter(tenant=tenant).count() == 3
