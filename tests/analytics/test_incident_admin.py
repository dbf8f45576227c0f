"""The incident console, the detection settings and planned activity admins, and their helpers."""

import re
from datetime import date
from decimal import Decimal

import pytest
import time_machine
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client, RequestFactory

from analytics.admin.incidents import (
    acknowledge_incidents,
    close_incidents,
    incident_chart,
    label_incidents,
)
from analytics.models import (
    Anomaly,
    AnomalyStatus,
    DetectionSettings,
    Incident,
    PlannedActivity,
)
from analytics.money import dollars
from analytics.selectors.incidents import IncidentDay, incident_daily_series
from tests.analytics.factories import AnomalyFactory, IncidentFactory, user_spike_incident
from tests.factories import utc

CHANGELIST = "/admin/analytics/incident/"
ANOMALIES = "/admin/analytics/anomaly/"
SETTINGS = "/admin/analytics/detectionsettings/"
PLANS = "/admin/analytics/plannedactivity/"


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def operator_request(staff_user):
    request = RequestFactory().post(CHANGELIST)
    request.user = staff_user
    return request


def detail(incident) -> str:
    return f"{CHANGELIST}{incident.pk}/change/"


def verb_url(incident, verb: str) -> str:
    """The URL of a detail-page button: acknowledge, resolve, dismiss or label."""
    return f"{CHANGELIST}{incident.pk}/{verb}/"


def with_anomalies(incident, count: int = 2, **fields) -> list[Anomaly]:
    return AnomalyFactory.create_batch(
        count, tenant=incident.tenant, incident=incident, status=incident.status, **fields
    )


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- Money ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cents", "shown"),
    [
        (4210, "$42.10"),
        (4210.4999, "$42.10"),
        (0.5, "$0.01"),
        (-5, "-$0.05"),
        (123456789, "$1,234,567.89"),
        (Decimal("1.5"), "$0.02"),
        (None, "—"),
    ],
)
def test_dollars_shows_cents_as_dollars_with_two_decimals(cents, shown):
    assert dollars(cents) == shown


# --- The changelist ------------------------------------------------------------------------


def test_changelist_shows_impact_in_dollars_not_cents(tenant, admin_client):
    IncidentFactory(tenant=tenant, expected_cents=2000.0, actual_cents=6210.0)

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "$42.10" in html
    assert "4210" not in html
    for column in ("severity", "kind", "title", "scope", "impact", "status"):
        assert f"column-{column}" in html or f"column-{column}_badge" in html


def test_changelist_lists_the_newest_incident_first(tenant, admin_client):
    older = IncidentFactory(tenant=tenant, started_on=date(2026, 2, 1))
    newer = IncidentFactory(tenant=tenant, started_on=date(2026, 3, 1))

    response = admin_client.get(CHANGELIST)

    assert list(response.context["cl"].result_list) == [newer, older]


def test_changelist_filters_by_status_severity_kind_and_tenant(tenant, other_tenant, admin_client):
    # given incidents that differ in one filtered field each
    wanted = IncidentFactory(tenant=tenant, kind="drift", severity="CRITICAL")
    IncidentFactory(tenant=tenant, kind="spike", severity="CRITICAL")
    IncidentFactory(tenant=tenant, kind="drift", severity="LOW")
    IncidentFactory(tenant=tenant, kind="drift", severity="CRITICAL", status="resolved")
    IncidentFactory(tenant=other_tenant, kind="drift", severity="CRITICAL")

    # when the operator narrows the list with every filter
    response = admin_client.get(
        CHANGELIST,
        {
            "status__exact": "open",
            "severity__exact": "CRITICAL",
            "kind__exact": "drift",
            "tenant__id__exact": tenant.pk,
        },
    )

    # then only the incident that matches them all is left
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [wanted]
    titles = {spec.title for spec in response.context["cl"].filter_specs}
    assert {"status", "severity", "kind", "tenant"} <= titles


