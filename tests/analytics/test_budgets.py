from decimal import Decimal

import pytest
import time_machine

from analytics.models import Budget, BudgetType
from analytics.selectors.budgets import (
    budget_period_bounds,
    budget_period_status,
    budget_spend,
)
from tests.factories import BudgetFactory, CostRecordFactory, utc

pytestmark = pytest.mark.django_db

URL = "/api/v1/budgets/"


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


def spend(tenant, cents, at, **fields):
    return CostRecordFactory(tenant=tenant, cost_cents=Decimal(str(cents)), created_at=at, **fields)


# --- CRUD -------------------------------------------------------------------------------------


def test_create_returns_input_fields_with_defaults(api_client, tenant):
    # when
    response = api_client.post(
        URL, {"budget_type": "tenant", "daily_limit_cents": 5000}, format="json"
    )
    # then
    assert response.status_code == 201
    body = response.json()
    assert {key: body[key] for key in body if key not in ("id", "created_at", "updated_at")} == {
        "budget_type": "tenant",
        "entity_id": None,
        "daily_limit_cents": 5000,
        "monthly_limit_cents": None,
        "warn_threshold_pct": 80,
        "hard_limit_enabled": False,
        "is_active": True,
    }
    assert Budget.objects.get(pk=body["id"]).tenant == tenant


@pytest.mark.parametrize(
    "body, field, reason",
    [
        (
            {"budget_type": "tenant", "entity_id": "x", "daily_limit_cents": 1},
            "entity_id",
            "must be null for a tenant budget",
        ),
        (
            {"budget_type": "feature", "daily_limit_cents": 1},
            "entity_id",
            "is required for feature and user budgets",
        ),
        (
            {"budget_type": "user", "entity_id": None, "monthly_limit_cents": 1},
            "entity_id",
            "is required for feature and user budgets",
        ),
        (
            {"budget_type": "tenant"},
            "non_field_errors",
            "at least one of daily_limit_cents and monthly_limit_cents is required",
        ),
        ({"budget_type": "tenant", "daily_limit_cents": 0}, "daily_limit_cents", None),
        ({"budget_type": "tenant", "monthly_limit_cents": "x"}, "monthly_limit_cents", None),
        (
            {"budget_type": "tenant", "daily_limit_cents": 1, "warn_threshold_pct": 101},
            "warn_threshold_pct",
            None,
        ),
        (
            {"budget_type": "tenant", "daily_limit_cents": 1, "warn_threshold_pct": 0},
            "warn_threshold_pct",
            None,
        ),
        ({"budget_type": "team", "daily_limit_cents": 1}, "budget_type", None),
        ({"budget_type": "feature", "entity_id": "", "daily_limit_cents": 1}, "entity_id", None),
        ({"budget_type": "tenant", "daily_limit_cents": 1, "spent": 3}, "spent", None),
    ],
)
def test_invalid_budget_is_400_naming_the_field(api_client, body, field, reason):
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    errors = field_errors(response)
    assert field in errors
    if reason is not None:
        assert errors[field] == reason
    assert Budget.objects.count() == 0


def test_duplicate_scope_is_400_on_entity_id(api_client, tenant, other_tenant):
    # given
    BudgetFactory(tenant=tenant, budget_type=BudgetType.TENANT)
    BudgetFactory(tenant=tenant, budget_type=BudgetType.FEATURE, entity_id="chat")
    BudgetFactory(tenant=other_tenant, budget_type=BudgetType.USER, entity_id="u-1")
    # when
    tenant_again = api_client.post(
        URL, {"budget_type": "tenant", "daily_limit_cents": 9}, format="json"
    )
    feature_again = api_client.post(
        URL, {"budget_type": "feature", "entity_id": "chat", "daily_limit_cents": 9}, format="json"
    )
    user_named_chat = api_client.post(
        URL, {"budget_type": "user", "entity_id": "chat", "daily_limit_cents": 9}, format="json"
    )
    other_tenants_scope = api_client.post(
        URL, {"budget_type": "user", "entity_id": "u-1", "daily_limit_cents": 9}, format="json"
    )
    # then
    assert tenant_again.status_code == feature_again.status_code == 400
    assert field_errors(tenant_again) == {"entity_id": "a budget for this scope already exists"}
    assert "entity_id" in field_errors(feature_again)
    assert user_named_chat.status_code == other_tenants_scope.status_code == 201


