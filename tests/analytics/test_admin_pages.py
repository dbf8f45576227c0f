"""Every page of the console renders for a staff user on a fresh install: empty states, no
errors; the console is branded costwise and opens on the overview; money is in dollars."""

from datetime import date
from decimal import Decimal
from html import escape

import pytest
import time_machine
from django.contrib import admin
from django.urls import reverse

from analytics.admin.display import cost_records_url, day_bounds, json_table, money
from tests.analytics.factories import user_spike_incident
from tests.factories import CostRecordFactory, TenantFactory, utc

pytestmark = pytest.mark.django_db


def registered_admins():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def admin_url(model, view: str, *args) -> str:
    opts = model._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{view}", args=args)


@pytest.mark.parametrize(
    "model", [model for model, _ in registered_admins()], ids=lambda model: model._meta.label
)
def test_every_list_add_and_change_page_renders_without_tenant_data(admin_client, model):
    # given a fresh install: migrations only, no tenant, no records
    model_admin = admin.site._registry[model]

    # when the operator opens the list
    changelist = admin_client.get(admin_url(model, "changelist"))

    # then it renders (an empty list, or the rows the migrations created)
    assert changelist.status_code == 200, model._meta.label
    # the add page renders, or is refused on purpose (records come from the API or jobs)
    add = admin_client.get(admin_url(model, "add"))
    assert add.status_code in (200, 403), model._meta.label
    assert (add.status_code == 200) == model_admin.has_add_permission(changelist.wsgi_request)
    # and the detail page of any row the migrations created renders too
    first = model._default_manager.order_by("pk").first()
    if first is not None:
        assert admin_client.get(admin_url(model, "change", first.pk)).status_code == 200


def test_overview_without_tenants_says_how_to_start(admin_client):
    # when
    response = admin_client.get(reverse("admin:index"))

    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="overview-empty"' in html and "seed_demo" in html
    # the console's models are still listed below it
    assert 'class="app-analytics module' in html


def test_overview_of_a_tenant_without_records_shows_empty_panels(admin_client):
    # given a tenant that has sent nothing yet
    TenantFactory(slug="quiet", name="Quiet Ltd")

    # when
    response = admin_client.get(reverse("admin:index"))

    # then every panel says it has nothing, and nothing fails
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="overview-no-spend"' in html
    assert "No open incidents." in html
    assert "No active budgets." in html
    assert html.count("None above its baseline.") == 3
    assert 'id="card-today"' in html and "$0.00" in html


def test_console_is_branded_and_view_site_leads_to_the_overview(admin_client, client):
    # when
    html = admin_client.get(reverse("admin:index")).content.decode()

    # then
    assert "<title>Overview | costwise console</title>" in html
    assert '<a href="/admin/">costwise</a>' in html
    assert '<a href="/admin/">View site</a>' in html
    assert "Django administration" not in html
    # and / opens the console
    assert client.get("/").headers["Location"] == "/admin/"


def test_cost_records_are_listed_in_dollars(admin_client):
    # given a record of 2.5 cents and one of a hundredth of a cent
    tenant = TenantFactory()
    CostRecordFactory(tenant=tenant, cost_cents=Decimal("2.5"), created_at=utc(2026, 3, 1))
    CostRecordFactory(tenant=tenant, cost_cents=Decimal("0.01"), created_at=utc(2026, 3, 2))

    # when
    html = admin_client.get(reverse("admin:analytics_costrecord_changelist")).content.decode()

    # then
    assert "$0.025" in html and "$0.0001" in html


@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        (None, "—"),
        (0, "$0.00"),
        (4210, "$42.10"),
        (123456789, "$1,234,567.89"),
        (42, "$0.42"),
        (Decimal("2.5"), "$0.025"),
        (Decimal("1.234"), "$0.0123"),
        (Decimal("0.0005"), "$0.000005"),
        (Decimal("0.00004"), "$0.00"),  # below a micro-dollar
        (-5, "-$0.05"),
        (float("nan"), "—"),
    ],
)
def test_money_picks_a_precision_that_suits_the_amount(cents, shown):
    assert money(cents) == shown