def test_changelist_searches_titles(tenant, admin_client):
    IncidentFactory(tenant=tenant, title="Feature chat spend up 300%")
    IncidentFactory(tenant=tenant, title="Tenant spend up 40%")

    response = admin_client.get(CHANGELIST, {"q": "chat"})

    assert [i.title for i in response.context["cl"].result_list] == ["Feature chat spend up 300%"]


def test_analytics_app_lists_incidents_first(admin_client):
    response = admin_client.get("/admin/analytics/")

    names = [entry["object_name"] for entry in response.context["app_list"][0]["models"]]
    assert names[:2] == ["Incident", "Anomaly"]


def test_incidents_cannot_be_added_or_edited(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)

    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    response = admin_client.post(detail(incident), {"title": "renamed"})
    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.title != "renamed"


# --- Bulk actions --------------------------------------------------------------------------


def test_acknowledge_action_moves_incidents_and_their_anomalies(tenant, admin_client):
    incidents = IncidentFactory.create_batch(2, tenant=tenant)
    members = [a for incident in incidents for a in with_anomalies(incident)]
    stray = AnomalyFactory(tenant=tenant)

    response = admin_client.post(
        CHANGELIST,
        {"action": "acknowledge_selected", ACTION_CHECKBOX_NAME: [i.pk for i in incidents]},
        follow=True,
    )

    assert "2 incident(s) acknowledged." in messages_of(response)
    assert set(Incident.objects.values_list("status", "acknowledged_by")) == {
        ("acknowledged", "user:operator")
    }
    assert {a.status for a in Anomaly.objects.filter(pk__in=[m.pk for m in members])} == {
        "acknowledged"
    }
    stray.refresh_from_db()
    assert stray.status == "open"


def test_acknowledge_helper_reports_closed_incidents_as_conflicts(tenant, operator_request):
    # given an open, an acknowledged and a resolved incident
    open_one = IncidentFactory(tenant=tenant)
    IncidentFactory(tenant=tenant, status=AnomalyStatus.ACKNOWLEDGED)
    resolved = IncidentFactory(tenant=tenant, status=AnomalyStatus.RESOLVED)
    with_anomalies(resolved, count=1)

    counts, text = acknowledge_incidents(operator_request, Incident.objects.all())

    assert counts == {"acknowledged": 1, "unchanged": 1, "conflicts": 1}
    assert text == (
        "1 incident(s) acknowledged, 1 already acknowledged, "
        "1 already resolved or dismissed (left as they are)."
    )
    open_one.refresh_from_db()
    resolved.refresh_from_db()
    assert (open_one.status, resolved.status) == ("acknowledged", "resolved")
    assert set(resolved.anomalies.values_list("status", flat=True)) == {"resolved"}


def test_resolve_action_asks_for_notes_then_closes_incidents_and_anomalies(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)
    members = with_anomalies(incident)
    selection = {"action": "resolve_selected", ACTION_CHECKBOX_NAME: [incident.pk]}

    # when the action is chosen, the shared action form asks for notes and changes nothing
    form_page = admin_client.post(CHANGELIST, selection)
    assert form_page.status_code == 200
    assert [t.name for t in form_page.templates][0] == "admin/action_form.html"
    assert b'name="notes"' in form_page.content
    assert Incident.objects.get().status == "open"

    # when the form is submitted, the incident and its anomalies are resolved with the notes
    done = admin_client.post(
        CHANGELIST, {**selection, "apply": "yes", "notes": "retry loop fixed"}, follow=True
    )
    assert "1 incident(s) resolved." in messages_of(done)
    incident.refresh_from_db()
    assert (incident.status, incident.resolution_notes, incident.resolved_by) == (
        "resolved",
        "retry loop fixed",
        "user:operator",
    )
    assert set(
        Anomaly.objects.filter(pk__in=[m.pk for m in members]).values_list(
            "status", "resolution_notes"
        )
    ) == {("resolved", "retry loop fixed")}