def test_partial_update_is_validated_against_the_stored_budget(api_client, tenant):
    # given
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=100, monthly_limit_cents=None)
    BudgetFactory(tenant=tenant, budget_type=BudgetType.USER, entity_id="u-1")
    url = f"{URL}{budget.id}/"
    # when
    no_limit = api_client.patch(url, {"daily_limit_cents": None}, format="json")
    collide = api_client.patch(url, {"budget_type": "user", "entity_id": "u-1"}, format="json")
    fine = api_client.patch(
        url, {"monthly_limit_cents": 900, "hard_limit_enabled": True}, format="json"
    )
    # then
    assert no_limit.status_code == 400
    assert "non_field_errors" in field_errors(no_limit)
    assert collide.status_code == 400
    assert "entity_id" in field_errors(collide)
    assert fine.status_code == 200
    budget.refresh_from_db()
    assert (budget.budget_type, budget.daily_limit_cents, budget.monthly_limit_cents) == (
        "tenant",
        100,
        900,
    )
    assert budget.hard_limit_enabled is True


def test_put_replaces_and_delete_removes(api_client, tenant):
    budget = BudgetFactory(tenant=tenant)
    put = api_client.put(
        f"{URL}{budget.id}/",
        {"budget_type": "feature", "entity_id": "chat", "monthly_limit_cents": 10},
        format="json",
    )
    assert put.status_code == 200
    assert put.json()["entity_id"] == "chat"
    assert api_client.delete(f"{URL}{budget.id}/").status_code == 204
    assert not Budget.objects.filter(pk=budget.pk).exists()


def test_another_tenants_budget_is_404_for_every_verb(api_client, other_tenant):
    # given
    theirs = BudgetFactory(tenant=other_tenant, daily_limit_cents=7)
    url = f"{URL}{theirs.id}/"
    # when
    responses = [
        api_client.get(url),
        api_client.get(f"{url}status/"),
        api_client.put(url, {"budget_type": "tenant", "daily_limit_cents": 1}, format="json"),
        api_client.patch(url, {"daily_limit_cents": 1}, format="json"),
        api_client.delete(url),
    ]
    # then
    assert [response.status_code for response in responses] == [404] * 5
    theirs.refresh_from_db()
    assert theirs.daily_limit_cents == 7


def test_list_is_ordered_by_id_with_a_fixed_query_count(
    api_client, tenant, other_tenant, django_assert_num_queries
):
    # given
    budgets = [
        BudgetFactory(tenant=tenant, budget_type=BudgetType.USER, entity_id=f"u-{i}")
        for i in range(12)
    ]
    BudgetFactory(tenant=other_tenant)
    api_client.get(URL)
    # when
    with django_assert_num_queries(2):
        response = api_client.get(URL)
    # then
    assert [item["id"] for item in response.json()["results"]] == [b.id for b in budgets]


# --- status and ETA ---------------------------------------------------------------------------


def test_spec_example_daily_eta_lands_the_same_day(tenant):
    # given: daily limit 1000, 300 ¢ spent by 06:00
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000)
    spend(tenant, 100, utc(2026, 3, 2, 1))
    spend(tenant, 200, utc(2026, 3, 2, 5, 59))
    # when
    status = budget_period_status(budget=budget, period="daily", at=utc(2026, 3, 2, 6))
    # then
    assert status == {
        "spend_cents": Decimal(300),
        "limit_cents": 1000,
        "usage_pct": 30.0,
        "eta_exhausted_at": utc(2026, 3, 2, 20),
    }


