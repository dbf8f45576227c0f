import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.models import ApiKey, Tenant
from costsim.models import BREAKER_NAME, CircuitBreaker
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


# --- revocation takes effect on the next request, on every endpoint ---------------------------

SIMULATION_BODY = {
    "plan": [{"skill": "llm_invoke", "params": {"prompt": "Summarise this."}}],
    "budget_cents": 100,
}
# (method, path, body): one or more endpoints of every family a tenant key reaches.
ENDPOINTS = [
    ("post", "/api/v1/cost-records/", {"records": [{"model": "m", "cost_cents": 1}]}),
    ("post", "/api/v1/runs/", {"runs": [{"id": "r", "worker_id": "w", "status": "running"}]}),
    ("get", "/api/v1/cost-records/", None),
    ("get", "/api/v1/runs/", None),
    ("get", "/api/v1/snapshots/", None),
    ("get", "/api/v1/anomalies/", None),
    ("get", "/api/v1/incidents/", None),
    ("get", "/api/v1/budgets/", None),
    ("get", "/api/v1/analytics/cost/", {"from": "2026-03-01", "to": "2026-03-02"}),
    ("post", "/api/v1/costsim/simulate/", SIMULATION_BODY),
    ("post", "/api/v1/costsim/v1/simulate/", SIMULATION_BODY),
    ("post", "/api/v1/costsim/v2/simulate/", SIMULATION_BODY),
    ("get", "/api/v1/costsim/status/", None),
    ("get", "/api/v1/costsim/provenance/", None),
    ("get", "/api/v1/costsim/incidents/", None),
    ("get", "/api/v1/costsim/canary/reports/", None),
    ("get", "/api/v1/costsim/datasets/", None),
    ("get", "/api/v1/feedback/", None),
    ("get", "/api/v1/feedback/stats/", None),
    ("get", "/api/v1/predictions/", None),
    ("get", "/api/v1/predictions/stats/", None),
]


def call(client, method, path, body):
    if method == "get":
        return client.get(path, body)
    return client.post(path, body, format="json")


def revoke_with_model_save(key, client, staff_user):
    key.revoked_at = timezone.now()
    key.save()


def revoke_with_bulk_update(key, client, staff_user):
    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())


def revoke_with_admin_action(key, client, staff_user):
    client.force_login(staff_user)
    response = client.post(
        "/admin/analytics/apikey/", {"action": "revoke", "_selected_action": [key.pk]}
    )
    assert response.status_code == 302


def deactivate_tenant(key, client, staff_user):
    Tenant.objects.filter(pk=key.tenant_id).update(is_active=False)


@pytest.mark.parametrize(
    "revoke",
    [revoke_with_model_save, revoke_with_bulk_update, revoke_with_admin_action, deactivate_tenant],
)
def test_revoked_key_is_refused_by_the_very_next_request_everywhere(
    api_key, client, staff_user, revoke
):
    # given: the key has just worked on every endpoint (anything a process could remember)
    key, raw = api_key
    key_client_ = key_client(raw)
    CircuitBreaker.objects.get_or_create(name=BREAKER_NAME)
    warm = [call(key_client_, *endpoint).status_code for endpoint in ENDPOINTS]
    assert 401 not in warm and max(warm) < 500
    # when
    revoke(key, client, staff_user)
    # then
    for endpoint in ENDPOINTS:
        response = call(key_client_, *endpoint)
        assert response.status_code == 401, endpoint
        assert response.json()["error"] == "authentication_failed"


def test_a_request_authenticates_with_one_query(api_client, django_assert_num_queries):
    # given: a warm key (last_used_at fresh)
    api_client.get(URL)
    # when / then: the key lookup, then the page of feature tags
    with django_assert_num_queries(2):
        assert api_client.get(URL).status_code == 200