def test_dismiss_action_reports_already_closed_incidents(tenant, admin_client):
    open_one = IncidentFactory(tenant=tenant)
    with_anomalies(open_one)
    closed = IncidentFactory(tenant=tenant, status="resolved", resolution_notes="old")

    response = admin_client.post(
        CHANGELIST,
        {
            "action": "dismiss_selected",
            ACTION_CHECKBOX_NAME: [open_one.pk, closed.pk],
            "apply": "yes",
            "notes": "load test",
        },
        follow=True,
    )

    assert (
        "1 incident(s) dismissed, 1 already resolved or dismissed (left as they are)."
        in messages_of(response)
    )
    open_one.refresh_from_db()
    closed.refresh_from_db()
    assert open_one.status == "dismissed"
    assert set(open_one.anomalies.values_list("status", flat=True)) == {"dismissed"}
    assert (closed.status, closed.resolution_notes) == ("resolved", "old")


def test_close_helper_counts_conflicts(tenant, operator_request):
    IncidentFactory(tenant=tenant, status=AnomalyStatus.DISMISSED)
    IncidentFactory(tenant=tenant, status=AnomalyStatus.ACKNOWLEDGED)

    counts, text = close_incidents(
        operator_request, Incident.objects.all(), resolution="resolved", notes=""
    )

    assert counts == {"changed": 1, "conflicts": 1}
    assert text.startswith("1 incident(s) resolved, 1 already")


@pytest.mark.parametrize("route", ["bulk action", "detail page button"])
def test_dismiss_rejects_overlong_notes(tenant, admin_client, route):
    incident = IncidentFactory(tenant=tenant)
    url, data = {
        "bulk action": (
            CHANGELIST,
            {"action": "dismiss_selected", ACTION_CHECKBOX_NAME: [incident.pk], "apply": "yes"},
        ),
        "detail page button": (verb_url(incident, "dismiss"), {}),
    }[route]

    response = admin_client.post(url, {**data, "notes": "x" * 2001})

    assert response.status_code == 200
    assert response.context["form"].errors["notes"]
    incident.refresh_from_db()
    assert incident.status == "open"


@pytest.mark.parametrize("label", ["YES", "NO", "PLANNED_ACTIVITY"])
@pytest.mark.parametrize("route", ["bulk action", "detail page button"])
def test_labelling_labels_the_incident_and_its_anomalies(tenant, admin_client, route, label):
    # a closed incident can still be labelled
    incident = IncidentFactory(tenant=tenant, status="resolved")
    with_anomalies(incident)
    url, data, message = {
        "bulk action": (
            CHANGELIST,
            {"action": f"label_{label.lower()}", ACTION_CHECKBOX_NAME: [incident.pk]},
            f"1 incident(s) labelled {label}.",
        ),
        "detail page button": (
            verb_url(incident, "label"),
            {"label": label},
            f"Incident {incident.pk} labelled {label}.",
        ),
    }[route]

    response = admin_client.post(url, data, follow=True)

    assert messages_of(response) == [message]
    incident.refresh_from_db()
    assert (incident.feedback_label, incident.feedback_by) == (label, "user:operator")
    assert set(incident.anomalies.values_list("feedback_label", flat=True)) == {label}


def test_label_helper(tenant, operator_request):
    IncidentFactory.create_batch(2, tenant=tenant)

    counts, text = label_incidents(operator_request, Incident.objects.all(), label="NO")

    assert counts == {"labelled": 2}
    assert text == "2 incident(s) labelled NO."


def test_staff_without_change_permission_sees_no_triage_actions(tenant, client, django_user_model):
    from django.contrib.auth.models import Permission

    incident = IncidentFactory(tenant=tenant)
    viewer = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_incident"))
    client.force_login(viewer)

    assert client.get(detail(incident)).status_code == 200
    client.post(CHANGELIST, {"action": "acknowledge_selected", ACTION_CHECKBOX_NAME: [incident.pk]})
    incident.refresh_from_db()
    assert incident.status == "open"