def test_spec_example_daily_eta_after_midnight_is_null(tenant):
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000)
    spend(tenant, 100, utc(2026, 3, 2, 3))
    status = budget_period_status(budget=budget, period="daily", at=utc(2026, 3, 2, 12))
    assert status["eta_exhausted_at"] is None
    assert status["usage_pct"] == 10.0


def test_spec_example_monthly_eta(tenant):
    # given: monthly limit 10 000, 4000 ¢ spent in March by the 11th
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=None, monthly_limit_cents=10_000)
    spend(tenant, 4000, utc(2026, 3, 5))
    spend(tenant, 999, utc(2026, 2, 28, 23))  # previous month
    # when
    status = budget_period_status(budget=budget, period="monthly", at=utc(2026, 3, 11))
    # then
    assert status["spend_cents"] == Decimal(4000)
    assert status["eta_exhausted_at"] == utc(2026, 3, 26)
    assert budget_period_status(budget=budget, period="daily", at=utc(2026, 3, 11)) is None


def test_eta_is_truncated_to_the_second(tenant):
    # given
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000)
    spend(tenant, 333, utc(2026, 3, 2, 1))
    # when: elapsed 3 h, remaining 667 → 10 800 s × 667 / 333 = 21 632.43… s
    status = budget_period_status(budget=budget, period="daily", at=utc(2026, 3, 2, 3))
    # then: 03:00 + 6:00:32.43 → 09:00:32
    assert status["eta_exhausted_at"] == utc(2026, 3, 2, 9, 0, 32)


def test_exhausted_budget_reports_the_record_where_the_running_sum_reached_the_limit(tenant):
    # given: two records at the same instant; the lower id is counted first
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=100)
    spend(tenant, 60, utc(2026, 3, 2, 8))
    spend(tenant, 30, utc(2026, 3, 2, 9))
    spend(tenant, 10, utc(2026, 3, 2, 9, 30))  # running sum reaches exactly 100 here
    spend(tenant, 50, utc(2026, 3, 2, 9, 30))
    spend(tenant, 50, utc(2026, 3, 2, 11))
    # when
    status = budget_period_status(budget=budget, period="daily", at=utc(2026, 3, 2, 12))
    # then
    assert status["spend_cents"] == Decimal(200)
    assert status["usage_pct"] == 200.0
    assert status["eta_exhausted_at"] == utc(2026, 3, 2, 9, 30)


@pytest.mark.parametrize(
    "period, at",
    [("daily", utc(2026, 3, 2, 0, 59, 59)), ("monthly", utc(2026, 3, 3, 23, 59))],
)
def test_no_eta_before_enough_of_the_period_has_elapsed(tenant, period, at):
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=10_000, monthly_limit_cents=100_000)
    spend(tenant, 1, utc(2026, 3, 2, 0, 1))
    assert budget_period_status(budget=budget, period=period, at=at)["eta_exhausted_at"] is None


def test_no_spend_means_no_eta(tenant):
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000)
    status = budget_period_status(budget=budget, period="daily", at=utc(2026, 3, 2, 12))
    assert status == {
        "spend_cents": Decimal(0),
        "limit_cents": 1000,
        "usage_pct": 0.0,
        "eta_exhausted_at": None,
    }


def test_spend_is_limited_to_the_budget_scope_and_window(tenant, other_tenant):
    # given
    feature = BudgetFactory(tenant=tenant, budget_type=BudgetType.FEATURE, entity_id="chat")
    user = BudgetFactory(tenant=tenant, budget_type=BudgetType.USER, entity_id="u-1")
    whole = BudgetFactory(tenant=tenant)
    spend(tenant, "1.25", utc(2026, 3, 2, 1), feature_tag="chat", user_id="u-2")
    spend(tenant, 2, utc(2026, 3, 2, 2), feature_tag="search", user_id="u-1")
    spend(tenant, 4, utc(2026, 3, 2, 23, 59))  # at or after `end`
    spend(other_tenant, 8, utc(2026, 3, 2, 1), feature_tag="chat", user_id="u-1")
    start, end = utc(2026, 3, 2), utc(2026, 3, 2, 12)
    # then
    assert budget_spend(budget=feature, start=start, end=end) == Decimal("1.25")
    assert budget_spend(budget=user, start=start, end=end) == Decimal(2)
    assert budget_spend(budget=whole, start=start, end=end) == Decimal("3.25")


