from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.conftest import key_client
from tests.factories import TenantFactory

pytestmark = pytest.mark.django_db


def test_prints_a_working_key_for_an_existing_tenant_on_the_last_line(tenant):
    # when
    out = StringIO()
    call_command("create_api_key", "acme", stdout=out)
    # then
    raw_key = out.getvalue().strip().splitlines()[-1]
    assert tenant.api_keys.get().name == "cli"
    assert key_client(raw_key).get("/api/v1/feature-tags/").status_code == 200


def test_each_call_adds_a_key(tenant):
    # when
    first, second = StringIO(), StringIO()
    call_command("create_api_key", "acme", "--name", "ci", stdout=first)
    call_command("create_api_key", "acme", stdout=second)
    # then
    assert first.getvalue().splitlines()[-1] != second.getvalue().splitlines()[-1]
    assert sorted(tenant.api_keys.values_list("name", flat=True)) == ["ci", "cli"]


@pytest.mark.parametrize(
    ("slug", "message"),
    [("nobody", "Unknown tenant 'nobody'"), ("sleepy", "Tenant 'sleepy' is inactive")],
)
def test_refuses_unknown_and_inactive_tenants(slug, message):
    # given
    TenantFactory(slug="sleepy", is_active=False)
    # then
    with pytest.raises(CommandError, match=message):
        call_command("create_api_key", slug, stdout=StringIO())
