import psycopg
import pytest
from django.db import connection
from rest_framework.test import APIClient

from analytics.api import authentication
from analytics.models import ApiKey
from tests.factories import ApiKeyFactory, TenantFactory


def key_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {raw_key}")
    return client


@pytest.fixture(autouse=True)
def _forget_cached_api_keys():
    """Authentication keeps keys per process; a test's rolled-back keys must not outlive it."""
    yield
    authentication._usable_keys.clear()


@pytest.fixture
def tenant(db):
    return TenantFactory(slug="acme")


@pytest.fixture
def other_tenant(db):
    return TenantFactory(slug="globex")


@pytest.fixture
def api_key(tenant) -> tuple[ApiKey, str]:
    raw = ApiKey.generate_raw_key()
    return ApiKeyFactory(tenant=tenant, raw_key=raw), raw


@pytest.fixture
def api_client(api_key) -> APIClient:
    """A client authenticated with a (non-staff) key of `tenant`."""
    return key_client(api_key[1])


@pytest.fixture
def other_client(other_tenant) -> APIClient:
    """A client authenticated with a key of `other_tenant`."""
    raw = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=other_tenant, raw_key=raw)
    return key_client(raw)


@pytest.fixture
def staff_key_client(tenant) -> APIClient:
    raw = ApiKey.generate_raw_key()
    ApiKeyFactory(tenant=tenant, raw_key=raw, is_staff=True)
    return key_client(raw)


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.create_user(
        username="operator", password="operator-pass", is_staff=True, is_superuser=True
    )


@pytest.fixture
def staff_session_client(staff_user) -> APIClient:
    """A staff session with CSRF checks enforced, as a browser would have."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(staff_user)
    return client


@pytest.fixture
def other_session():
    """A second database session in autocommit, as another process would hold one."""
    db = connection.settings_dict
    conn = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    )
    yield conn
    conn.close()
