"""Acceptance tests of the operator console in a real browser (Playwright + Chromium).

Drives Debian's Chromium against pytest-django's live server: log in, open an anomaly or an
incident with its evidence, acknowledge it, resolve it with a note, and see the status change
on the page.
"""

import pytest
from django.db import connections

from analytics.models import Anomaly, AnomalyStatus, Incident
from tests.analytics.factories import AnomalyFactory, user_spike_incident
from tests.factories import TenantFactory
from tests.tools import tool_path

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def browser_page(monkeypatch):
    chromium = tool_path(CHROMIUM, install="apt-get install chromium to run the browser tests")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, so Django takes the
    # test's ORM calls for async code. They only happen while no browser request is in
    # flight, so its guard is relaxed here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
            # While that loop runs, Django keeps this thread's connections apart from the
            # ones it uses otherwise; closed here, inside the loop, or the connection the
            # test used stays open and the test database cannot be dropped at the end.
            connections.close_all()
            browser.close()


@pytest.fixture
def anomaly(db):
    return AnomalyFactory(
        tenant=TenantFactory(slug="acme"),
        message="Feature chat spending 180.0% above baseline for 2 consecutive days",
        entity_type="feature",
        entity_id="chat",
        contributors=[{"dimension": "model", "key": "model-a", "cents": 120.0, "share": 0.8}],
    )


@pytest.fixture
def incident(db):
    """User u1's two-day spike with its root cause and two anomalies, and an unrelated one."""
    tenant = TenantFactory(slug="acme")
    AnomalyFactory(tenant=tenant)  # in no incident
    return user_spike_incident(tenant)


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(
        username="operator", password="operator-pass", is_staff=True, is_superuser=True
    )


def log_in(page, live_server, next_path: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={next_path}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-pass")
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_path}")


def test_operator_acknowledges_and_resolves_an_anomaly(
    live_server, operator, anomaly, browser_page
):
    page = browser_page

    # given an operator logged in to the console
    log_in(page, live_server, "/admin/analytics/anomaly/")

    # when they open the anomaly from the list
    page.click(f"a[href$='/admin/analytics/anomaly/{anomaly.pk}/change/']")
    page.wait_for_selector("#anomaly-status")
    assert page.inner_text("#anomaly-status") == "Open"
    assert "model-a" in page.inner_text("#anomaly-contributors")

    # and acknowledge it
    page.click("#anomaly-acknowledge")
    page.wait_for_selector("#anomaly-status:has-text('Acknowledged')")
    assert f"Anomaly {anomaly.pk} acknowledged." in page.inner_text("ul.messagelist")

    # and resolve it with a note
    page.click("#anomaly-resolve")
    page.check("input[name=resolution][value=resolved]")
    page.fill("textarea[name=notes]", "Retry loop fixed in release 4.2")
    page.click("#anomaly-resolve-submit")

    # then the page shows the new status and the note, and the acknowledge button is gone
    page.wait_for_selector("#anomaly-status:has-text('Resolved')")
    assert page.inner_text("#anomaly-notes") == "Retry loop fixed in release 4.2"
    assert page.locator("#anomaly-acknowledge").count() == 0

    stored = Anomaly.objects.get(pk=anomaly.pk)
    assert stored.status == AnomalyStatus.RESOLVED
    assert stored.acknowledged_by == stored.resolved_by == "user:operator"
    assert stored.resolution_notes == "Retry loop fixed in release 4.2"


def test_operator_triages_an_incident(live_server, operator, incident, browser_page):
    page = browser_page
    members = set(incident.anomalies.values_list("pk", flat=True))

    # given an operator logged in to the console, whose index lists incidents first
    log_in(page, live_server, "/admin/")
    models = page.locator(".app-analytics tr[class^='model-'] th a").all_inner_texts()
    assert models[:2] == ["Incidents", "Anomalies"]

    # when they open the incident list, then the incident
    page.click(".app-analytics a[href$='/admin/analytics/incident/']")
    page.wait_for_url("**/admin/analytics/incident/")
    page.click(f"a[href$='/admin/analytics/incident/{incident.pk}/change/']")
    page.wait_for_selector("#incident-status")
    assert page.inner_text("#incident-status") == "Open"

    # then they see the root causes and the chart of the daily spend
    causes = page.inner_text("#incident-root-causes")
    assert "user: u1" in causes and "$80.00" in causes
    assert page.locator("#incident-chart").is_visible()
    assert page.locator("#incident-chart g.day").count() == 23
    assert page.locator("#incident-chart g.day.in-window").count() == 2

    # when they follow the raw anomalies link, the incident's two anomalies are listed
    page.click("#incident-raw-anomalies")
    page.wait_for_url(f"**/admin/analytics/anomaly/?incident={incident.pk}")
    assert page.locator("#result_list tbody tr").count() == len(members) == 2
    for pk in members:
        assert page.locator(
            f"#result_list a[href*='/admin/analytics/anomaly/{pk}/change/']"
        ).count()

    # and go back, and acknowledge the incident
    page.go_back()
    page.wait_for_selector("#incident-acknowledge")
    page.click("#incident-acknowledge")
    page.wait_for_selector("#incident-status:has-text('Acknowledged')")
    assert f"Incident {incident.pk} acknowledged." in page.inner_text("ul.messagelist")
    assert page.locator("#incident-acknowledge").count() == 0

    # and resolve it with a note
    page.click("#incident-resolve")
    page.wait_for_selector("#incident-resolve-form")
    page.fill("textarea[name=notes]", "Batch job retried every request; fixed in 4.2")
    page.click("#incident-resolve-submit")

    # then the page shows the new status and the note, and no button to change the status
    page.wait_for_selector("#incident-status:has-text('Resolved')")
    assert f"Incident {incident.pk} resolved." in page.inner_text("ul.messagelist")
    assert page.inner_text("#incident-notes") == "Batch job retried every request; fixed in 4.2"
    for button in ("#incident-acknowledge", "#incident-resolve", "#incident-dismiss"):
        assert page.locator(button).count() == 0
    assert page.locator("#incident-label-no").count() == 1

    stored = Incident.objects.get(pk=incident.pk)
    assert stored.status == AnomalyStatus.RESOLVED
    assert stored.acknowledged_by == stored.resolved_by == "user:operator"
    assert stored.resolution_notes == "Batch job retried every request; fixed in 4.2"
    assert set(
        stored.anomalies.values_list("status", "acknowledged_by", "resolved_by", "resolution_notes")
    ) == {
        (
            AnomalyStatus.RESOLVED,
            "user:operator",
            "user:operator",
            "Batch job retried every request; fixed in 4.2",
        )
    }
