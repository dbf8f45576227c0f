"""`/model-prices/`: the tenant's own model prices."""

from decimal import Decimal

import pytest
import time_machine

from analytics.models import ModelPriceOverride
from tests.factories import ModelPriceOverrideFactory, utc

pytestmark = pytest.mark.django_db

URL = "/api/v1/model-prices/"
NOW = utc(2026, 3, 2, 10, 30)


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


@time_machine.travel(NOW, tick=False)
def test_create_with_defaults_and_read_back(api_client, tenant):
    # when
    response = api_client.post(
        URL,
        {
            "model": "ft:gpt-4o-mini:acme:",
            "match": "prefix",
            "input_cents_per_mtok": "30.5",
            "output_cents_per_mtok": 120,
        },
        format="json",
    )
    # then
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body == {
        "id": body["id"],
        "model": "ft:gpt-4o-mini:acme:",
        "match": "prefix",
        "provider": None,
        "input_cents_per_mtok": 30.5,
        "output_cents_per_mtok": 120,
        "cache_read_cents_per_mtok": None,
        "cache_write_cents_per_mtok": None,
        "effective_from": "2026-03-02T10:30:00Z",
        "created_at": "2026-03-02T10:30:00Z",
        "updated_at": "2026-03-02T10:30:00Z",
    }
    stored = ModelPriceOverride.objects.get(pk=body["id"])
    assert stored.tenant == tenant and stored.input_cents_per_mtok == Decimal("30.5")
    assert api_client.get(f"{URL}{body['id']}/").json() == body


def test_list_is_paginated_and_scoped_to_the_tenant(api_client, tenant, other_tenant):
    # given
    mine = [
        ModelPriceOverrideFactory(tenant=tenant, model=name, effective_from=utc(2026, 1, 1))
        for name in ("b-model", "a-model")
    ]
    ModelPriceOverrideFactory(tenant=other_tenant, model="c-model")
    # when
    response = api_client.get(URL)
    # then
    assert response.status_code == 200
    body = response.json()
    assert [item["model"] for item in body["results"]] == ["a-model", "b-model"]
    assert {item["id"] for item in body["results"]} == {item.pk for item in mine}
    assert "next" in body


def test_patch_and_delete(api_client, tenant):
    # given
    override = ModelPriceOverrideFactory(tenant=tenant, effective_from=utc(2026, 1, 1))
    # when
    patched = api_client.patch(
        f"{URL}{override.pk}/", {"cache_read_cents_per_mtok": "12.5"}, format="json"
    )
    deleted = api_client.delete(f"{URL}{override.pk}/")
    # then
    assert patched.status_code == 200
    assert patched.json()["cache_read_cents_per_mtok"] == 12.5
    assert patched.json()["effective_from"] == "2026-01-01T00:00:00Z"
    assert deleted.status_code == 204
    assert not ModelPriceOverride.objects.filter(pk=override.pk).exists()


def test_another_tenants_price_is_a_404(api_client, other_tenant):
    # given
    theirs = ModelPriceOverrideFactory(tenant=other_tenant)
    # when / then
    assert api_client.get(f"{URL}{theirs.pk}/").status_code == 404
    assert api_client.patch(f"{URL}{theirs.pk}/", {"model": "x"}, format="json").status_code == 404
    assert api_client.delete(f"{URL}{theirs.pk}/").status_code == 404
    assert ModelPriceOverride.objects.filter(pk=theirs.pk).exists()


def test_the_same_pattern_twice_at_one_instant_is_a_400(api_client, tenant):
    # given
    body = {
        "model": "gpt-4o",
        "input_cents_per_mtok": 1,
        "output_cents_per_mtok": 1,
        "effective_from": "2026-01-01T00:00:00Z",
    }
    assert api_client.post(URL, body, format="json").status_code == 201
    # when
    again = api_client.post(URL, body, format="json")
    # then
    assert again.status_code == 400
    assert ModelPriceOverride.objects.filter(tenant=tenant).count() == 1


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"model": ""}, "model", "may not be blank"),
        ({"model": "m" * 65}, "model", "no more than 64"),
        ({"match": "regex"}, "match", "not a valid choice"),
        ({"provider": ""}, "provider", "may not be blank"),
        ({"input_cents_per_mtok": -1}, "input_cents_per_mtok", "greater than or equal to 0"),
        ({"input_cents_per_mtok": "1.1234567"}, "input_cents_per_mtok", "6 decimal places"),
        ({"output_cents_per_mtok": "abc"}, "output_cents_per_mtok", "valid number"),
        ({"output_cents_per_mtok": 10**9}, "output_cents_per_mtok", "no more than"),
        ({"cache_write_cents_per_mtok": "NaN"}, "cache_write_cents_per_mtok", "valid number"),
        ({"effective_from": "2026-01-01T00:00:00"}, "effective_from", "timezone"),
        ({"effective_from": "3000-01-01T00:00:00Z"}, "effective_from", "2099"),
        ({"tenant": 2}, "tenant", "unknown field"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api_client, tenant, change, field, reason):
    # given
    body = {"model": "gpt-4o", "input_cents_per_mtok": 1, "output_cents_per_mtok": 1, **change}
    # when
    response = api_client.post(URL, body, format="json")
    # then
    assert response.status_code == 400
    assert reason in field_errors(response)[field]
    assert not ModelPriceOverride.objects.exists()


def test_prices_are_required_on_create(api_client, tenant):
    response = api_client.post(URL, {"model": "gpt-4o"}, format="json")
    assert response.status_code == 400
    assert set(field_errors(response)) == {"input_cents_per_mtok", "output_cents_per_mtok"}
