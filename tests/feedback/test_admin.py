"""The pattern feedback admin: filters, search and the acknowledge action."""

import pytest
from django.contrib.messages import get_messages

from feedback.admin import acknowledge_feedback
from feedback.models import PatternFeedback
from tests.feedback.factories import PatternFeedbackFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/feedback/patternfeedback/"


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_acknowledge_helper_reports_changed_and_already_acknowledged(tenant):
    # given
    PatternFeedbackFactory.create_batch(2, tenant=tenant)
    PatternFeedbackFactory(tenant=tenant, acknowledged=True, acknowledged_at="2026-03-02T00:00:00Z")
    # when
    changed, already = acknowledge_feedback(
        queryset=PatternFeedback.objects.all(), actor="user:ops"
    )
    # then
    assert (changed, already) == (2, 1)
    assert PatternFeedback.objects.filter(acknowledged=False).count() == 0


def test_acknowledge_action_from_the_changelist(admin_client, tenant, other_tenant):
    # given: staff act across tenants
    mine = PatternFeedbackFactory(tenant=tenant)
    theirs = PatternFeedbackFactory(tenant=other_tenant)
    untouched = PatternFeedbackFactory(tenant=tenant)
    # when
    response = admin_client.post(
        CHANGELIST,
        {"action": "acknowledge", "_selected_action": [str(mine.pk), str(theirs.pk)]},
        follow=True,
    )
    # then
    assert response.status_code == 200
    messages = [str(message) for message in get_messages(response.wsgi_request)]
    assert "2 feedback item(s) acknowledged; 0 already acknowledged." in messages
    mine.refresh_from_db()
    theirs.refresh_from_db()
    untouched.refresh_from_db()
    assert mine.acknowledged and theirs.acknowledged and not untouched.acknowledged
    assert mine.acknowledged_by == "user:operator"


def test_changelist_filters_and_search(admin_client, tenant):
    PatternFeedbackFactory(
        tenant=tenant, signature="cost_spike_worker-x", pattern_type="cost_spike"
    )
    PatternFeedbackFactory(tenant=tenant, signature="aaaabbbbccccdddd")
    response = admin_client.get(CHANGELIST, {"pattern_type__exact": "cost_spike"})
    assert response.status_code == 200
    assert list(response.context["cl"].queryset.values_list("signature", flat=True)) == [
        "cost_spike_worker-x"
    ]
    response = admin_client.get(CHANGELIST, {"q": "aaaabbbb"})
    assert response.context["cl"].result_count == 1
    response = admin_client.get(
        CHANGELIST, {"acknowledged__exact": "1", "tenant__id__exact": tenant.pk}
    )
    assert response.context["cl"].result_count == 0


def test_detail_is_read_only_and_adding_is_not_offered(admin_client, tenant):
    feedback = PatternFeedbackFactory(tenant=tenant)
    response = admin_client.get(f"{CHANGELIST}{feedback.pk}/change/")
    assert response.status_code == 200
    response = admin_client.post(f"{CHANGELIST}{feedback.pk}/change/", {"severity": "critical"})
    assert response.status_code == 403
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