# --- The detail page -----------------------------------------------------------------------


@pytest.fixture
def spiked_incident(tenant):
    return user_spike_incident(tenant)


def test_daily_series_expects_the_history_from_the_incident_on(spiked_incident):
    days = incident_daily_series(incident=spiked_incident, today=date(2026, 3, 15))

    # 14 days before, the two incident days, then up to today (4 of the 7 days after)
    assert (days[0].day, days[-1].day, len(days)) == (date(2026, 2, 24), date(2026, 3, 15), 20)
    by_day = {d.day: d for d in days}
    assert by_day[date(2026, 3, 9)] == IncidentDay(date(2026, 3, 9), 1000.0, 1000.0)
    assert by_day[date(2026, 3, 10)].actual_cents == 5000.0
    assert by_day[date(2026, 3, 10)].expected_cents == pytest.approx(1000.0)
    assert by_day[date(2026, 3, 14)].expected_cents == pytest.approx(1000.0)


def test_daily_series_expectation_follows_planned_activity(spiked_incident):
    PlannedActivity.objects.create(
        tenant=spiked_incident.tenant,
        starts_on=date(2026, 3, 10),
        ends_on=date(2026, 3, 10),
        entity_type="user",
        entity_id="u1",
        expected_factor=5,
    )

    days = incident_daily_series(incident=spiked_incident, today=date(2026, 3, 15))

    expected = {d.day: d.expected_cents for d in days}
    assert expected[date(2026, 3, 10)] == pytest.approx(5000.0)
    assert expected[date(2026, 3, 11)] == pytest.approx(1000.0)


def test_detail_page_shows_numbers_chart_root_causes_and_anomalies(spiked_incident, admin_client):
    with time_machine.travel(utc(2026, 3, 20, 12), tick=False):
        response = admin_client.get(detail(spiked_incident))

    assert response.status_code == 200
    html = response.content.decode()
    # the numbers, in dollars and %
    assert spiked_incident.title in html
    assert re.search(r'id="incident-expected">\$20.00<', html)
    assert re.search(r'id="incident-actual">\$100.00<', html)
    assert re.search(r'id="incident-impact">\$80.00 \(\+400.0%\)<', html)
    # the root-cause table
    causes = html.split('id="incident-root-causes"')[1].split("</table>")[0]
    assert "user: u1" in causes
    for cell in ("$20.00", "$100.00", "$80.00", "100.0%"):
        assert cell in causes
    # the chart: 14 + 2 + 7 days, the window shaded, the expected line from the start on
    svg = html.split('<svg class="incident-chart"')[1].split("</svg>")[0]
    assert svg.count('<g class="day') == 23
    assert svg.count('<g class="day in-window">') == 2
    assert 'class="window"' in svg
    assert re.search(r'<polyline class="expected" points="[\d., ]+"', svg)
    assert re.search(r'<polyline class="expected history" points="[\d., ]+"', svg)
    assert svg.count('class="expected-point"') == 9
    assert "Tue 2026-03-10: $50.00 spent, $10.00 expected" in svg
    assert "Mon 2026-03-09: $10.00</title>" in svg
    assert ">$0.00</text>" in svg and ">$60.00</text>" in svg  # y axis in dollars
    # the member anomalies, each linking to its page, and the raw anomalies link
    for anomaly in spiked_incident.anomalies.all():
        assert f'href="{ANOMALIES}{anomaly.pk}/change/"' in html
    assert f'href="{ANOMALIES}?incident={spiked_incident.pk}"' in html
    assert "4210" not in html and "8000" not in html


def test_detail_page_of_an_incident_without_records_or_causes(tenant, admin_client):
    incident = IncidentFactory(
        tenant=tenant, expected_cents=2000.0, actual_cents=6210.0, impact_pct=None, root_causes=[]
    )

    response = admin_client.get(detail(incident))

    assert response.status_code == 200
    html = response.content.decode()
    assert "No entity explains this increase on its own." in html
    assert re.search(r'id="incident-impact">\$42.10 \(—\)<', html)


