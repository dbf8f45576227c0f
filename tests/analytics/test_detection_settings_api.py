"""Detection settings and planned activities through the API, and what they do to detection."""

from datetime import date, timedelta

import pytest
import time_machine
from django.conf import settings

from analytics.models import DetectionSettings, Incident, PlannedActivity
from tests.analytics.factories import PlannedActivityFactory, outlier_history
from tests.factories import utc

SETTINGS_URL = "/api/v1/detection-settings/"
PLANS_URL = "/api/v1/planned-activities/"
DETECT_URL = "/api/v1/anomalies/detect/"
NOW = utc(2026, 3, 16, 12)
SPIKE_DAY = date(2026, 3, 2)
DAY_AFTER = utc(2026, 3, 3, 10)
DEFAULTS = settings.ANALYTICS_DETECTION_DEFAULTS
SETTING_KEYS = set(DEFAULTS)
PLAN_KEYS = {
    "id",
    "starts_on",
    "ends_on",
    "entity_type",
    "entity_id",
    "expected_factor",
    "note",
    "created_at",
    "created_by",
}


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def plan_url(plan) -> str:
    return f"{PLANS_URL}{plan.pk}/"


def values(body: dict) -> dict:
    return {name: body[name] for name in SETTING_KEYS}


# --- Detection settings ------------------------------------------------------------------


def test_settings_start_as_the_project_defaults(api_client):
    # when
    response = api_client.get(SETTINGS_URL)

    # then
    assert response.status_code == 200
    body = response.json()
    assert set(body) == SETTING_KEYS | {"defaults", "overridden", "updated_at", "updated_by"}
    assert values(body) == DEFAULTS
    assert body["defaults"] == DEFAULTS
    assert (body["overridden"], body["updated_at"], body["updated_by"]) == ([], None, None)


def test_patch_changes_only_the_given_settings(api_key, api_client, frozen):
    # given one stored override
    api_client.patch(SETTINGS_URL, {"suppression_days": 30}, format="json")

    # when another setting is patched
    response = api_client.patch(
        SETTINGS_URL,
        {"z_threshold": 5, "monitored_dimensions": ["model", "user"]},
        format="json",
    )

    # then both overrides hold and the rest are the defaults
    assert response.status_code == 200
    body = response.json()
    assert values(body) == {
        **DEFAULTS,
        "suppression_days": 30,
        "z_threshold": 5.0,
        "monitored_dimensions": ["model", "user"],
    }
    assert body["defaults"] == DEFAULTS
    assert body["overridden"] == ["z_threshold", "monitored_dimensions", "suppression_days"]
    assert body["updated_by"] == f"api-key:{api_key[0].prefix}"
    assert body["updated_at"] == "2026-03-16T12:00:00Z"
    assert api_client.get(SETTINGS_URL).json() == body


def test_patch_with_null_resets_a_setting_to_its_default(tenant, api_client):
    # given
    api_client.patch(SETTINGS_URL, {"z_threshold": 5, "min_history_days": 14}, format="json")

    # when
    body = api_client.patch(SETTINGS_URL, {"z_threshold": None}, format="json").json()

    # then
    assert (body["z_threshold"], body["min_history_days"]) == (DEFAULTS["z_threshold"], 14)
    assert body["overridden"] == ["min_history_days"]
    stored = DetectionSettings.objects.get(tenant=tenant)
    assert (stored.z_threshold, stored.min_history_days) == (None, 14)


def test_put_replaces_every_setting_and_omitted_ones_go_back_to_default(tenant, api_client):
    # given two overrides
    api_client.patch(SETTINGS_URL, {"z_threshold": 5, "suppression_days": 30}, format="json")

    # when a PUT names one other setting and sends one as null
    response = api_client.put(
        SETTINGS_URL,
        {"spike_min_impact_cents": 500, "suppression_days": None},
        format="json",
    )

    # then only the PUT's value is an override
    assert response.status_code == 200
    body = response.json()
    assert values(body) == {**DEFAULTS, "spike_min_impact_cents": 500.0}
    assert body["overridden"] == ["spike_min_impact_cents"]
    assert DetectionSettings.objects.filter(tenant=tenant).count() == 1


