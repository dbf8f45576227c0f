import pytest

from analytics.models import CostRecord, FeatureTag
from tests.factories import CostRecordFactory, FeatureTagFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/feature-tags/"


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


def test_create_returns_the_item_with_defaults(api_client, tenant):
    # when
    response = api_client.post(URL, {"tag": "chat.v2", "display_name": "Chat"}, format="json")
    # then
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "tag",
        "display_name",
        "description",
        "budget_cents",
        "is_active",
        "created_at",
        "updated_at",
    }
    assert (body["tag"], body["description"], body["budget_cents"], body["is_active"]) == (
        "chat.v2",
        "",
        None,
        True,
    )
    assert body["created_at"].endswith("Z")
    assert FeatureTag.objects.get(pk=body["id"]).tenant == tenant


def test_duplicate_tag_is_400_on_tag(api_client, tenant, other_tenant):
    # given: the same tag in another tenant does not count
    FeatureTagFactory(tenant=tenant, tag="chat")
    FeatureTagFactory(tenant=other_tenant, tag="search")
    # when
    duplicate = api_client.post(URL, {"tag": "chat", "display_name": "Chat"}, format="json")
    other = api_client.post(URL, {"tag": "search", "display_name": "Search"}, format="json")
    # then
    assert duplicate.status_code == 400
    assert field_errors(duplicate) == {"tag": "a feature tag with this tag already exists"}
    assert other.status_code == 201
    assert FeatureTag.objects.filter(tenant=tenant).count() == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"tag": "has space", "display_name": "x"}, "tag"),
        ({"tag": "t" * 129, "display_name": "x"}, "tag"),
        ({"tag": "ok"}, "display_name"),
        ({"tag": "ok", "display_name": "x", "budget_cents": -1}, "budget_cents"),
        ({"tag": "ok", "display_name": "x", "tenant": 1}, "tenant"),
        ({"tag": "ok", "display_name": "x", "id": 5}, "id"),
    ],
)
def test_invalid_tag_is_400_naming_the_field(api_client, body, field):
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert field in field_errors(response)
    assert FeatureTag.objects.count() == 0


def test_update_and_partial_update(api_client, tenant):
    # given
    tag = FeatureTagFactory(tenant=tenant, tag="chat", display_name="Chat")
    # when
    put = api_client.put(
        f"{URL}{tag.id}/",
        {"tag": "chat", "display_name": "Chat v2", "budget_cents": 500},
        format="json",
    )
    patch = api_client.patch(f"{URL}{tag.id}/", {"is_active": False}, format="json")
    # then
    assert put.status_code == 200
    assert patch.status_code == 200
    tag.refresh_from_db()
    assert (tag.display_name, tag.budget_cents, tag.is_active) == ("Chat v2", 500, False)


def test_renaming_onto_an_existing_tag_is_400(api_client, tenant):
    FeatureTagFactory(tenant=tenant, tag="chat")
    search = FeatureTagFactory(tenant=tenant, tag="search")
    response = api_client.patch(f"{URL}{search.id}/", {"tag": "chat"}, format="json")
    assert response.status_code == 400
    assert "tag" in field_errors(response)
    search.refresh_from_db()
    assert search.tag == "search"


def test_delete_leaves_cost_records_alone(api_client, tenant):
    # given
    tag = FeatureTagFactory(tenant=tenant, tag="chat")
    CostRecordFactory(tenant=tenant, feature_tag="chat")
    # when
    response = api_client.delete(f"{URL}{tag.id}/")
    # then
    assert response.status_code == 204
    assert not FeatureTag.objects.filter(pk=tag.pk).exists()
    assert CostRecord.objects.get(tenant=tenant).feature_tag == "chat"


def test_another_tenants_tag_is_404_for_every_verb(api_client, other_tenant):
    # given
    theirs = FeatureTagFactory(tenant=other_tenant, tag="secret", display_name="Secret")
    url = f"{URL}{theirs.id}/"
    # when
    responses = [
        api_client.get(url),
        api_client.put(url, {"tag": "x", "display_name": "x"}, format="json"),
        api_client.patch(url, {"display_name": "x"}, format="json"),
        api_client.delete(url),
    ]
    # then
    assert [response.status_code for response in responses] == [404, 404, 404, 404]
    theirs.refresh_from_db()
    assert theirs.display_name == "Secret"


def test_list_is_ordered_by_tag_and_scoped(api_client, tenant, other_tenant):
    # given
    for tag in ("search", "chat", "summarize"):
        FeatureTagFactory(tenant=tenant, tag=tag)
    FeatureTagFactory(tenant=other_tenant, tag="aaa")
    # when
    response = api_client.get(URL)
    # then
    assert [item["tag"] for item in response.json()["results"]] == ["chat", "search", "summarize"]


def test_list_query_count_is_fixed(api_client, tenant, django_assert_num_queries):
    FeatureTagFactory.create_batch(25, tenant=tenant)
    api_client.get(URL)
    with django_assert_num_queries(2):
        response = api_client.get(URL)
    assert len(response.json()["results"]) == 25
