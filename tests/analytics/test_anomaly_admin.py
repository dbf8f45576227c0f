"""The anomaly operator console through the Django test client, and its action helpers."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import RequestFactory

from analytics.admin.anomalies import (
    acknowledge_anomalies,
    anomaly_chart,
    close_anomalies,
    label_anomalies,
)
from analytics.models import Anomaly, AnomalyStatus
from analytics.selectors.anomalies import DailyCost, anomaly_daily_series
from tests.analytics.factories import AnomalyFactory
from tests.factories import CostRecordFactory, utc

CHANGELIST = "/admin/analytics/anomaly/"


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def operator_request(staff_user):
    request = RequestFactory().post(CHANGELIST)
    request.user = staff_user
    return request


def detail(anomaly) -> str:
    return f"{CHANGELIST}{anomaly.pk}/change/"


def statuses() -> dict:
    return dict(Anomaly.objects.values_list("pk", "status"))


def test_acknowledge_helper_reports_counts(tenant, operator_request):
    # given one open, one acknowledged and one resolved anomaly
    open_one = AnomalyFactory(tenant=tenant)
    AnomalyFactory(tenant=tenant, status=AnomalyStatus.ACKNOWLEDGED)
    AnomalyFactory(tenant=tenant, status=AnomalyStatus.RESOLVED)

    counts, text = acknowledge_anomalies(operator_request, Anomaly.objects.all())

    assert counts == {"acknowledged": 1, "unchanged": 1, "conflicts": 1}
    assert text.startswith("1 anomaly(ies) acknowledged, 1 already acknowledged, 1 already")
    open_one.refresh_from_db()
    assert open_one.status == AnomalyStatus.ACKNOWLEDGED
    assert open_one.acknowledged_by == "user:operator"


def test_close_helper_leaves_closed_anomalies_alone(tenant, operator_request):
    closed = AnomalyFactory(tenant=tenant, status=AnomalyStatus.DISMISSED, resolution_notes="old")
    AnomalyFactory(tenant=tenant)
    AnomalyFactory(tenant=tenant, status=AnomalyStatus.ACKNOWLEDGED)

    counts, text = close_anomalies(
        operator_request, Anomaly.objects.all(), resolution="resolved", notes="fixed the loop"
    )

    assert counts == {"changed": 2, "conflicts": 1}
    assert text.startswith("2 anomaly(ies) resolved, 1 already")
    closed.refresh_from_db()
    assert (closed.status, closed.resolution_notes) == ("dismissed", "old")
    assert set(
        Anomaly.objects.exclude(pk=closed.pk).values_list(
            "status", "resolution_notes", "resolved_by"
        )
    ) == {("resolved", "fixed the loop", "user:operator")}


def test_label_helper_labels_any_status(tenant, operator_request):
    AnomalyFactory(tenant=tenant, status=AnomalyStatus.RESOLVED)
    AnomalyFactory(tenant=tenant)

    counts, text = label_anomalies(operator_request, Anomaly.objects.all(), label="NO")

    assert counts == {"labelled": 2}
    assert text == "2 anomaly(ies) labelled NO."
    assert set(Anomaly.objects.values_list("feedback_label", "feedback_by")) == {
        ("NO", "user:operator")
    }


def test_changelist_filters_needs_attention(tenant, admin_client):
    open_one = AnomalyFactory(tenant=tenant, message="open one")
    AnomalyFactory(tenant=tenant, status=AnomalyStatus.RESOLVED, message="closed one")

    response = admin_client.get(CHANGELIST, {"attention": "needs"})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [open_one]


def test_changelist_has_the_operator_filters_and_search(tenant, admin_client):
    AnomalyFactory(tenant=tenant, entity_type="user", entity_id="alice")
    AnomalyFactory(tenant=tenant)

    response = admin_client.get(CHANGELIST, {"q": "alice", "severity__exact": "HIGH"})

    assert response.status_code == 200
    assert [a.entity_id for a in response.context["cl"].result_list] == ["alice"]
    titles = {spec.title for spec in response.context["cl"].filter_specs}
    assert {"attention", "status", "severity", "anomaly type", "entity type"} <= titles


def test_acknowledge_action_through_the_changelist(tenant, admin_client):
    anomalies = AnomalyFactory.create_batch(2, tenant=tenant)

    response = admin_client.post(
        CHANGELIST,
        {"action": "acknowledge_selected", ACTION_CHECKBOX_NAME: [a.pk for a in anomalies]},
        follow=True,
    )

    assert response.status_code == 200
    assert "2 anomaly(ies) acknowledged." in [str(m) for m in response.context["messages"]]
    assert set(statuses().values()) == {"acknowledged"}


def test_resolve_action_asks_for_notes_first(tenant, admin_client):
    anomaly = AnomalyFactory(tenant=tenant)
    selection = {"action": "resolve_selected", ACTION_CHECKBOX_NAME: [anomaly.pk]}

    # when the action is chosen, an intermediate page asks for notes and changes nothing
    form_page = admin_client.post(CHANGELIST, selection)
    assert form_page.status_code == 200
    assert b'name="notes"' in form_page.content
    assert statuses() == {anomaly.pk: "open"}

    # when the form is submitted, the anomaly is resolved with the notes
    done = admin_client.post(
        CHANGELIST, {**selection, "apply": "yes", "notes": "capacity test"}, follow=True
    )
    assert "1 anomaly(ies) resolved." in [str(m) for m in done.context["messages"]]
    anomaly.refresh_from_db()
    assert (anomaly.status, anomaly.resolution_notes) == ("resolved", "capacity test")


def test_notes_form_lists_each_anomaly_with_its_tenant_status_and_message(tenant, admin_client):
    anomaly = AnomalyFactory(tenant=tenant, message="spend doubled")

    form_page = admin_client.post(
        CHANGELIST, {"action": "resolve_selected", ACTION_CHECKBOX_NAME: [anomaly.pk]}
    )

    assert [t.name for t in form_page.templates][0] == "admin/action_form.html"
    assert f"<li>{tenant} · {anomaly} · Open — spend doubled</li>" in form_page.content.decode()
    assert "every selected anomaly (up to 2000 chars)" in form_page.content.decode()


def test_dismiss_action_rejects_overlong_notes(tenant, admin_client):
    anomaly = AnomalyFactory(tenant=tenant)

    response = admin_client.post(
        CHANGELIST,
        {
            "action": "dismiss_selected",
            ACTION_CHECKBOX_NAME: [anomaly.pk],
            "apply": "yes",
            "notes": "x" * 2001,
        },
    )

    assert response.status_code == 200
    assert response.context["form"].errors["notes"]
    assert statuses() == {anomaly.pk: "open"}


@pytest.mark.parametrize(
    ("action", "label"),
    [("label_yes", "YES"), ("label_no", "NO"), ("label_planned_activity", "PLANNED_ACTIVITY")],
)
def test_label_actions(tenant, admin_client, action, label):
    anomaly = AnomalyFactory(tenant=tenant)

    admin_client.post(CHANGELIST, {"action": action, ACTION_CHECKBOX_NAME: [anomaly.pk]})

    anomaly.refresh_from_db()
    assert (anomaly.feedback_label, anomaly.feedback_by) == (label, "user:operator")


def test_detail_page_shows_the_evidence(tenant, admin_client):
    # given an anomaly with contributors and spend around its day
    day = date(2026, 3, 10)
    for offset, cents in ((-2, 40), (0, 150), (1, 60)):
        moment = utc(day.year, day.month, day.day, 9) + timedelta(days=offset)
        CostRecordFactory(tenant=tenant, created_at=moment, cost_cents=Decimal(cents))
    anomaly = AnomalyFactory(
        tenant=tenant,
        anomaly_date=day,
        derived_cause="RETRY_LOOP",
        contributors=[{"dimension": "model", "key": "model-a", "cents": 120.0, "share": 0.8}],
    )

    with time_machine.travel(utc(2026, 4, 1), tick=False):
        response = admin_client.get(detail(anomaly))

    assert response.status_code == 200
    html = response.content.decode()
    assert anomaly.message in html
    assert "Retry loop" in html
    assert "model-a" in html and "80.0 %" in html
    assert 'id="anomaly-actual">$1.50<' in html  # cents shown as dollars
    assert 'id="anomaly-expected">$1.00<' in html
    assert html.count('class="bucket highlight"') == 1  # the anomaly's day
    assert 'id="anomaly-acknowledge"' in html
    assert len(response.context["series"]) == 29


def test_detail_page_buttons_acknowledge_and_resolve(tenant, admin_client):
    anomaly = AnomalyFactory(tenant=tenant)

    ack = admin_client.post(f"{CHANGELIST}{anomaly.pk}/acknowledge/", follow=True)
    assert ack.redirect_chain[-1][0] == detail(anomaly)
    anomaly.refresh_from_db()
    assert anomaly.status == "acknowledged"

    form = admin_client.get(f"{CHANGELIST}{anomaly.pk}/resolve/")
    assert form.status_code == 200
    admin_client.post(
        f"{CHANGELIST}{anomaly.pk}/resolve/", {"resolution": "dismissed", "notes": "noise"}
    )
    anomaly.refresh_from_db()
    assert (anomaly.status, anomaly.resolution_notes) == ("dismissed", "noise")

    # a closed anomaly cannot be acknowledged: the operator sees why
    again = admin_client.post(f"{CHANGELIST}{anomaly.pk}/acknowledge/", follow=True)
    assert any("dismissed" in str(m) for m in again.context["messages"])
    anomaly.refresh_from_db()
    assert anomaly.status == "dismissed"


def test_console_needs_staff(tenant, client, django_user_model):
    anomaly = AnomalyFactory(tenant=tenant)
    user = django_user_model.objects.create_user(username="guest", password="x")
    client.force_login(user)

    response = client.post(f"{CHANGELIST}{anomaly.pk}/acknowledge/")

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    anomaly.refresh_from_db()
    assert anomaly.status == "open"


def test_staff_without_change_permission_cannot_triage(tenant, client, django_user_model):
    from django.contrib.auth.models import Permission

    anomaly = AnomalyFactory(tenant=tenant)
    viewer = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_anomaly"))
    client.force_login(viewer)

    assert client.get(detail(anomaly)).status_code == 200
    assert client.post(f"{CHANGELIST}{anomaly.pk}/acknowledge/").status_code == 403
    anomaly.refresh_from_db()
    assert anomaly.status == "open"


def test_unknown_anomaly_is_404(admin_client):
    assert admin_client.get(f"{CHANGELIST}999999/resolve/").status_code == 404
    assert admin_client.post(f"{CHANGELIST}abc/acknowledge/").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "/admin/analytics/anomalyevaluation/",
        "/admin/analytics/breachhistory/",
        "/admin/analytics/drifttracking/",
    ],
)
def test_detection_output_is_read_only(admin_client, url):
    response = admin_client.get(url)

    assert response.status_code == 200
    assert admin_client.get(f"{url}add/").status_code == 403


def test_daily_series_is_zero_filled_and_scoped(tenant, other_tenant):
    day = date(2026, 3, 10)
    CostRecordFactory(
        tenant=tenant, created_at=utc(2026, 3, 10, 5), cost_cents=Decimal(7), user_id="u1"
    )
    CostRecordFactory(tenant=tenant, created_at=utc(2026, 3, 10, 6), cost_cents=Decimal(5))
    CostRecordFactory(tenant=other_tenant, created_at=utc(2026, 3, 10, 6), cost_cents=Decimal(9))
    anomaly = AnomalyFactory(tenant=tenant, anomaly_date=day, entity_type="user", entity_id="u1")

    series = anomaly_daily_series(anomaly=anomaly, days_before=2, days_after=2, today=day)

    assert series == [
        DailyCost(date(2026, 3, 8), 0.0, 0),
        DailyCost(date(2026, 3, 9), 0.0, 0),
        DailyCost(date(2026, 3, 10), 7.0, 1),
    ]


def test_chart_marks_the_anomaly_day_and_scales_to_the_largest_bar(tenant):
    # given two days, the anomaly on the second
    series = [DailyCost(date(2026, 3, 9), 50.0, 1), DailyCost(date(2026, 3, 10), 100.0, 2)]
    anomaly = AnomalyFactory(tenant=tenant, anomaly_date=date(2026, 3, 10))

    # when
    chart = anomaly_chart(anomaly, series, baselines={})

    # then the second day is highlighted and twice as tall as the first
    assert [bar["highlight"] for bar in chart["bars"]] == [False, True]
    heights = [bar["rects"][0]["height"] for bar in chart["bars"]]
    assert heights[1] == pytest.approx(2 * heights[0], abs=0.2)
    assert chart["bars"][1]["hover"].startswith("Tue 2026-03-10 (2 requests): $1.00")
    assert "created_at__gte=2026-03-10" in chart["bars"][1]["url"]
