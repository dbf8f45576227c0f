import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import key_client

pytestmark = pytest.mark.django_db

# Any tenant-scoped list endpoint works for auth checks; feature tags is the simplest.
URL = "/api/v1/feature-tags/"


def test_missing_credentials_is_401_with_challenge():
    # when
    response = APIClient().get(URL)
    # then
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Api-Key"


def test_unknown_key_is_401():
    response = key_client("ck_" + "x" * 40).get(URL)
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_revoked_key_is_401(api_key):
    # given
    key, raw = api_key
    key.revoked_at = timezone.now()
    key.save()
    # when
    response = key_client(raw).get(URL)
    # then
    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_key_of_inactive_tenant_is_401(api_key, tenant):
    tenant.is_active = False
    tenant.save()
    response = key_client(api_key[1]).get(URL)
    assert response.status_code == 401


def test_staff_session_on_tenant_endpoint_is_403_tenant_required(staff_session_client):
    response = staff_session_client.get(URL)
    assert response.status_code == 403
    assert response.json()["error"] == "tenant_required"


def test_valid_key_records_last_used(api_key, api_client):
    # given
    key, _ = api_key
    assert key.last_used_at is None
    # when
    api_client.get(URL)
    # then
    key.refresh_from_db()
    assert key.last_used_at is not None
