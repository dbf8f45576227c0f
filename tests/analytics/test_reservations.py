"""Budget reservations: the check, settlement, release, expiry, calendar resets, the API."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from analytics.api.reservations import register_plan_pricer
from analytics.models import BudgetReservation, BudgetType
from analytics.selectors.budgets import budget_status, budgets_usage
from analytics.selectors.detection import active_budgets_with_spend
from analytics.services.reservations import (
    CheckState,
    budget_reserve,
    reservation_release,
    reservations_close_lapsed,
)
from costsim.api.reservation_plans import plan_cost_cents
from costsim.services.estimators import estimate_v1
from tests.factories import BudgetFactory, CostRecordFactory, utc

pytestmark = pytest.mark.django_db

RESERVE = "/api/v1/budgets/reserve/"
RESERVATIONS = "/api/v1/budgets/reservations/"
NOW = utc(2026, 3, 10, 12)
Status = BudgetReservation.Status


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


def spend(tenant, cents, at, **fields):
    return CostRecordFactory(tenant=tenant, cost_cents=Decimal(str(cents)), created_at=at, **fields)


def reserve(tenant, amount, request_id="req-1", ttl=600, **fields):
    return budget_reserve(
        tenant=tenant, amount_cents=amount, ttl_seconds=ttl, request_id=request_id, **fields
    )


def hard_daily(tenant, cents=100, **fields):
    return BudgetFactory(
        tenant=tenant,
        budget_type=fields.pop("budget_type", BudgetType.TENANT),
        daily_limit_cents=cents,
        monthly_limit_cents=None,
        hard_limit_enabled=True,
        **fields,
    )


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


# --- the check --------------------------------------------------------------------------------


def test_reservations_fill_a_hard_budget_exactly_and_the_next_is_refused(tenant, frozen):
    # given a 100-cent hard daily budget with 60 cents already spent today
    budget = hard_daily(tenant)
    spend(tenant, 60, NOW - timedelta(hours=1))

    # when two reservations of 20 cents are asked for, then a third
    first = reserve(tenant, 20, request_id="a")
    second = reserve(tenant, 20, request_id="b")
    third = reserve(tenant, 1, request_id="c")

    # then the first two fill the budget to the cent and the third is refused
    assert first.allowed and second.allowed
    assert second.checks[0].reserved_cents == 20
    assert second.checks[0].remaining_cents == Decimal(0)
    assert not third.allowed
    assert third.reservation is None
    (refusal,) = third.refusals
    assert refusal.budget_id == budget.pk
    assert refusal.period == "daily"
    assert "hard daily limit of 100 cents" in refusal.reason
    assert BudgetReservation.objects.count() == 2


def test_a_user_inside_a_feature_counts_against_both_budgets(tenant, frozen):
    # given a roomy feature budget and a tight user budget, both hard
    feature = hard_daily(tenant, 1000, budget_type=BudgetType.FEATURE, entity_id="search")
    user = hard_daily(tenant, 50, budget_type=BudgetType.USER, entity_id="u-1")
    spend(tenant, 40, NOW - timedelta(minutes=5), user_id="u-1", feature_tag="other")

    # when the user reserves 20 cents inside the feature
    outcome = reserve(tenant, 20, feature_tag="search", user_id="u-1")

    # then both budgets were checked and the user's refused it
    assert {(c.budget_id, c.state) for c in outcome.checks} == {
        (feature.pk, CheckState.OK),
        (user.pk, CheckState.REFUSED),
    }
    assert not outcome.allowed

    # and a reservation of 10 cents held against the feature also counts for the user
    assert reserve(tenant, 10, feature_tag="search", user_id="u-1").allowed
    usage = budgets_usage(budget_ids=[feature.pk, user.pk], at=NOW)
    assert usage[feature.pk].reserved_cents == 10
    assert usage[user.pk].reserved_cents == 10


def test_budgets_of_other_scopes_and_tenants_do_not_apply(tenant, other_tenant, frozen):
    # given full budgets for another feature, another user and another tenant
    hard_daily(tenant, 1, budget_type=BudgetType.FEATURE, entity_id="other")
    hard_daily(tenant, 1, budget_type=BudgetType.USER, entity_id="someone-else")
    hard_daily(other_tenant, 1)

    # when
    outcome = reserve(tenant, 500, feature_tag="search", user_id="u-1")

    # then none was checked
    assert outcome.allowed
    assert outcome.checks == []


def test_a_soft_budget_allows_and_says_the_threshold_and_the_limit_are_passed(tenant, frozen):
    # given a soft 100-cent daily budget warning at 80 %
    BudgetFactory(tenant=tenant, daily_limit_cents=100, warn_threshold_pct=80)

    # when
    warned = reserve(tenant, 85, request_id="a")
    over = reserve(tenant, 30, request_id="b")

    # then both are allowed and say why they are not OK
    assert warned.allowed and warned.checks[0].state == CheckState.WARNING
    assert "reaches 85.0% (warning at 80%)" in warned.checks[0].reason
    assert over.allowed and over.checks[0].state == CheckState.OVER_LIMIT
    assert over.checks[0].remaining_cents == Decimal(-15)


def test_inactive_budgets_are_not_checked(tenant, frozen):
    hard_daily(tenant, 1, is_active=False)
    assert reserve(tenant, 50).allowed


def test_the_monthly_limit_refuses_when_the_day_has_room(tenant, frozen):
    # given 95 cents spent earlier this month against a 100-cent month, 1000-cent day
    BudgetFactory(
        tenant=tenant, daily_limit_cents=1000, monthly_limit_cents=100, hard_limit_enabled=True
    )
    spend(tenant, 95, utc(2026, 3, 2))

    # when
    outcome = reserve(tenant, 10)

    # then
    assert [(c.period, c.state) for c in outcome.checks] == [
        ("daily", CheckState.OK),
        ("monthly", CheckState.REFUSED),
    ]


# --- settle, release, expire --------------------------------------------------------------------


def test_records_of_the_call_settle_the_reservation_whether_larger_or_smaller(tenant, frozen):
    # given two reservations of 30 cents against a hard 100-cent day
    budget = hard_daily(tenant)
    reserve(tenant, 30, request_id="small")
    reserve(tenant, 30, run_id="run-big", request_id=None)

    # when their records arrive: 12 cents for one call, 45 over two calls of the run
    earlier = NOW - timedelta(seconds=1)
    spend(tenant, 12, earlier, request_id="small")
    spend(tenant, 20, earlier, run_id="run-big", request_id="x1")
    spend(tenant, 25, earlier, run_id="run-big", request_id="x2")

    # then the actual costs replaced what was reserved
    status = budget_status(budget=budget, at=NOW)["daily"]
    assert status["spend_cents"] == Decimal(57)
    assert status["reserved_cents"] == 0
    assert status["available_cents"] == Decimal(43)
    # and 43 cents can be reserved again, not 44
    assert reserve(tenant, 43, request_id="next").allowed
    assert not reserve(tenant, 1, request_id="more").allowed


def test_only_records_created_within_a_day_of_the_reservations_life_settle_it(
    api_client, tenant, frozen
):
    # given a hard budget and three one-hour reservations of 30 cents
    budget = hard_daily(tenant)
    for call in ("old", "edge", "late"):
        reserve(tenant, 30, request_id=call, ttl=3600)

    # when records of their calls arrive: one from two days before (a request_id reused),
    # one a day before to the second, one a day after the TTL ends
    spend(tenant, 1, NOW - timedelta(days=2), request_id="old")
    spend(tenant, 1, NOW - timedelta(days=1), request_id="edge")
    spend(tenant, 1, NOW + timedelta(hours=1, days=1), request_id="late")

    # then only the record inside the window settles its reservation, in every read
    assert budget_status(budget=budget, at=NOW)["daily"]["reserved_cents"] == 60
    assert reserve(tenant, 40, request_id="fits").allowed
    assert not reserve(tenant, 1, request_id="full").allowed
    listed = api_client.get(RESERVATIONS).json()["results"]
    assert {row["request_id"]: row["status"] for row in listed} == {
        "old": "open",
        "edge": "settled",
        "late": "open",
        "fits": "open",
    }
    frozen.shift(timedelta(hours=2))
    assert reservations_close_lapsed().as_dict() == {"settled": 1, "expired": 3}


def test_release_hands_the_budget_back_and_releasing_twice_is_harmless(tenant, frozen):
    # given
    budget = hard_daily(tenant)
    held = reserve(tenant, 100).reservation
    assert not reserve(tenant, 1, request_id="b").allowed

    # when
    reservation_release(tenant=tenant, reservation_id=held.pk)
    reservation_release(tenant=tenant, reservation_id=held.pk)

    # then
    held.refresh_from_db()
    assert (held.status, held.closed_at) == (Status.RELEASED, NOW)
    assert budget_status(budget=budget, at=NOW)["daily"]["reserved_cents"] == 0
    assert reserve(tenant, 100, request_id="c").allowed


def test_releasing_a_reservation_whose_records_arrived_settles_it(tenant, frozen):
    held = reserve(tenant, 10, request_id="done").reservation
    spend(tenant, 7, NOW, request_id="done")

    reservation_release(tenant=tenant, reservation_id=held.pk)

    held.refresh_from_db()
    assert held.status == Status.SETTLED


def test_an_expired_reservation_stops_holding_before_the_job_runs(tenant, frozen):
    # given a reservation of the whole budget for 60 s
    hard_daily(tenant)
    reserve(tenant, 100, ttl=60)

    # when its TTL has passed, with no job run yet
    frozen.shift(timedelta(seconds=60))

    # then reads ignore it
    assert reserve(tenant, 100, request_id="later").allowed


def test_the_job_records_settled_and_expired_ones_and_a_second_run_changes_nothing(tenant, frozen):
    # given one settled by records, one expired, one still open
    settled = reserve(tenant, 10, request_id="s", ttl=3600).reservation
    expired = reserve(tenant, 10, request_id="e", ttl=60).reservation
    open_one = reserve(tenant, 10, request_id="o", ttl=3600).reservation
    spend(tenant, 4, NOW, request_id="s")
    frozen.shift(timedelta(minutes=5))

    # when the job runs twice
    first = reservations_close_lapsed()
    second = reservations_close_lapsed()

    # then
    assert first.as_dict() == {"settled": 1, "expired": 1}
    assert second.as_dict() == {"settled": 0, "expired": 0}
    statuses = dict(BudgetReservation.objects.values_list("pk", "status"))
    assert statuses == {
        settled.pk: Status.SETTLED,
        expired.pk: Status.EXPIRED,
        open_one.pk: Status.OPEN,
    }


def test_after_settling_and_expiring_the_status_adds_up_to_the_records(tenant, frozen):
    # given a hard budget, reservations, some of which run and record their cost
    budget = hard_daily(tenant, 500)
    for index in range(6):
        reserve(tenant, 50, request_id=f"call-{index}", ttl=120)
    for index, cents in enumerate(["61.5", "12.25", "48"]):
        spend(tenant, cents, NOW + timedelta(seconds=index), request_id=f"call-{index}")

    # when the rest expire and the job runs
    frozen.shift(timedelta(minutes=3))
    reservations_close_lapsed()

    # then spend is the records' sum, nothing is reserved, the rest is available
    status = budget_status(budget=budget, at=NOW + timedelta(minutes=3))["daily"]
    assert status["spend_cents"] == Decimal("121.75")
    assert status["reserved_cents"] == 0
    assert status["available_cents"] == Decimal("378.25")
    assert BudgetReservation.objects.filter(status=Status.OPEN).count() == 0


# --- calendar ----------------------------------------------------------------------------------


def test_the_daily_limit_resets_at_midnight_utc(tenant):
    # given a day's budget used up by records late in the day
    hard_daily(tenant)
    spend(tenant, 100, utc(2026, 3, 10, 23, 50))
    with time_machine.travel(utc(2026, 3, 10, 23, 59, 59), tick=False):
        assert not reserve(tenant, 1).allowed

    # when the next UTC day starts
    with time_machine.travel(utc(2026, 3, 11, 0, 0, 0), tick=False):
        outcome = reserve(tenant, 100)

    # then the whole limit is available again
    assert outcome.allowed
    assert outcome.checks[0].spend_cents == Decimal(0)


def test_the_monthly_limit_resets_at_the_month_end_but_the_day_does_not_carry_over(tenant):
    # given a month used up on its last day (February of a non-leap year)
    BudgetFactory(
        tenant=tenant, daily_limit_cents=80, monthly_limit_cents=100, hard_limit_enabled=True
    )
    spend(tenant, 30, utc(2026, 2, 3))
    spend(tenant, 70, utc(2026, 2, 28, 22))
    with time_machine.travel(utc(2026, 2, 28, 23, 59, 59), tick=False):
        refused = reserve(tenant, 1, request_id="a")

    # when March begins
    with time_machine.travel(utc(2026, 3, 1, 0, 0, 1), tick=False):
        allowed = reserve(tenant, 80, request_id="b")
        over_day = reserve(tenant, 1, request_id="c")

    # then
    assert [c.state for c in refused.checks] == [CheckState.WARNING, CheckState.REFUSED]
    assert allowed.allowed
    assert [c.spend_cents for c in allowed.checks] == [Decimal(0), Decimal(0)]
    assert [(c.period, c.state) for c in over_day.checks] == [
        ("daily", CheckState.REFUSED),
        ("monthly", CheckState.WARNING),
    ]


def test_an_open_reservation_still_holds_after_midnight(tenant):
    # given a reservation made just before midnight, whose run has not reported yet
    hard_daily(tenant)
    with time_machine.travel(utc(2026, 3, 10, 23, 59), tick=False):
        reserve(tenant, 70, ttl=600)

    # when the day resets
    with time_machine.travel(utc(2026, 3, 11, 0, 1), tick=False):
        outcome = reserve(tenant, 40, request_id="b")

    # then its money is still held: the run will spend it in the new day
    assert not outcome.allowed
    assert outcome.checks[0].reserved_cents == 70


# --- one notion of spend --------------------------------------------------------------------------


def test_reserve_check_status_and_detection_agree_on_spend(tenant, frozen):
    # given records across scopes, days and a record after the instant
    whole = BudgetFactory(tenant=tenant, daily_limit_cents=10_000, monthly_limit_cents=90_000)
    feature = BudgetFactory(
        tenant=tenant, budget_type=BudgetType.FEATURE, entity_id="search", daily_limit_cents=999
    )
    user = BudgetFactory(
        tenant=tenant, budget_type=BudgetType.USER, entity_id="u-1", daily_limit_cents=999
    )
    spend(tenant, "1.5", NOW - timedelta(hours=2), feature_tag="search", user_id="u-1")
    spend(tenant, "2.25", NOW - timedelta(days=3), feature_tag="search")
    spend(tenant, 4, NOW - timedelta(hours=1), user_id="u-1")
    spend(tenant, 8, utc(2026, 2, 27), user_id="u-1")  # last month
    spend(tenant, 16, NOW + timedelta(minutes=1))  # not yet at NOW

    # when each path reads the spend at NOW
    day_start, month_start = utc(2026, 3, 10), utc(2026, 3, 1)
    detection = {
        b.pk: (b.day_spend, b.month_spend)
        for b in active_budgets_with_spend(
            tenant=tenant, day_start=day_start, month_start=month_start, until=NOW
        )
    }
    usage = budgets_usage(budget_ids=[whole.pk, feature.pk, user.pk], at=NOW)
    checks = {
        c.budget_id: c.spend_cents
        for c in reserve(tenant, 0, feature_tag="search", user_id="u-1").checks
        if c.period == "daily"
    }

    # then all three agree
    expected = {
        whole.pk: (Decimal("5.5"), Decimal("7.75")),
        feature.pk: (Decimal("1.5"), Decimal("3.75")),
        user.pk: (Decimal("5.5"), Decimal("5.5")),
    }
    assert detection == expected
    assert {pk: (u.day_spend, u.month_spend) for pk, u in usage.items()} == expected
    assert checks == {pk: day for pk, (day, _) in expected.items()}
    assert budget_status(budget=whole, at=NOW)["monthly"]["spend_cents"] == Decimal("7.75")


def test_the_reserve_check_is_one_round_trip_whatever_the_budgets(tenant, frozen):
    # given the three scopes budgeted
    hard_daily(tenant, 1000)
    hard_daily(tenant, 1000, budget_type=BudgetType.FEATURE, entity_id="search")
    hard_daily(tenant, 1000, budget_type=BudgetType.USER, entity_id="u-1")

    # when
    with CaptureQueriesContext(connection) as captured:
        outcome = reserve(tenant, 10, feature_tag="search", user_id="u-1")

    # then lock, read and insert went as one batch (savepoint statements aside), the lock
    # first, each statement prepared once per session
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == 1
    executed = re.findall(r"EXECUTE (\w+)", statements[0])
    assert executed == [
        "costwise_reserve_lock",
        "costwise_reserve_close_request",
        "costwise_reserve_request",
    ]
    assert outcome.allowed and len(outcome.checks) == 3

    # and a second reserve on the same connection only executes them
    with CaptureQueriesContext(connection) as captured:
        reserve(tenant, 10, request_id="second", feature_tag="search", user_id="u-1")
    (batch,) = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert "PREPARE" not in batch and batch.count("EXECUTE") == 3


# --- API ---------------------------------------------------------------------------------------


def test_reserve_endpoint_answers_allowed_with_the_reservation_and_budgets(
    api_client, tenant, frozen
):
    # given
    budget = hard_daily(tenant)

    # when
    response = api_client.post(
        RESERVE,
        {"amount_cents": 30, "request_id": "req-9", "user_id": "u-1", "ttl_seconds": 120},
        format="json",
    )

    # then
    assert response.status_code == 201
    body = response.json()
    assert body["allowed"] is True
    assert body["amount_cents"] == 30
    assert body["expires_at"] == "2026-03-10T12:02:00Z"
    assert body["refused_by"] == []
    assert body["budgets"] == [
        {
            "budget_id": budget.pk,
            "budget_type": "tenant",
            "entity_id": None,
            "period": "daily",
            "hard_limit_enabled": True,
            "warn_threshold_pct": 80,
            "limit_cents": 100,
            "spend_cents": 0,
            "reserved_cents": 0,
            "remaining_cents": 70,
            "state": "ok",
            "reason": None,
        }
    ]
    stored = BudgetReservation.objects.get(pk=body["reservation_id"])
    assert (stored.tenant, stored.user_id, stored.request_id) == (tenant, "u-1", "req-9")


def test_reserve_endpoint_says_which_budget_refused_and_why(api_client, tenant, frozen):
    budget = hard_daily(tenant, 10)

    response = api_client.post(RESERVE, {"amount_cents": 11, "run_id": "r-1"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["allowed"], body["reservation_id"], body["expires_at"]) == (False, None, None)
    assert body["refused_by"] == [
        {
            "budget_id": budget.pk,
            "period": "daily",
            "reason": "would exceed the hard daily limit of 10 cents for tenant: spend 0 + "
            "reserved 0 + 11 requested = 11",
        }
    ]
    assert not BudgetReservation.objects.exists()


def test_a_plan_is_reserved_at_the_estimate_simulate_answers_with(api_client, tenant, frozen):
    # given
    plan = [
        {"skill": "llm_invoke", "params": {"prompt": "Summarise the report."}, "iterations": 3},
        {"skill": "http_call", "params": {"url": "https://example.com"}},
    ]
    expected = estimate_v1(plan).estimated_cost_cents
    simulated = api_client.post("/api/v1/costsim/simulate/", {"plan": plan}, format="json")

    # when
    response = api_client.post(RESERVE, {"plan": plan, "request_id": "p-1"}, format="json")

    # then
    assert response.status_code == 201
    assert expected > 0
    assert (
        response.json()["amount_cents"]
        == expected
        == simulated.json()["v1"]["estimated_cost_cents"]
    )
    reservation = BudgetReservation.objects.get()
    assert (reservation.amount_cents, reservation.source) == (expected, "plan")


def test_a_bad_plan_is_a_400_naming_the_step(api_client):
    response = api_client.post(
        RESERVE, {"plan": [{"skill": "bad skill!"}], "request_id": "p"}, format="json"
    )
    assert response.status_code == 400
    assert "plan[0].skill" in field_errors(response)


def test_without_a_registered_pricer_a_plan_is_a_400(api_client):
    register_plan_pricer(None)
    try:
        response = api_client.post(
            RESERVE, {"plan": [{"skill": "llm_invoke"}], "request_id": "p"}, format="json"
        )
    finally:
        register_plan_pricer(plan_cost_cents)
    assert response.status_code == 400
    assert "plan" in field_errors(response)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"request_id": "r"}, "amount_cents"),
        ({"amount_cents": 1, "plan": [{"skill": "llm_invoke"}], "request_id": "r"}, "amount_cents"),
        ({"amount_cents": -1, "request_id": "r"}, "amount_cents"),
        ({"amount_cents": "ten", "request_id": "r"}, "amount_cents"),
        ({"amount_cents": 10**13, "request_id": "r"}, "amount_cents"),
        ({"amount_cents": 1}, "request_id"),
        ({"amount_cents": 1, "request_id": ""}, "request_id"),
        ({"amount_cents": 1, "request_id": "x" * 65}, "request_id"),
        ({"amount_cents": 1, "run_id": "a\x00b"}, "run_id"),
        ({"amount_cents": 1, "request_id": "r", "feature_tag": ["x"]}, "feature_tag"),
        ({"amount_cents": 1, "request_id": "r", "ttl_seconds": 0}, "ttl_seconds"),
        ({"amount_cents": 1, "request_id": "r", "ttl_seconds": 86_401}, "ttl_seconds"),
        ({"amount_cents": 1, "request_id": "r", "tll_seconds": 5}, "tll_seconds"),
        ({"amount_cents": 1, "request_id": "r", "plan": "steps"}, "amount_cents"),
        ({"plan": {"skill": "x"}, "request_id": "r"}, "plan"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_client, body, field):
    response = api_client.post(RESERVE, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error"
    assert field in field_errors(response)


def test_an_unpaired_surrogate_is_a_400_naming_the_field(api_client):
    # JSON escapes can carry one; no UTF-8 column can store it.
    body = '{"amount_cents": 1, "request_id": "r", "user_id": "a\\ud800"}'
    response = api_client.post(RESERVE, data=body, content_type="application/json")
    assert response.status_code == 400
    assert "user_id" in field_errors(response)


def test_a_body_that_is_not_an_object_is_a_400(api_client):
    response = api_client.post(RESERVE, [1, 2], format="json")
    assert response.status_code == 400


def test_another_tenants_reservation_is_a_404(api_client, other_client, tenant, frozen):
    # given a reservation of `tenant`
    held = reserve(tenant, 10).reservation

    # then another tenant can neither read nor release it
    assert other_client.get(f"{RESERVATIONS}{held.pk}/").status_code == 404
    assert other_client.post(f"{RESERVATIONS}{held.pk}/release/").status_code == 404
    assert other_client.get(RESERVATIONS).json()["results"] == []
    held.refresh_from_db()
    assert held.status == Status.OPEN
    # while its own tenant can
    assert api_client.get(f"{RESERVATIONS}{held.pk}/").json()["status"] == "open"


def test_release_endpoint_answers_the_reservation_as_it_now_is(api_client, tenant, frozen):
    held = reserve(tenant, 10).reservation

    response = api_client.post(f"{RESERVATIONS}{held.pk}/release/")

    assert response.status_code == 200
    assert response.json()["status"] == "released"
    assert response.json()["closed_at"] == "2026-03-10T12:00:00Z"


def test_reads_show_the_status_a_reservation_is_in_now(api_client, tenant, frozen):
    # given one settled by a record and one past its TTL, neither yet closed by the job
    settled = reserve(tenant, 10, request_id="s", ttl=3600).reservation
    expired = reserve(tenant, 10, request_id="e", ttl=60).reservation
    spend(tenant, 3, NOW, request_id="s")
    frozen.shift(timedelta(minutes=2))

    # when
    response = api_client.get(RESERVATIONS)

    # then, newest first
    assert response.status_code == 200
    assert [(r["id"], r["status"]) for r in response.json()["results"]] == [
        (expired.pk, "expired"),
        (settled.pk, "settled"),
    ]


def test_reservation_list_pages_with_the_cursor(api_client, tenant, frozen):
    for index in range(5):
        reserve(tenant, 1, request_id=f"r{index}")
    first = api_client.get(RESERVATIONS, {"page_size": 2}).json()
    second = api_client.get(first["next"]).json()
    assert len(first["results"]) == len(second["results"]) == 2
    assert {r["id"] for r in first["results"]}.isdisjoint({r["id"] for r in second["results"]})


def test_budget_status_shows_spend_reserved_and_available(api_client, tenant, frozen):
    # given
    budget = hard_daily(tenant)
    spend(tenant, "12.5", NOW - timedelta(hours=1))
    reserve(tenant, 30)

    # when
    response = api_client.get(f"/api/v1/budgets/{budget.pk}/status/")

    # then
    assert response.status_code == 200
    daily = response.json()["daily"]
    assert (daily["spend_cents"], daily["reserved_cents"], daily["available_cents"]) == (
        12.5,
        30,
        57.5,
    )
    assert response.json()["monthly"] is None


def test_the_reserve_view_reads_the_spend_through_the_shared_sql():
    # The one spend definition is the SQL the three paths share.
    from analytics.selectors import budgets, detection

    assert budgets.BUDGET_SPEND_LATERAL in detection._BUDGET_SPEND_SQL
    assert budgets.BUDGET_SPEND_LATERAL in budgets._BUDGETS_SPEND_SQL


def test_spend_read_from_hourly_snapshots_equals_the_records_even_after_a_late_record(
    api_client, tenant
):
    # given records over three hours of today, the first two snapshotted
    from analytics.selectors.budgets import budget_spend
    from analytics.services.snapshots import snapshot_compute

    feature = BudgetFactory(
        tenant=tenant, budget_type=BudgetType.FEATURE, entity_id="search", daily_limit_cents=999
    )
    whole = BudgetFactory(tenant=tenant, daily_limit_cents=10_000, monthly_limit_cents=99_999)
    spend(tenant, "1.25", utc(2026, 3, 10, 9, 10), feature_tag="search")
    spend(tenant, 2, utc(2026, 3, 10, 10, 20))
    spend(tenant, 4, utc(2026, 3, 9, 23, 59), feature_tag="search")
    spend(tenant, 8, utc(2026, 3, 10, 11, 5), feature_tag="search")
    for hour in (utc(2026, 3, 9, 23), utc(2026, 3, 10, 9), utc(2026, 3, 10, 10)):
        snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=hour)
    at = utc(2026, 3, 10, 11, 30)
    from analytics.models import CostSnapshot

    assert CostSnapshot.objects.filter(status="complete", is_stale=False).count() == 3

    def raw(budget):
        return (
            budget_spend(budget=budget, start=utc(2026, 3, 10), end=at),
            budget_spend(budget=budget, start=utc(2026, 3, 1), end=at),
        )

    def read(budget):
        usage = budgets_usage(budget_ids=[budget.pk], at=at)[budget.pk]
        return usage.day_spend, usage.month_spend

    assert read(feature) == raw(feature) == (Decimal("9.25"), Decimal("13.25"))
    assert read(whole) == raw(whole) == (Decimal("11.25"), Decimal("15.25"))

    # when a late record lands in a snapshotted hour through ingest (which marks it stale)
    from analytics.models import FeatureTag

    FeatureTag.objects.create(tenant=tenant, tag="search", display_name="Search")
    with time_machine.travel(at, tick=False):
        response = api_client.post(
            "/api/v1/cost-records/",
            {
                "records": [
                    {
                        "model": "m",
                        "cost_cents": "0.5",
                        "feature_tag": "search",
                        "created_at": "2026-03-10T09:30:00Z",
                    }
                ]
            },
            format="json",
        )
    assert response.status_code == 201, response.content

    # then the snapshot path still adds up to the records
    assert read(feature) == raw(feature) == (Decimal("9.75"), Decimal("13.75"))
    assert read(whole) == raw(whole) == (Decimal("11.75"), Decimal("15.75"))


def test_the_admin_lists_the_reservations_holding_budget_now(client, staff_user, tenant, frozen):
    # given one holding, one settled by a record (not yet closed by the job), one released
    reserve(tenant, 1234, request_id="holding")
    reserve(tenant, 10, request_id="settled-one")
    spend(tenant, 3, NOW - timedelta(seconds=1), request_id="settled-one")
    released = reserve(tenant, 10, request_id="released-one").reservation
    reservation_release(tenant=tenant, reservation_id=released.pk)
    client.force_login(staff_user)

    # when
    everything = client.get("/admin/analytics/budgetreservation/")
    open_now = client.get("/admin/analytics/budgetreservation/?current_status=open")

    # then
    assert everything.status_code == open_now.status_code == 200
    assert b"holding" in open_now.content and b"$12.34" in open_now.content
    assert b"settled-one" not in open_now.content
    assert b"released-one" not in open_now.content
    assert b"settled-one" in everything.content


def test_the_hand_built_answers_render_as_their_serializers_do(tenant, frozen):
    # given a refused reserve, an allowed one with spend in cents and fractions, a release
    from analytics.api.renderers import MoneyJSONRenderer
    from analytics.api.reservation_serializers import (
        ReservationSerializer,
        ReserveResultSerializer,
    )
    from analytics.api.reservations import reservation_result, reserve_result
    from analytics.services.reservations import ReleasedReservation

    BudgetFactory(tenant=tenant, daily_limit_cents=100, monthly_limit_cents=900)
    hard_daily(tenant, 50, budget_type=BudgetType.USER, entity_id="u-1")
    spend(tenant, "12.345678", NOW - timedelta(hours=1), user_id="u-1")
    outcomes = [
        reserve(tenant, 45, request_id="a", user_id="u-1"),
        reserve(tenant, 30, request_id="b", user_id="u-1"),
        reserve(tenant, 30, request_id="b", user_id="u-1"),
    ]
    released = reservation_release(tenant=tenant, reservation_id=outcomes[1].reservation.pk)
    render = MoneyJSONRenderer().render

    # then each answer renders to the same bytes as its serializer's
    for outcome in outcomes:
        body = reserve_result(outcome)
        expires_at = outcome.reservation and outcome.reservation.expires_at
        assert render(body) == render(
            ReserveResultSerializer({**body, "expires_at": expires_at}).data
        )
    assert isinstance(released, ReleasedReservation)
    assert render(reservation_result(released)) == render(ReservationSerializer(released).data)
    assert [o.allowed for o in outcomes] == [False, True, True]