def test_raw_anomalies_link_lists_the_incident_members(spiked_incident, admin_client):
    AnomalyFactory(tenant=spiked_incident.tenant)  # not part of the incident
    page = admin_client.get(detail(spiked_incident))
    link = re.search(r'href="([^"]+)" id="incident-raw-anomalies"', page.content.decode())[1]

    response = admin_client.get(link.replace("&amp;", "&"))

    assert response.status_code == 200
    assert set(response.context["cl"].result_list) == set(spiked_incident.anomalies.all())
    assert f'href="{detail(spiked_incident)}"' in response.content.decode()  # incident column


def test_anomaly_changelist_filters_by_incident_membership(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)
    member = with_anomalies(incident, count=1)[0]
    loner = AnomalyFactory(tenant=tenant)

    def listed(value):
        response = admin_client.get(ANOMALIES, {"incident": value})
        return list(response.context["cl"].result_list)

    assert listed("any") == [member]
    assert listed("none") == [loner]
    assert admin_client.get(ANOMALIES, {"incident": "x"}).url.endswith("?e=1")


def test_anomaly_page_links_to_its_incident(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)
    anomaly = with_anomalies(incident, count=1)[0]

    response = admin_client.get(f"{ANOMALIES}{anomaly.pk}/change/")

    assert f'href="{detail(incident)}"' in response.content.decode()


def test_chart_geometry():
    # given four days, the incident on the third, and a flat $10 expectation
    days = [
        IncidentDay(date(2026, 3, 8), 1000.0, 1000.0),
        IncidentDay(date(2026, 3, 9), 1000.0, 1000.0),
        IncidentDay(date(2026, 3, 10), 4000.0, 1000.0),
        IncidentDay(date(2026, 3, 11), 1000.0, 1000.0),
    ]

    chart = incident_chart(days, date(2026, 3, 10), date(2026, 3, 10), width=472, height=236)

    # then the plot is 400 x 200 px, a bar per 100 px, the window is the third slot
    assert [bar["in_window"] for bar in chart["bars"]] == [False, False, True, False]
    assert chart["window"] == {"x": 264.0, "width": 100.0}
    # the axis tops out at $40 in $10 steps; $40 is the full height
    assert [tick["label"] for tick in chart["ticks"]] == [
        "$0.00",
        "$10.00",
        "$20.00",
        "$30.00",
        "$40.00",
    ]
    assert chart["bars"][2]["height"] == 200.0
    # the expectation is drawn from the incident on; before it, faintly, what was spent
    assert chart["expected_line"] == "314.0,162.0 414.0,162.0"
    assert chart["history_line"] == "114.0,162.0 214.0,162.0 314.0,162.0"
    assert [label["label"] for label in chart["day_labels"]] == ["Mar 8", "Mar 10", "Mar 11"]


# --- Detail page buttons ------------------------------------------------------------------

LABEL_BUTTONS = ("incident-label-yes", "incident-label-no", "incident-label-planned-activity")


def member_states(incident) -> set[tuple]:
    return set(incident.anomalies.values_list("status", "resolution_notes", "resolved_by"))


def test_acknowledge_button_moves_the_incident_and_its_anomalies(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)
    with_anomalies(incident)

    response = admin_client.post(verb_url(incident, "acknowledge"), follow=True)

    assert response.redirect_chain[-1][0] == detail(incident)
    assert messages_of(response) == [f"Incident {incident.pk} acknowledged."]
    incident.refresh_from_db()
    assert (incident.status, incident.acknowledged_by) == ("acknowledged", "user:operator")
    assert set(incident.anomalies.values_list("status", "acknowledged_by")) == {
        ("acknowledged", "user:operator")
    }


