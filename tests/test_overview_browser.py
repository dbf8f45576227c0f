"""Acceptance test of the operator overview in a real browser (Playwright + Debian's Chromium).

On the `seed_demo` data an operator logs in, reads the overview, switches the range and the
grouping, follows a chart marker to its incident and drills down to the incident's cost
records; every figure shown is checked against GET /api/v1/analytics/cost/ for the same
window. The test writes screenshots of the overview, the incident and the drill-down list to
`screenshots/` (ignored by git) for anyone to look at after `make test`.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.management import call_command
from django.urls import reverse

from analytics.admin.display import money
from analytics.models import Tenant
from analytics.services.tenants import api_key_create
from tests.analytics.test_admin_browser import browser_page, log_in, operator  # noqa: F401
from tests.conftest import key_client

SCREENSHOTS = Path(settings.BASE_DIR) / "screenshots"
SCREEN = {"width": 1366, "height": 900}

pytestmark = pytest.mark.django_db(transaction=True)


def api_statistics(client, *, days: int, resolution: str) -> dict:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - timedelta(days=days - 1), today + timedelta(days=1)
    response = client.get(
        "/api/v1/analytics/cost/",
        {"from": start.isoformat(), "to": end.isoformat(), "resolution": resolution},
    )
    assert response.status_code == 200, response.content
    return response.json()


def shown_matches_api(page, statistics: dict, *, group_by: str) -> None:
    """The range total and every breakdown row on the page are the API's, in dollars."""
    key = "model" if group_by == "model" else "feature_tag"
    expected_rows = [
        [row[key], money(Decimal(str(row["spend_cents"]))), str(row["requests"])]
        for row in statistics[f"by_{group_by}"]
    ]
    shown_rows = [
        [cell.strip() for cell in row.split("\t")][:3]
        for row in page.locator("#overview-breakdown tbody tr").all_inner_texts()
    ]
    assert shown_rows == expected_rows
    total = money(Decimal(str(statistics["totals"]["spend_cents"])))
    assert page.inner_text("#overview-range-total") == total
    assert page.inner_text("#overview-range-requests") == str(statistics["totals"]["requests"])


def test_operator_reads_the_overview_and_drills_down_to_records(
    live_server,
    operator,  # noqa: F811
    browser_page,  # noqa: F811
):
    page = browser_page
    page.set_viewport_size(SCREEN)
    SCREENSHOTS.mkdir(exist_ok=True)

    # given the demo tenant and a key to ask the API
    call_command("seed_demo", stdout=StringIO())
    tenant = Tenant.objects.get(slug="demo")
    _, raw_key = api_key_create(tenant=tenant, name="acceptance")
    api = key_client(raw_key)

    # when the operator logs in, the console opens on the overview: the last 30 days by model
    log_in(page, live_server, "/admin/")
    assert page.title() == "Overview | costwise console"
    assert page.inner_text("#overview-ranges a.current") == "30 days"
    for card in ("today", "month", "forecast"):
        assert page.locator(f"#card-{card} .value").is_visible()
    assert page.inner_text("#card-today .value").startswith("$")
    assert page.locator("#overview-chart g.bucket").count() == 30
    shown_matches_api(page, api_statistics(api, days=30, resolution="day"), group_by="model")
    assert page.locator("#overview-incidents tbody tr").count() >= 1
    assert "Whole tenant" in page.inner_text("#overview-budgets")
    assert "V2 breaker" in page.inner_text("#overview-panel-costsim")
    page.screenshot(path=SCREENSHOTS / "overview.png", full_page=True)

    # and switches to the last 7 days, drawn by the hour
    page.click("#range-7")
    page.wait_for_selector("#overview-ranges a.current:has-text('7 days')")
    assert page.locator("#overview-chart g.bucket").count() == 7 * 24
    shown_matches_api(page, api_statistics(api, days=7, resolution="hour"), group_by="model")

    # and groups by feature
    page.click("#by-feature")
    page.wait_for_selector("#overview-groupings a.current:has-text('By feature')")
    assert "range=7" in page.url
    shown_matches_api(page, api_statistics(api, days=7, resolution="hour"), group_by="feature")
    legend = page.inner_text("#overview-legend")
    assert "chat" in legend and "summarize" in legend

    # and a bar tells its figures on hover
    titles = page.locator("#overview-chart g.bucket title").all_text_contents()
    busy = [title for title in titles if "chat: $" in title]
    assert busy and all(" UTC: $" in title for title in busy)

    # when they follow a chart marker, they land on its incident
    page.click("#range-30")
    page.wait_for_selector("#overview-ranges a.current:has-text('30 days')")
    marker = page.locator("#overview-chart a.marker").first
    incident_url = marker.get_attribute("href")
    assert incident_url.startswith("/admin/analytics/incident/")
    marker.click()
    page.wait_for_url(f"**{incident_url}")
    page.wait_for_selector("#incident-status")
    assert page.locator("#incident-chart").is_visible()
    page.screenshot(path=SCREENSHOTS / "incident.png", full_page=True)

    # and drill down to the cost records behind it
    page.click("#incident-records")
    page.wait_for_selector("#result_list")
    assert "/admin/analytics/costrecord/?" in page.url
    rows = page.locator("#result_list tbody tr")
    assert rows.count() > 0
    assert set(page.locator("#result_list td.field-tenant").all_inner_texts()) == {"demo"}
    assert all(cost.startswith("$") for cost in page.locator("td.field-cost").all_inner_texts())
    assert page.evaluate("document.documentElement.scrollWidth") <= SCREEN["width"]
    page.screenshot(path=SCREENSHOTS / "drill-down.png", full_page=True)


def test_every_list_page_fits_a_1366_pixel_screen(
    live_server,
    operator,  # noqa: F811
    browser_page,  # noqa: F811
):
    page = browser_page
    page.set_viewport_size(SCREEN)

    # given the demo data
    call_command("seed_demo", stdout=StringIO())
    log_in(page, live_server, "/admin/")

    # when the operator opens each list, then nothing scrolls sideways
    too_wide = {}
    for model in admin.site._registry:
        opts = model._meta
        page.goto(live_server.url + reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > SCREEN["width"]:
            too_wide[opts.label] = width
    assert too_wide == {}