def test_an_empty_dimension_list_is_an_override(api_client):
    body = api_client.patch(SETTINGS_URL, {"monitored_dimensions": []}, format="json").json()

    assert body["monitored_dimensions"] == []
    assert body["overridden"] == ["monitored_dimensions"]


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"spike_min_impact_cents": -1}, "spike_min_impact_cents"),
        ({"drift_min_impact_pct": -0.5}, "drift_min_impact_pct"),
        ({"outlier_min_impact_cents": "lots"}, "outlier_min_impact_cents"),
        ({"z_threshold": 0.4}, "z_threshold"),
        ({"z_threshold": 20.5}, "z_threshold"),
        ({"min_history_days": 6}, "min_history_days"),
        ({"min_history_days": 57}, "min_history_days"),
        ({"min_history_days": 7.5}, "min_history_days"),
        ({"suppression_days": -1}, "suppression_days"),
        ({"suppression_days": 366}, "suppression_days"),
        ({"monitored_dimensions": ["user", "user"]}, "monitored_dimensions"),
        ({"monitored_dimensions": ["team"]}, "monitored_dimensions"),
        ({"monitored_dimensions": "user"}, "monitored_dimensions"),
        ({"budget_min_impact_cents": 1}, "budget_min_impact_cents"),
    ],
)
def test_bad_settings_are_400_naming_the_field(tenant, api_client, method, payload, field):
    # given a stored override
    api_client.patch(SETTINGS_URL, {"z_threshold": 5}, format="json")

    # when
    response = getattr(api_client, method)(SETTINGS_URL, payload, format="json")

    # then nothing changed
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert [error["field"] for error in body["field_errors"]] == [field]
    assert api_client.get(SETTINGS_URL).json()["overridden"] == ["z_threshold"]


@pytest.mark.parametrize(
    "payload",
    [
        {"z_threshold": 0.5, "min_history_days": 56, "suppression_days": 365},
        {"z_threshold": 20, "min_history_days": 7, "suppression_days": 0},
        {"spike_min_impact_cents": 0, "outlier_min_impact_pct": 0},
    ],
)
def test_range_ends_are_accepted(api_client, payload):
    response = api_client.patch(SETTINGS_URL, payload, format="json")

    assert response.status_code == 200
    assert {name: response.json()[name] for name in payload} == payload


def test_settings_are_per_tenant(tenant, other_tenant, api_client, other_client):
    # given
    api_client.put(SETTINGS_URL, {"z_threshold": 5}, format="json")

    # when
    theirs = other_client.get(SETTINGS_URL).json()

    # then
    assert values(theirs) == DEFAULTS
    assert theirs["overridden"] == []
    assert not DetectionSettings.objects.filter(tenant=other_tenant).exists()


def test_a_raised_money_floor_keeps_the_next_run_from_opening_an_incident(tenant, api_client):
    # given data whose outlier day opens an incident of about 20,000 cents impact
    outlier_history(tenant, SPIKE_DAY)
    with time_machine.travel(DAY_AFTER, tick=False):
        before = api_client.post(DETECT_URL, {"dry_run": True}, format="json").json()
    assert [i["kind"] for i in before["incidents"]] == ["outlier"]
    assert before["incidents"][0]["impact_cents"] < 50000

    # when the outlier floor is raised above that impact and detection runs
    api_client.patch(SETTINGS_URL, {"outlier_min_impact_cents": 50000}, format="json")
    with time_machine.travel(DAY_AFTER, tick=False):
        after = api_client.post(DETECT_URL, {}, format="json").json()

    # then nothing is opened
    assert (after["opened"], after["incidents"]) == (0, [])
    assert not Incident.objects.exists()


def test_a_floor_reset_to_default_opens_the_incident_again(tenant, api_client):
    # given a raised floor that kept the outlier day quiet
    outlier_history(tenant, SPIKE_DAY)
    api_client.patch(SETTINGS_URL, {"outlier_min_impact_cents": 50000}, format="json")
    with time_machine.travel(DAY_AFTER, tick=False):
        api_client.post(DETECT_URL, {}, format="json")

    # when the floor goes back to its default and the day is detected again
    api_client.patch(SETTINGS_URL, {"outlier_min_impact_cents": None}, format="json")
    with time_machine.travel(DAY_AFTER, tick=False):
        body = api_client.post(DETECT_URL, {}, format="json").json()

    # then
    assert body["opened"] == 1
    assert Incident.objects.filter(tenant=tenant).count() == 1