@pytest.mark.parametrize("verb", ["resolve", "dismiss"])
def test_close_buttons_ask_for_notes_then_close_the_incident_and_its_anomalies(
    tenant, admin_client, verb
):
    # given an acknowledged incident with two anomalies
    incident = IncidentFactory(tenant=tenant, status="acknowledged")
    with_anomalies(incident)
    status = {"resolve": "resolved", "dismiss": "dismissed"}[verb]

    # when the button is followed, a notes form for this incident is shown and nothing changes
    form_page = admin_client.get(verb_url(incident, verb))
    assert form_page.status_code == 200
    assert [t.name for t in form_page.templates][0] == "admin/object_action_form.html"
    html = form_page.content.decode()
    assert f'id="incident-{verb}-form"' in html and f'id="incident-{verb}-submit"' in html
    assert 'name="notes"' in html and 'name="resolution"' not in html
    assert incident.title in html
    incident.refresh_from_db()
    assert incident.status == "acknowledged"

    # when the form is submitted, the incident and its anomalies are closed with the notes
    done = admin_client.post(verb_url(incident, verb), {"notes": "load test"}, follow=True)

    assert done.redirect_chain[-1][0] == detail(incident)
    assert messages_of(done) == [f"Incident {incident.pk} {status}."]
    incident.refresh_from_db()
    assert (incident.status, incident.resolution_notes, incident.resolved_by) == (
        status,
        "load test",
        "user:operator",
    )
    assert member_states(incident) == {(status, "load test", "user:operator")}
    assert re.search(r'id="incident-notes">load test<', done.content.decode())


def test_detail_page_shows_the_label_and_marks_its_button(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant, feedback_label="PLANNED_ACTIVITY")

    html = admin_client.get(detail(incident)).content.decode()

    assert re.search(r'id="incident-feedback">Planned activity<', html)
    assert html.count('class="current"') == 1
    assert re.search(
        r'id="incident-label-planned-activity" name="label" value="PLANNED_ACTIVITY" '
        r'class="current"',
        html,
    )


def test_unknown_label_is_refused(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)

    response = admin_client.post(verb_url(incident, "label"), {"label": "MAYBE"}, follow=True)

    assert messages_of(response) == ["Unknown feedback label 'MAYBE'."]
    incident.refresh_from_db()
    assert incident.feedback_label is None


@pytest.mark.parametrize(
    ("verb", "action"),
    [("acknowledge", "acknowledge"), ("resolve", "resolve"), ("dismiss", "resolve")],
)
def test_buttons_on_a_closed_incident_explain_the_conflict(tenant, admin_client, verb, action):
    # given an incident another operator resolved a moment ago, its page still open here
    incident = IncidentFactory(tenant=tenant, status="resolved", resolution_notes="fixed")
    with_anomalies(incident)

    response = admin_client.post(verb_url(incident, verb), {"notes": "late"}, follow=True)

    # then the operator is told why nothing happened, and nothing did
    assert response.redirect_chain[-1][0] == detail(incident)
    [message] = response.context["messages"]
    assert (message.level_tag, str(message)) == (
        "error",
        f"Cannot {action} an incident that is resolved.",
    )
    incident.refresh_from_db()
    assert (incident.status, incident.resolution_notes) == ("resolved", "fixed")
    assert {status for status, _, _ in member_states(incident)} == {"resolved"}


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        ("open", {"incident-acknowledge", "incident-resolve", "incident-dismiss"}),
        ("acknowledged", {"incident-resolve", "incident-dismiss"}),
        ("resolved", set()),
        ("dismissed", set()),
    ],
)
def test_detail_page_shows_only_the_buttons_that_apply(tenant, admin_client, status, shown):
    incident = IncidentFactory(tenant=tenant, status=status)

    html = admin_client.get(detail(incident)).content.decode()

    for button in ("incident-acknowledge", "incident-resolve", "incident-dismiss"):
        assert (f'id="{button}"' in html) == (button in shown), button
    # a label can be given in any status
    for button in LABEL_BUTTONS:
        assert f'id="{button}"' in html
    assert html.count('name="csrfmiddlewaretoken"') >= len(LABEL_BUTTONS) + (status == "open")


