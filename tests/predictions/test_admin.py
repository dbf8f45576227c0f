"""The predictions admin: read-only, with validity and confidence filters."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.predictions.factories import PredictionFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/predictions/prediction/"


@pytest.fixture
def admin_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_validity_and_confidence_filters(admin_client, tenant):
    # given
    now = timezone.now()
    PredictionFactory(tenant=tenant, subject_id="valid-high", confidence_score=0.9)
    PredictionFactory(tenant=tenant, subject_id="valid-low", confidence_score=0.7)
    PredictionFactory(
        tenant=tenant, subject_id="expired", created_at=now - timedelta(days=2), expires_at=now
    )

    def subjects(params):
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200
        return set(response.context["cl"].queryset.values_list("subject_id", flat=True))

    # then
    assert subjects({"validity": "valid"}) == {"valid-high", "valid-low"}
    assert subjects({"validity": "expired"}) == {"expired"}
    assert subjects({"confidence": "high"}) == {"valid-high"}
    assert subjects({"q": "valid-low"}) == {"valid-low"}


def test_predictions_are_read_only(admin_client, tenant):
    prediction = PredictionFactory(tenant=tenant)
    assert admin_client.get(f"{CHANGELIST}{prediction.pk}/change/").status_code == 200
    response = admin_client.post(f"{CHANGELIST}{prediction.pk}/change/", {"confidence_score": 1})
    assert response.status_code == 403
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    assert (
        admin_client.post(f"{CHANGELIST}{prediction.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