def test_period_bounds_are_utc_day_and_month():
    assert budget_period_bounds(period="daily", at=utc(2026, 12, 31, 23)) == (
        utc(2026, 12, 31),
        utc(2027, 1, 1),
    )
    assert budget_period_bounds(period="monthly", at=utc(2026, 2, 14)) == (
        utc(2026, 2, 1),
        utc(2026, 3, 1),
    )


def test_status_endpoint_renders_both_periods(api_client, tenant):
    # given
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000, monthly_limit_cents=3)
    spend(tenant, "2.5", utc(2026, 3, 2, 1))
    spend(tenant, "0.5", utc(2026, 3, 2, 5))
    spend(tenant, 1, utc(2026, 3, 2, 6))  # not before `now`
    # when
    with time_machine.travel(utc(2026, 3, 2, 6), tick=False):
        response = api_client.get(f"{URL}{budget.id}/status/")
    # then
    assert response.status_code == 200
    assert response.json() == {
        "daily": {
            "spend_cents": 3,
            "reserved_cents": 0,
            "available_cents": 997,
            "limit_cents": 1000,
            "usage_pct": 0.3,
            "eta_exhausted_at": None,
            "unpriced_records": 0,
        },
        "monthly": {
            "spend_cents": 3,
            "reserved_cents": 0,
            "available_cents": 0,
            "limit_cents": 3,
            "usage_pct": 100.0,
            "eta_exhausted_at": "2026-03-02T05:00:00Z",
            "unpriced_records": 0,
        },
    }


# --- admin ------------------------------------------------------------------------------------


def test_admin_pages_render_for_records_tags_and_budgets(client, staff_user, tenant):
    # given
    client.force_login(staff_user)
    CostRecordFactory(tenant=tenant, model="model-a")
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=100)
    spend(tenant, 50, utc(2026, 3, 2, 1))
    # when
    with time_machine.travel(utc(2026, 3, 2, 6), tick=False):
        pages = [
            client.get("/admin/analytics/costrecord/"),
            client.get("/admin/analytics/costrecord/?model=model-a"),
            client.get("/admin/analytics/runrecord/"),
            client.get("/admin/analytics/featuretag/"),
            client.get("/admin/analytics/budget/"),
            client.get(f"/admin/analytics/budget/{budget.id}/change/"),
        ]
    # then
    assert [page.status_code for page in pages] == [200] * 6
    assert b"model-a" in pages[1].content
    assert b"daily: $0.50 of $1.00 (50.0%)" in pages[5].content  # cents shown as dollars


def test_admin_cannot_add_or_edit_cost_records(client, staff_user, tenant):
    client.force_login(staff_user)
    record = CostRecordFactory(tenant=tenant)
    assert client.get("/admin/analytics/costrecord/add/").status_code == 403
    response = client.post(f"/admin/analytics/costrecord/{record.id}/change/", {"model": "edited"})
    assert response.status_code == 403
    record.refresh_from_db()
    assert record.model != "edited"


def test_admin_rejects_a_duplicate_budget_scope_with_a_form_error(client, staff_user, tenant):
    # given
    client.force_login(staff_user)
    BudgetFactory(tenant=tenant)
    # when
    response = client.post(
        "/admin/analytics/budget/add/",
        {
            "tenant": tenant.id,
            "budget_type": "tenant",
            "entity_id": "",
            "daily_limit_cents": "10",
            "monthly_limit_cents": "",
            "warn_threshold_pct": "80",
            "is_active": "on",
        },
    )
    # then
    assert response.status_code == 200  # the form is shown again with the error
    assert Budget.objects.filter(tenant=tenant).count() == 1