def test_buttons_post_with_the_csrf_token(tenant, staff_user):
    incident = IncidentFactory(tenant=tenant)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff_user)
    html = browser.get(detail(incident)).content.decode()
    form = html.split(f'action="{verb_url(incident, "acknowledge")}"')[1].split("</form>")[0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]

    assert browser.post(verb_url(incident, "acknowledge")).status_code == 403
    incident.refresh_from_db()
    assert incident.status == "open"
    browser.post(verb_url(incident, "acknowledge"), {"csrfmiddlewaretoken": token})
    incident.refresh_from_db()
    assert incident.status == "acknowledged"


def test_get_does_not_change_an_incident(tenant, admin_client):
    incident = IncidentFactory(tenant=tenant)

    for verb in ("acknowledge", "label"):
        response = admin_client.get(verb_url(incident, verb))
        assert (response.status_code, response.url) == (302, detail(incident))
    incident.refresh_from_db()
    assert (incident.status, incident.feedback_label) == ("open", None)


def test_staff_operator_triages_any_tenants_incident(other_tenant, admin_client):
    # the console is for staff operators: no tenant scoping, as in the anomaly admin
    incident = IncidentFactory(tenant=other_tenant)

    admin_client.post(verb_url(incident, "acknowledge"))

    incident.refresh_from_db()
    assert incident.status == "acknowledged"


@pytest.fixture
def guest(django_user_model):
    return django_user_model.objects.create_user(username="guest", password="x")


