"""Retried reserves: one open reservation per call, whatever the retries."""

from datetime import timedelta

import pytest
import time_machine

from analytics.models import BudgetReservation, BudgetType
from analytics.selectors.budgets import budgets_usage
from analytics.services.reservations import (
    ReservationRetryConflict,
    budget_reserve,
    reservation_release,
)
from tests.factories import BudgetFactory, CostRecordFactory, utc

pytestmark = pytest.mark.django_db

RESERVE = "/api/v1/budgets/reserve/"
NOW = utc(2026, 3, 10, 12)
Status = BudgetReservation.Status


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def reserve(tenant, amount, **fields):
    fields.setdefault("request_id", "call-1")
    return budget_reserve(
        tenant=tenant, amount_cents=amount, ttl_seconds=fields.pop("ttl", 600), **fields
    )


def test_a_retry_answers_the_open_reservation_and_holds_once(tenant, frozen):
    # given a hard 100-cent day and a reservation of 60 cents for call-1
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=100, hard_limit_enabled=True)
    first = reserve(tenant, 60, feature_tag="chat")

    # when the agent retries the same reserve (its answer was lost), twice
    second = reserve(tenant, 60, feature_tag="chat")
    third = reserve(tenant, 60, feature_tag="chat")

    # then both retries answer the first reservation, and 60 cents are held, not 180
    assert first.allowed and not first.replayed
    assert second.allowed and second.replayed and third.replayed
    assert second.reservation.pk == third.reservation.pk == first.reservation.pk
    assert second.reservation.expires_at == first.reservation.expires_at
    assert BudgetReservation.objects.count() == 1
    assert budgets_usage(budget_ids=[budget.pk], at=NOW)[budget.pk].reserved_cents == 60
    # and the checks of the retry show the others' holds, this reservation apart
    (check,) = second.checks
    assert (check.reserved_cents, check.remaining_cents) == (0, 40)


def test_a_retry_is_answered_even_when_the_budget_has_no_room_left_for_a_second_hold(
    tenant, frozen
):
    # given a reservation of the whole hard budget
    BudgetFactory(tenant=tenant, daily_limit_cents=100, hard_limit_enabled=True)
    first = reserve(tenant, 100)

    # when it is retried
    retry = reserve(tenant, 100)

    # then it is the same reservation, not a refusal
    assert retry.allowed and retry.replayed
    assert retry.reservation.pk == first.reservation.pk
    assert retry.refusals == []


@pytest.mark.parametrize(
    "change, field",
    [
        ({"amount": 61}, "amount_cents"),
        ({"feature_tag": "search"}, "feature_tag"),
        ({"user_id": "u-2"}, "user_id"),
        ({"run_id": "run-9"}, "run_id"),
    ],
)
def test_a_retry_that_differs_is_a_conflict_naming_the_field(tenant, frozen, change, field):
    # given
    reserve(tenant, 60, feature_tag="chat")
    asked = {"amount": 60, "feature_tag": "chat", **change}

    # when / then
    with pytest.raises(ReservationRetryConflict) as raised:
        reserve(tenant, asked.pop("amount"), **asked)
    assert raised.value.status_code == 409
    assert [error["field"] for error in raised.value.field_errors] == [field]
    assert BudgetReservation.objects.count() == 1


def test_a_released_call_may_reserve_again(tenant, frozen):
    first = reserve(tenant, 10).reservation
    reservation_release(tenant=tenant, reservation_id=first.pk)

    again = reserve(tenant, 10)

    assert again.allowed and not again.replayed
    assert again.reservation.pk != first.pk


def test_a_retry_after_the_ttl_makes_a_new_reservation_and_records_the_old_one_expired(
    tenant, frozen
):
    # given a reservation past its TTL, not yet closed by the job
    first = reserve(tenant, 10, ttl=60).reservation
    frozen.shift(timedelta(seconds=61))

    # when the call reserves again
    again = reserve(tenant, 10)

    # then it is a new reservation, and the old one is recorded expired
    assert not again.replayed and again.reservation.pk != first.pk
    first.refresh_from_db()
    assert (first.status, first.closed_at) == (Status.EXPIRED, NOW + timedelta(seconds=61))


def test_calls_of_one_run_are_held_apart_but_a_run_reserved_alone_is_one_call(tenant, frozen):
    # given two calls of run-1, each with its own request_id, and run-2 reserved as a whole
    one = reserve(tenant, 10, request_id="c-1", run_id="run-1")
    two = reserve(tenant, 20, request_id="c-2", run_id="run-1")
    whole = reserve(tenant, 30, request_id=None, run_id="run-2")

    # when run-2 is retried
    retry = reserve(tenant, 30, request_id=None, run_id="run-2")

    # then
    assert not (one.replayed or two.replayed or whole.replayed)
    assert one.reservation.pk != two.reservation.pk
    assert retry.replayed and retry.reservation.pk == whole.reservation.pk
    assert BudgetReservation.objects.count() == 3


def test_a_call_whose_records_arrived_is_settled_and_a_new_reserve_is_not_a_retry(tenant, frozen):
    # given call-1 reserved and its cost recorded
    first = reserve(tenant, 10).reservation
    CostRecordFactory(tenant=tenant, request_id="call-1", created_at=NOW)

    # when the id is reserved again
    again = reserve(tenant, 10)

    # then the first is recorded settled and the second is a reservation of its own
    first.refresh_from_db()
    assert first.status == Status.SETTLED
    assert not again.replayed and again.reservation.pk != first.pk