# --- Planned activities ------------------------------------------------------------------


def test_create_a_plan_for_the_tenant(tenant, api_key, api_client, frozen):
    # when
    response = api_client.post(
        PLANS_URL,
        {"starts_on": "2026-03-20", "ends_on": "2026-03-22", "expected_factor": 2.5},
        format="json",
    )

    # then it covers the whole tenant and records who planned it
    assert response.status_code == 201
    body = response.json()
    assert set(body) == PLAN_KEYS
    assert (body["entity_type"], body["entity_id"], body["note"]) == ("tenant", None, "")
    assert body["expected_factor"] == 2.5
    assert body["created_by"] == f"api-key:{api_key[0].prefix}"
    assert body["created_at"] == "2026-03-16T12:00:00Z"
    plan = PlannedActivity.objects.get(pk=body["id"])
    assert (plan.tenant_id, plan.starts_on) == (tenant.pk, date(2026, 3, 20))


def test_create_a_plan_for_one_feature(api_client):
    response = api_client.post(
        PLANS_URL,
        {
            "starts_on": "2026-03-20",
            "ends_on": "2026-03-20",
            "entity_type": "feature",
            "entity_id": "search",
            "expected_factor": 1000,
            "note": "reindex",
        },
        format="json",
    )

    assert response.status_code == 201
    assert (response.json()["entity_type"], response.json()["entity_id"]) == ("feature", "search")


VALID_PLAN = {"starts_on": "2026-03-20", "ends_on": "2026-03-22", "expected_factor": 2}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ends_on": "2026-03-19"}, "ends_on"),
        ({"entity_id": "u1"}, "entity_id"),
        ({"entity_type": "user"}, "entity_id"),
        ({"entity_type": "user", "entity_id": ""}, "entity_id"),
        ({"entity_type": "team", "entity_id": "t"}, "entity_type"),
        ({"expected_factor": 0}, "expected_factor"),
        ({"expected_factor": -2}, "expected_factor"),
        ({"expected_factor": 1000.5}, "expected_factor"),
        ({"starts_on": "20/03/2026"}, "starts_on"),
        ({"starts_on": None}, "starts_on"),
        ({"created_by": "someone"}, "created_by"),
    ],
)
def test_bad_plans_are_400_naming_the_field(api_client, changes, field):
    # when
    response = api_client.post(PLANS_URL, {**VALID_PLAN, **changes}, format="json")

    # then
    assert response.status_code == 400
    assert [error["field"] for error in response.json()["field_errors"]] == [field]
    assert not PlannedActivity.objects.exists()


def test_plan_needs_a_window_and_a_factor(api_client):
    response = api_client.post(PLANS_URL, {}, format="json")

    assert response.status_code == 400
    assert {error["field"] for error in response.json()["field_errors"]} == {
        "starts_on",
        "ends_on",
        "expected_factor",
    }


def test_list_and_read_the_tenants_plans_latest_first(tenant, other_tenant, api_client):
    # given
    earlier = PlannedActivityFactory(tenant=tenant, starts_on=date(2026, 3, 1))
    later = PlannedActivityFactory(
        tenant=tenant, starts_on=date(2026, 3, 5), ends_on=date(2026, 3, 9)
    )
    PlannedActivityFactory(tenant=other_tenant)

    # when
    listed = api_client.get(PLANS_URL).json()
    detail = api_client.get(plan_url(earlier)).json()

    # then
    assert set(listed) == {"next", "previous", "results"}
    assert [item["id"] for item in listed["results"]] == [later.pk, earlier.pk]
    assert set(detail) == PLAN_KEYS
    assert (detail["starts_on"], detail["ends_on"]) == ("2026-03-01", "2026-03-07")


def test_plan_list_query_count_does_not_grow_with_rows(
    tenant, api_client, django_assert_num_queries
):
    # given a warm key (its last_used_at is fresh, so auth is one query)
    api_client.get(PLANS_URL)
    PlannedActivityFactory.create_batch(3, tenant=tenant)

    # then: authenticate, read one page
    with django_assert_num_queries(2):
        api_client.get(PLANS_URL)
    PlannedActivityFactory.create_batch(10, tenant=tenant)
    with django_assert_num_queries(2):
        response = api_client.get(PLANS_URL, {"page_size": "5"})
    assert len(response.json()["results"]) == 5