@pytest.fixture
def viewer(django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_incident"))
    return user


@pytest.mark.parametrize(
    ("who", "page", "refused"),
    [
        ("guest", 302, 302),  # not staff: sent to the login page
        ("viewer", 200, 403),  # staff who may only look: sees the page without buttons
    ],
)
def test_buttons_are_only_for_operators_who_may_triage(
    other_tenant, client, request, who, page, refused
):
    incident = IncidentFactory(tenant=other_tenant)
    client.force_login(request.getfixturevalue(who))

    response = client.get(detail(incident))

    assert response.status_code == page
    html = response.content.decode()
    assert 'id="incident-acknowledge"' not in html and 'id="incident-label-no"' not in html
    for verb in ("acknowledge", "resolve", "dismiss", "label"):
        refusal = client.post(verb_url(incident, verb), {"notes": "x", "label": "NO"})
        assert refusal.status_code == refused
        if refused == 302:
            assert "/admin/login/" in refusal["Location"]
    incident.refresh_from_db()
    assert (incident.status, incident.feedback_label) == ("open", None)


def test_unknown_incident_is_404(admin_client):
    assert admin_client.get(f"{CHANGELIST}999999/resolve/").status_code == 404
    assert admin_client.post(f"{CHANGELIST}abc/acknowledge/").status_code == 404
    assert admin_client.post(f"{CHANGELIST}999999/label/", {"label": "NO"}).status_code == 404


# --- Detection settings --------------------------------------------------------------------

SETTINGS_FIELDS = {
    "spike_min_impact_cents": "",
    "spike_min_impact_pct": "",
    "drift_min_impact_cents": "",
    "drift_min_impact_pct": "",
    "outlier_min_impact_cents": "",
    "outlier_min_impact_pct": "",
    "z_threshold": "",
    "min_history_days": "",
    "monitored_dimensions": "",
    "suppression_days": "",
}


def test_settings_are_created_with_the_operator_recorded(tenant, admin_client):
    response = admin_client.post(
        f"{SETTINGS}add/",
        {
            **SETTINGS_FIELDS,
            "tenant": tenant.pk,
            "spike_min_impact_cents": "500",
            "z_threshold": "4",
            "monitored_dimensions": '["user", "feature"]',
        },
    )

    assert response.status_code == 302
    stored = DetectionSettings.objects.get(tenant=tenant)
    assert (stored.spike_min_impact_cents, stored.z_threshold) == (500.0, 4.0)
    assert stored.monitored_dimensions == ["user", "feature"]
    assert stored.min_history_days is None  # the project default
    assert stored.updated_by == "user:operator"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spike_min_impact_cents", "-1"),
        ("drift_min_impact_pct", "-0.5"),
        ("z_threshold", "0.4"),
        ("z_threshold", "20.5"),
        ("min_history_days", "6"),
        ("min_history_days", "57"),
        ("suppression_days", "-1"),
        ("suppression_days", "366"),
        ("monitored_dimensions", '["user", "region"]'),
        ("monitored_dimensions", '"user"'),
        ("monitored_dimensions", '["user", "user"]'),
    ],
)
def test_settings_out_of_range_are_rejected(tenant, admin_client, field, value):
    response = admin_client.post(
        f"{SETTINGS}add/", {**SETTINGS_FIELDS, "tenant": tenant.pk, field: value}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    assert not DetectionSettings.objects.exists()


def test_settings_help_text_shows_default_and_effective_value(tenant, admin_client, settings):
    settings.ANALYTICS_DETECTION_DEFAULTS = {
        **settings.ANALYTICS_DETECTION_DEFAULTS,
        "z_threshold": 3.5,
        "min_history_days": 28,
    }
    stored = DetectionSettings.objects.create(tenant=tenant, z_threshold=5)

    response = admin_client.get(f"{SETTINGS}{stored.pk}/change/")

    fields = response.context["adminform"].form.fields
    assert fields["z_threshold"].help_text == ("Empty = project default (3.5). In effect now: 5.")
    assert fields["min_history_days"].help_text == (
        "Empty = project default (28). In effect now: 28."
    )
    assert "tenant" not in fields  # read-only once created
    add_page = admin_client.get(f"{SETTINGS}add/")
    assert add_page.context["adminform"].form.fields["z_threshold"].help_text == (
        "Empty = project default (3.5)."
    )


# --- Planned activity ----------------------------------------------------------------------


def plan_data(tenant, **overrides) -> dict:
    return {
        "tenant": tenant.pk,
        "starts_on": "2026-04-01",
        "ends_on": "2026-04-03",
        "entity_type": "feature",
        "entity_id": "chat",
        "expected_factor": "3",
        "note": "launch",
        **overrides,
    }


def test_plan_is_created_by_the_operator_and_keeps_its_author(tenant, admin_client, client):
    response = admin_client.post(f"{PLANS}add/", plan_data(tenant))

    assert response.status_code == 302
    plan = PlannedActivity.objects.get()
    assert (plan.entity_id, plan.expected_factor, plan.created_by) == ("chat", 3.0, "user:operator")
    assert admin_client.get(PLANS).status_code == 200

    # when another operator edits it, the author stays
    from django.contrib.auth import get_user_model

    other = get_user_model().objects.create_user(
        username="second", password="x", is_staff=True, is_superuser=True
    )
    client.force_login(other)
    client.post(f"{PLANS}{plan.pk}/change/", plan_data(tenant, expected_factor="2"))
    plan.refresh_from_db()
    assert (plan.expected_factor, plan.created_by) == (2.0, "user:operator")


def test_tenant_plan_stores_no_entity(tenant, admin_client):
    admin_client.post(f"{PLANS}add/", plan_data(tenant, entity_type="tenant", entity_id=""))

    assert PlannedActivity.objects.get().entity_id is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ends_on": "2026-03-31"}, "ends_on"),
        ({"entity_type": "tenant", "entity_id": "chat"}, "entity_id"),
        ({"entity_type": "model", "entity_id": ""}, "entity_id"),
        ({"expected_factor": "0"}, "expected_factor"),
    ],
)
def test_invalid_plans_are_rejected(tenant, admin_client, overrides, field):
    response = admin_client.post(f"{PLANS}add/", plan_data(tenant, **overrides))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors[field]
    assert not PlannedActivity.objects.exists()
