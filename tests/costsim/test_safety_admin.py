"""The safety net in the operator console: breaker state, audit trail and actions."""

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.urls import reverse

from costsim.admin import safety as safety_admin
from costsim.models import BREAKER_NAME, BreakerIncident, CircuitBreaker
from costsim.services.breaker import breaker_disable, breaker_get, breaker_report_drift
from notifications.models import Delivery, DeliveryStatus
from tests.costsim.safety_factories import (
    AlertDeliveryFactory,
    BreakerIncidentFactory,
    CanaryReportFactory,
)
from tests.factories import utc

T0 = utc(2026, 3, 2, 10)
BREAKER_LIST = reverse("admin:costsim_circuitbreaker_changelist")


@pytest.fixture
def operator(client, staff_user):
    client.force_login(staff_user)
    return client


def _breaker() -> CircuitBreaker:
    return CircuitBreaker.objects.get(name=BREAKER_NAME)


def _action(client, url, action, pks, **form):
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], **form}
    return client.post(url, data, follow=bool(form.get("apply")))


# Breaker ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_operator_sees_state_incidents_and_alerts(operator):
    # given an open breaker after three drift failures
    for _ in range(3):
        breaker_report_drift(score=0.9, sample_count=1, details={})
    breaker = _breaker()
    # when
    listing = operator.get(BREAKER_LIST).content.decode()
    page = operator.get(
        reverse("admin:costsim_circuitbreaker_change", args=[breaker.pk])
    ).content.decode()
    # then
    assert "OPEN" in listing
    assert "Drift exceeded threshold: 0.9000 &gt; 0.2" in listing
    assert breaker.incident_id in page
    assert "Audit trail" in page
    assert "Incidents (newest first)" in page
    assert "not sent" in page  # the incident's alert is still queued
    assert "disable" in page and "pending" in page


@pytest.mark.django_db
def test_disable_action_asks_for_a_reason_then_disables(operator):
    # given
    breaker = breaker_get()
    # when the action is chosen
    form_page = _action(operator, BREAKER_LIST, "disable_v2", [breaker.pk])
    # then an intermediate form is shown and nothing changed yet
    assert form_page.status_code == 200
    assert b'name="reason"' in form_page.content
    assert b'name="ttl_hours"' in form_page.content
    assert _breaker().disabled is False

    # when it is submitted
    with time_machine.travel(T0, tick=False):
        done = _action(
            operator,
            BREAKER_LIST,
            "disable_v2",
            [breaker.pk],
            apply="yes",
            reason="Vendor pricing change",
            ttl_hours="2",
        )
    # then
    assert done.status_code == 200
    assert "V2 disabled until 2026-03-02 12:00 UTC." in done.content.decode()
    row = _breaker()
    assert row.disabled is True
    assert row.disabled_by == "user:operator"
    assert row.disabled_reason == "Vendor pricing change"
    assert row.incident.trigger == "manual"


@pytest.mark.django_db
def test_disable_without_a_reason_shows_the_form_again(operator):
    # given
    breaker = breaker_get()
    # when
    response = _action(
        operator, BREAKER_LIST, "disable_v2", [breaker.pk], apply="yes", reason="", ttl_hours="-1"
    )
    # then
    assert response.status_code == 200
    assert b"This field is required." in response.content
    assert _breaker().disabled is False
    assert BreakerIncident.objects.count() == 0


@pytest.mark.django_db
def test_operator_re_enables_v2_with_a_reason(operator):
    # given
    breaker_disable(reason="bad deploy", actor="user:someone")
    incident = _breaker().incident
    # when
    response = _action(
        operator,
        BREAKER_LIST,
        "enable_v2",
        [_breaker().pk],
        apply="yes",
        reason="Hotfix deployed",
    )
    # then
    assert "V2 re-enabled." in response.content.decode()
    assert _breaker().disabled is False
    incident.refresh_from_db()
    assert incident.resolved is True
    assert incident.resolved_by == "user:operator"
    assert incident.resolution_notes == "Hotfix deployed"
    enable_alert = Delivery.objects.get(payload__data__alert_type="enable")
    assert enable_alert.payload["data"]["alerts"][0]["annotations"]["description"] == (
        "Re-enabled by: user:operator\nReason: Hotfix deployed"
    )


@pytest.mark.django_db
def test_action_helpers_report_what_happened():
    # when
    closed = safety_admin.enable_breaker(actor="user:ops", reason="nothing to do")
    opened = safety_admin.disable_breaker(actor="user:ops", reason="manual", ttl_hours=None)
    # then
    assert closed == "The breaker was already closed; nothing changed."
    assert opened == "V2 disabled until enabled."


@pytest.mark.django_db
def test_breaker_row_cannot_be_added_edited_or_deleted(operator):
    # given
    breaker = breaker_get()
    # when
    add = operator.get(reverse("admin:costsim_circuitbreaker_add"))
    delete = operator.get(reverse("admin:costsim_circuitbreaker_delete", args=[breaker.pk]))
    change = operator.post(
        reverse("admin:costsim_circuitbreaker_change", args=[breaker.pk]), {"disabled": "on"}
    )
    # then
    assert add.status_code == 403
    assert delete.status_code == 403
    assert change.status_code == 403
    assert _breaker().disabled is False