def test_patch_changes_only_the_given_plan_fields(tenant, api_client):
    # given a plan for a user
    plan = PlannedActivityFactory(tenant=tenant, entity_type="user", entity_id="u1")

    # when
    response = api_client.patch(
        plan_url(plan), {"expected_factor": 4, "note": "bigger launch"}, format="json"
    )

    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["expected_factor"], body["note"]) == (4.0, "bigger launch")
    assert (body["entity_type"], body["entity_id"], body["starts_on"]) == (
        "user",
        "u1",
        "2026-03-01",
    )


def test_patch_checks_the_plan_as_it_would_be_stored(tenant, api_client):
    # given a plan of 1 ... 7 March for the tenant
    plan = PlannedActivityFactory(tenant=tenant)

    # when a start after its end, or a user without an id, is patched in
    late_start = api_client.patch(plan_url(plan), {"starts_on": "2026-03-08"}, format="json")
    no_user = api_client.patch(plan_url(plan), {"entity_type": "user"}, format="json")
    switched = api_client.patch(
        plan_url(plan), {"entity_type": "model", "entity_id": "gpt-4o"}, format="json"
    )

    # then the bad ones are refused and the good one is stored
    assert late_start.status_code == no_user.status_code == 400
    assert late_start.json()["field_errors"][0]["field"] == "ends_on"
    assert no_user.json()["field_errors"][0]["field"] == "entity_id"
    assert switched.status_code == 200
    plan.refresh_from_db()
    assert (plan.starts_on, plan.entity_type, plan.entity_id) == (
        date(2026, 3, 1),
        "model",
        "gpt-4o",
    )


def test_put_is_not_allowed_on_a_plan(tenant, api_client):
    plan = PlannedActivityFactory(tenant=tenant)

    response = api_client.put(plan_url(plan), VALID_PLAN, format="json")

    assert response.status_code == 405


def test_delete_a_plan(tenant, api_client):
    plan = PlannedActivityFactory(tenant=tenant)

    response = api_client.delete(plan_url(plan))

    assert response.status_code == 204
    assert not PlannedActivity.objects.filter(pk=plan.pk).exists()


def test_other_tenants_plan_is_404_on_every_verb(tenant, api_client, other_client):
    # given a plan of `tenant`
    plan = PlannedActivityFactory(tenant=tenant, expected_factor=2.0)

    # then the other tenant can neither list nor touch it
    assert other_client.get(PLANS_URL).json()["results"] == []
    for response in (
        other_client.get(plan_url(plan)),
        other_client.patch(plan_url(plan), {"expected_factor": 9}, format="json"),
        other_client.delete(plan_url(plan)),
    ):
        assert response.status_code == 404
        assert response.json()["error"] == "not_found"
    plan.refresh_from_db()
    assert plan.expected_factor == 2.0


def test_a_plan_covering_the_spike_keeps_the_next_run_quiet(tenant, api_client):
    # given the outlier day, and a plan saying spend triples that day
    outlier_history(tenant, SPIKE_DAY)
    created = api_client.post(
        PLANS_URL,
        {"starts_on": "2026-03-02", "ends_on": "2026-03-02", "expected_factor": 3},
        format="json",
    )
    assert created.status_code == 201

    # when
    with time_machine.travel(DAY_AFTER, tick=False):
        body = api_client.post(DETECT_URL, {}, format="json").json()

    # then no incident is opened for the planned spend
    assert (body["opened"], body["incidents"]) == (0, [])

    # and without the plan the same data would open one
    api_client.delete(f"{PLANS_URL}{created.json()['id']}/")
    with time_machine.travel(DAY_AFTER + timedelta(hours=1), tick=False):
        again = api_client.post(DETECT_URL, {"dry_run": True}, format="json").json()
    assert again["opened"] == 1


def test_a_plan_created_outside_the_api_was_created_by_nobody(tenant, api_client):
    # given
    PlannedActivityFactory(tenant=tenant, created_by="")
    # when
    (plan,) = api_client.get(PLANS_URL).json()["results"]
    # then
    assert plan["created_by"] is None