def test_the_endpoint_answers_a_retry_with_200_and_replayed(api_client, tenant, frozen):
    # given
    BudgetFactory(
        tenant=tenant,
        budget_type=BudgetType.USER,
        entity_id="u-1",
        daily_limit_cents=100,
        hard_limit_enabled=True,
    )
    body = {"amount_cents": 70, "user_id": "u-1", "request_id": "req-7"}

    # when
    created = api_client.post(RESERVE, body, format="json")
    retried = api_client.post(RESERVE, body, format="json")
    differs = api_client.post(RESERVE, {**body, "amount_cents": 71}, format="json")

    # then
    assert (created.status_code, created.json()["replayed"]) == (201, False)
    assert (retried.status_code, retried.json()["replayed"]) == (200, True)
    assert retried.json()["allowed"] is True
    assert retried.json()["reservation_id"] == created.json()["reservation_id"]
    assert retried.json()["expires_at"] == created.json()["expires_at"]
    assert retried.json()["budgets"][0]["remaining_cents"] == 30
    assert differs.status_code == 409
    assert differs.json()["error"] == "conflict"
    assert [e["field"] for e in differs.json()["field_errors"]] == ["amount_cents"]
    assert BudgetReservation.objects.count() == 1


def test_a_retried_plan_that_prices_differently_names_the_plan(api_client, tenant, frozen):
    plan = [{"skill": "llm_invoke", "params": {"prompt": "Summarise."}, "iterations": 2}]
    first = api_client.post(RESERVE, {"plan": plan, "request_id": "p-1"}, format="json")
    plan[0]["iterations"] = 5
    second = api_client.post(RESERVE, {"plan": plan, "request_id": "p-1"}, format="json")

    assert first.status_code == 201
    assert second.status_code == 409
    assert [e["field"] for e in second.json()["field_errors"]] == ["plan"]


def test_the_release_endpoint_answers_in_one_statement_and_404s_unknown_ids(
    api_client, tenant, frozen, django_assert_max_num_queries
):
    held = reserve(tenant, 10).reservation
    # authentication reads the key (and stamps a fresh key's first use); the release itself
    # is one statement, with no read before or after
    with django_assert_max_num_queries(3):
        response = api_client.post(f"/api/v1/budgets/reservations/{held.pk}/release/")
    assert response.status_code == 200
    assert response.json()["status"] == "released"
    too_big = api_client.post(f"/api/v1/budgets/reservations/{2**64}/release/")
    assert too_big.status_code == 404
    assert too_big.json()["error"] == "not_found"


# --- the key check made in the reserve and release statements ----------------------------------


def test_a_key_revoked_after_it_was_cached_is_refused_and_nothing_is_written(
    api_client, api_key, tenant, frozen
):
    # given a key this process has cached, and a reservation made with it
    from analytics.services.tenants import api_keys_revoke

    made = api_client.post(RESERVE, {"amount_cents": 5, "request_id": "a"}, format="json")
    assert made.status_code == 201

    # when the key is revoked
    api_keys_revoke(keys=type(api_key[0]).objects.filter(pk=api_key[0].pk))

    # then neither a reserve nor a release goes through, nor reveals a reservation
    reserve_again = api_client.post(RESERVE, {"amount_cents": 5, "request_id": "a"}, format="json")
    fresh = api_client.post(RESERVE, {"amount_cents": 5, "request_id": "b"}, format="json")
    release = api_client.post(
        f"/api/v1/budgets/reservations/{made.json()['reservation_id']}/release/"
    )
    assert reserve_again.status_code == fresh.status_code == release.status_code == 401
    assert "reservation_id" not in reserve_again.json()
    assert list(BudgetReservation.objects.values_list("request_id", "status")) == [("a", "open")]


def test_another_key_revoked_moves_the_generation_and_this_key_still_works(
    api_client, tenant, frozen
):
    # given this key cached by a first reserve, and a second key of the tenant
    from analytics.models import ApiKey
    from analytics.services.tenants import api_key_create, api_keys_revoke

    first = api_client.post(RESERVE, {"amount_cents": 5, "request_id": "a"}, format="json")
    other, _ = api_key_create(tenant=tenant, name="other")

    # when the other key is revoked, which moves the generation
    api_keys_revoke(keys=ApiKey.objects.filter(pk=other.pk))

    # then this key is looked up again and its reserve and release go through
    second = api_client.post(RESERVE, {"amount_cents": 5, "request_id": "b"}, format="json")
    api_keys_revoke(keys=ApiKey.objects.filter(pk=api_key_create(tenant=tenant)[0].pk))
    release = api_client.post(
        f"/api/v1/budgets/reservations/{first.json()['reservation_id']}/release/"
    )
    assert (first.status_code, second.status_code, release.status_code) == (201, 201, 200)
    assert release.json()["status"] == "released"


def test_a_retry_after_spend_filled_the_hard_budget_reports_it_past_the_limit(tenant, frozen):
    # given a held reservation of 60 of 100 cents, then 50 cents of other spend
    BudgetFactory(tenant=tenant, daily_limit_cents=100, hard_limit_enabled=True)
    first = reserve(tenant, 60)
    CostRecordFactory(tenant=tenant, cost_cents=50, created_at=NOW - timedelta(minutes=1))

    # when the call retries
    retry = reserve(tenant, 60)

    # then it still holds its reservation, reported past the limit, not refused
    assert retry.allowed and retry.replayed and retry.reservation.pk == first.reservation.pk
    (check,) = retry.checks
    assert check.state == "over_limit"
    assert check.reason.startswith("is past the hard daily limit of 100 cents")
    assert check.remaining_cents == -10