@pytest.mark.django_db
def test_view_only_staff_get_no_actions(client, django_user_model):
    # given a staff user who may only look
    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_circuitbreaker"))
    client.force_login(viewer)
    breaker = breaker_get()
    # when
    page = client.get(BREAKER_LIST)
    attempt = _action(client, BREAKER_LIST, "disable_v2", [breaker.pk], apply="yes", reason="x")
    # then
    assert page.status_code == 200
    assert b"disable_v2" not in page.content
    assert attempt.status_code in (200, 302)
    assert _breaker().disabled is False


# Incidents ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_resolve_action_resolves_old_incidents_but_not_the_open_one(operator):
    # given
    old = BreakerIncidentFactory(created_at=T0)
    breaker_disable(reason="ongoing", actor="user:ops")
    current = _breaker().incident
    url = reverse("admin:costsim_breakerincident_changelist")
    # when
    response = _action(
        operator, url, "resolve", [old.pk, current.pk], apply="yes", notes="Post-mortem done"
    )
    # then
    text = response.content.decode()
    assert "Resolved 1 incidents." in text
    assert "1 left alone" in text
    old.refresh_from_db()
    assert (old.resolved, old.resolved_by, old.resolution_notes) == (
        True,
        "user:operator",
        "Post-mortem done",
    )
    current.refresh_from_db()
    assert current.resolved is False


@pytest.mark.django_db
def test_incident_list_filters_and_detail(operator):
    # given
    BreakerIncidentFactory(severity="P3", trigger="schema_error", reason="schema storm")
    BreakerIncidentFactory(severity="P1", reason="drift storm", resolved=True)
    url = reverse("admin:costsim_breakerincident_changelist")
    # when
    open_p3 = operator.get(url, {"resolved__exact": "0", "severity__exact": "P3"})
    # then
    assert open_p3.status_code == 200
    assert "schema storm" in open_p3.content.decode()
    assert "drift storm" not in open_p3.content.decode()


# Outbox and canary reports ------------------------------------------------------------


# Breaker alerts are deliveries of the notifications outbox: their console is the delivery
# admin, with the same retry and due filter.
DELIVERY_LIST = reverse("admin:notifications_delivery_changelist")


@pytest.mark.django_db
def test_retry_failed_action(operator):
    # given
    failed = AlertDeliveryFactory(status=DeliveryStatus.FAILED, attempts=10, max_attempts=10)
    sent = AlertDeliveryFactory(status=DeliveryStatus.SENT)
    # when
    response = operator.post(
        DELIVERY_LIST,
        {"action": "retry", "_selected_action": [failed.pk, sent.pk]},
        follow=True,
    )
    # then
    assert "1 delivery(ies) queued again." in response.content.decode()
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (DeliveryStatus.PENDING, 0)
    assert Delivery.objects.get(pk=sent.pk).status == DeliveryStatus.SENT


@pytest.mark.django_db
def test_outbox_due_filter(operator):
    # given
    with time_machine.travel(T0, tick=False):
        due = AlertDeliveryFactory(last_error="HTTP 500: due-row")
        AlertDeliveryFactory(next_attempt_at=utc(2030, 1, 1), last_error="HTTP 500: waiting-row")
        # when
        response = operator.get(DELIVERY_LIST, {"due": "due", "channel__kind": "alertmanager"})
    # then
    text = response.content.decode()
    assert "due-row" in text
    assert "waiting-row" not in text
    assert str(due.pk) in text


@pytest.mark.django_db
def test_breaker_and_incident_pages_list_their_alert_deliveries(operator):
    # given a trip
    breaker_disable(reason="maintenance", actor="user:ops")
    breaker = _breaker()
    alert = Delivery.objects.get()
    # when
    breaker_page = operator.get(
        reverse("admin:costsim_circuitbreaker_change", args=[breaker.pk])
    ).content.decode()
    incident_page = operator.get(
        reverse("admin:costsim_breakerincident_change", args=[breaker.incident_id])
    ).content.decode()
    # then both link to the delivery in the notifications console
    link = reverse("admin:notifications_delivery_change", args=[alert.pk])
    assert link in breaker_page and "tripped -&gt; alertmanager" in breaker_page
    assert link in incident_page


@pytest.mark.django_db
def test_canary_reports_are_read_only(operator):
    # given
    report = CanaryReportFactory(
        status="fail", passed=False, failure_reasons=["KL divergence 0.5000 > 0.2"]
    )
    # when
    listing = operator.get(reverse("admin:costsim_canaryreport_changelist"))
    detail = operator.get(reverse("admin:costsim_canaryreport_change", args=[report.pk]))
    add = operator.get(reverse("admin:costsim_canaryreport_add"))
    # then
    assert listing.status_code == 200
    assert report.run_id in listing.content.decode()
    assert "KL divergence 0.5000 &gt; 0.2" in detail.content.decode()
    assert add.status_code == 403


@pytest.mark.django_db
def test_an_insufficient_data_report_shows_how_many_samples_it_needs(operator):
    # given
    report = CanaryReportFactory(
        status="insufficient_data",
        passed=False,
        total_samples=3,
        evaluated_samples=2,
        min_samples=100,
        kl_divergence=None,
        js_distance=None,
        failure_reasons=["Insufficient data: 2 samples evaluated, judging V2 needs 100"],
    )
    # when
    listing = operator.get(
        reverse("admin:costsim_canaryreport_changelist"), {"status__exact": "insufficient_data"}
    )
    detail = operator.get(reverse("admin:costsim_canaryreport_change", args=[report.pk]))
    # then
    assert listing.status_code == 200
    assert "2 / 100" in listing.content.decode()
    assert "Insufficient data" in listing.content.decode()
    assert "judging V2 needs 100" in detail.content.decode()
