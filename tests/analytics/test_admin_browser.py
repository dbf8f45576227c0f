"""Acceptance test of the operator console in a real browser (Playwright + Chromium).

Drives Debian's Chromium against pytest-django's live server: log in, open an anomaly,
acknowledge it, resolve it with a note, and see the status change on the page.
"""

from pathlib import Path

import pytest

from analytics.models import Anomaly, AnomalyStatus
from tests.analytics.factories import AnomalyFactory
from tests.factories import TenantFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Chromium not found: apt-get install chromium to enable"
    ),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            yield page
        finally:
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
def operator(django_user_model):
    return django_user_model.objects.create_user(
        username="operator", password="operator-pass", is_staff=True, is_superuser=True
    )


def test_operator_acknowledges_and_resolves_an_anomaly(
    live_server, operator, anomaly, browser_page, monkeypatch
):
    # Playwright's sync API keeps an event loop in this thread; the ORM calls below happen
    # while no browser request is in flight, so Django's async guard can be relaxed here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    page = browser_page

    # given an operator logged in to the console
    page.goto(f"{live_server.url}/admin/login/?next=/admin/analytics/anomaly/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", "operator-pass")
    page.click("input[type=submit]")
    page.wait_for_url("**/admin/analytics/anomaly/")

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