def test_json_table_shows_objects_lists_and_cents_readably():
    # given
    metadata = {
        "impact_cents": 985.863,
        "z_score": 4.1524,
        "window": ["2026-03-01", "2026-03-02"],
        "top": [{"key": "u1", "cents": 120}, {"key": "u2", "share": 0.2}],
        "note": "<script>",
    }

    # when
    html = str(json_table(metadata))

    # then
    assert '<th scope="row">impact_cents</th><td>$9.86</td>' in html
    assert "<td>2026-03-01, 2026-03-02</td>" in html
    assert "<th>key</th><th>cents</th><th>share</th>" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
    assert json_table({}) == "—"


def test_drill_down_link_lists_the_records_of_one_scope_and_window(
    admin_client, tenant, other_tenant
):
    # given u1's records inside and outside the window, another user's, another tenant's
    inside = CostRecordFactory(tenant=tenant, user_id="u1", created_at=utc(2026, 3, 10, 9))
    CostRecordFactory(tenant=tenant, user_id="u1", created_at=utc(2026, 3, 12, 9))
    CostRecordFactory(tenant=tenant, user_id="u2", created_at=utc(2026, 3, 10, 9))
    CostRecordFactory(tenant=other_tenant, user_id="u1", created_at=utc(2026, 3, 10, 9))
    start, end = day_bounds(date(2026, 3, 10), date(2026, 3, 11))

    # when the operator follows a root cause's link
    url = cost_records_url(
        tenant_id=tenant.pk, start=start, end=end, entity_type="user", entity_id="u1"
    )
    response = admin_client.get(url)

    # then only that record is listed, and the filters say what the list shows
    assert response.status_code == 200
    assert [record.pk for record in response.context["cl"].result_list] == [inside.pk]
    html = response.content.decode()
    assert "2026-03-10 to 2026-03-12 (UTC, end excluded)" in html
    assert "By user" in html  # the user filter is shown, with u1 selected


def test_bad_drill_down_parameter_is_not_an_error_page(admin_client):
    # when
    response = admin_client.get(
        reverse("admin:analytics_costrecord_changelist"), {"created_at__gte": "yesterday"}
    )

    # then Django's "invalid lookup" redirect, not a 500
    assert response.status_code == 302
    assert response.headers["Location"].endswith("?e=1")


def test_incident_page_links_its_days_and_root_causes_to_their_records(admin_client, tenant):
    # given user u1's two-day spike
    incident = user_spike_incident(tenant)

    # when
    with time_machine.travel(utc(2026, 3, 20), tick=False):
        response = admin_client.get(reverse("admin:analytics_incident_change", args=[incident.pk]))

    # then the root cause and the window link to u1's records of Mar 10-11
    window = cost_records_url(
        tenant_id=tenant.pk,
        start=utc(2026, 3, 10),
        end=utc(2026, 3, 12),
        entity_type="user",
        entity_id="u1",
    )
    html = response.content.decode()
    assert f'href="{escape(window)}" class="root-cause-records"' in html
    assert f'href="{escape(window)}" id="incident-records"' in html
    # and each day of the chart to that day's records
    day = cost_records_url(
        tenant_id=tenant.pk,
        start=utc(2026, 3, 11),
        end=utc(2026, 3, 12),
        entity_type="user",
        entity_id="u1",
    )
    assert f'href="{escape(day)}" class="day-link"' in html
    assert admin_client.get(window).context["cl"].result_count == 2


def test_cost_record_search_finds_a_record_by_its_idempotency_key(admin_client):
    # given two tenants' records, one of them stored under the key searched for
    first, second = TenantFactory(), TenantFactory()
    wanted = CostRecordFactory(
        tenant=first, idempotency_key="order-42", created_at=utc(2026, 3, 10, 9), model="m-wanted"
    )
    CostRecordFactory(
        tenant=second, idempotency_key="order-43", created_at=utc(2026, 4, 2), model="m-other"
    )
    url = reverse("admin:analytics_costrecord_changelist")

    # when the operator searches for the key, across tenants and within the owner's
    everywhere = admin_client.get(url, {"q": "order-42"})
    in_tenant = admin_client.get(url, {"q": "order-42", "tenant__id__exact": first.pk})
    elsewhere = admin_client.get(url, {"q": "order-42", "tenant__id__exact": second.pk})

    # then the record under that key is listed, and only where it lives
    assert list(everywhere.context["cl"].result_list) == [wanted]
    assert list(in_tenant.context["cl"].result_list) == [wanted]
    assert list(elsewhere.context["cl"].result_list) == []
