"""Records sent with tokens only are priced at ingest: catalogue, override, unpriced."""

from decimal import Decimal

import pytest
import time_machine
from prometheus_client import REGISTRY

from analytics.models import CostRecord, CostSnapshot, CostSource, SnapshotStatus, SnapshotType
from analytics.services.ingest import IdempotencyKeyConflict, cost_records_ingest
from analytics.services.price_catalog import CATALOG_VERSION
from tests.factories import BudgetFactory, ModelPriceOverrideFactory, utc

pytestmark = pytest.mark.django_db

URL = "/api/v1/cost-records/"
NOW = utc(2026, 3, 2, 10, 30)


def post(client, records):
    return client.post(URL, {"records": records}, format="json")


def field_errors(response) -> dict[str, str]:
    return {item["field"]: item["reason"] for item in response.json()["field_errors"]}


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def service_row(**fields) -> dict:
    row = {
        "idempotency_key": None,
        "user_id": None,
        "feature_tag": None,
        "request_id": None,
        "workflow_id": None,
        "run_id": None,
        "skill_id": None,
        "model": "gpt-4o",
        "provider": None,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost_cents": None,
        "is_retry": False,
        "created_at": None,
    }
    return {**row, **fields}


@time_machine.travel(NOW, tick=False)
def test_tokens_only_record_is_priced_from_the_catalogue(
    api_client, tenant, django_capture_on_commit_callbacks
):
    # given: gpt-4o lists $2.50 input, $1.25 cached input and $10 output per million tokens
    priced_before = counter("analytics_cost_records_priced_total", cost_source="catalog")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            api_client,
            [
                {
                    "model": "gpt-4o",
                    "provider": "openai",
                    "input_tokens": 10_000,
                    "cache_read_tokens": 4_000,
                    "output_tokens": 1_000,
                }
            ],
        )
    # then: 6000 x 250 + 4000 x 125 + 1000 x 1000 cents per million = 3 cents
    assert response.status_code == 201, response.json()
    assert response.json()["pricing"] == {
        "catalog": 1,
        "override": 0,
        "unpriced": 0,
        "unpriced_models": [],
    }
    stored = CostRecord.objects.get(tenant=tenant)
    assert stored.cost_cents == Decimal("3")
    assert stored.cost_source == CostSource.CATALOG
    assert stored.price_catalog_version == CATALOG_VERSION
    assert (stored.cache_read_tokens, stored.cache_write_tokens) == (4_000, 0)
    assert counter("analytics_cost_records_priced_total", cost_source="catalog") == (
        priced_before + 1
    )


@time_machine.travel(NOW, tick=False)
def test_client_cost_always_wins(api_client, tenant):
    # when
    response = post(
        api_client,
        [{"model": "gpt-4o", "input_tokens": 10_000, "output_tokens": 10, "cost_cents": "0.5"}],
    )
    # then
    assert response.status_code == 201
    stored = CostRecord.objects.get(tenant=tenant)
    assert (stored.cost_cents, stored.cost_source) == (Decimal("0.5"), CostSource.CLIENT)
    assert stored.price_catalog_version is None


@time_machine.travel(NOW, tick=False)
def test_unknown_model_is_stored_unpriced_never_free(
    api_client, tenant, django_capture_on_commit_callbacks
):
    # given
    before = counter("analytics_cost_records_priced_total", cost_source="unpriced")
    # when
    with django_capture_on_commit_callbacks(execute=True):
        response = post(
            api_client,
            [
                {"model": "acme-internal-llm", "input_tokens": 500, "output_tokens": 20},
                {"model": "acme-internal-llm", "input_tokens": 5, "output_tokens": 0},
                {"model": "llama-3.1-70b", "provider": "vllm", "input_tokens": 5},
            ],
        )
    # then
    assert response.status_code == 201
    assert response.json()["pricing"] == {
        "catalog": 0,
        "override": 0,
        "unpriced": 3,
        "unpriced_models": ["acme-internal-llm", "llama-3.1-70b"],
    }
    rows = CostRecord.objects.filter(tenant=tenant)
    assert {(row.cost_source, row.cost_cents) for row in rows} == {(CostSource.UNPRICED, None)}
    assert counter("analytics_cost_records_priced_total", cost_source="unpriced") == before + 3


@time_machine.travel(NOW, tick=False)
def test_override_in_effect_at_created_at_wins_over_the_catalogue(api_client, tenant):
    # given: a negotiated gpt-4o price from 1 March, noon
    ModelPriceOverrideFactory(
        tenant=tenant,
        model="gpt-4o",
        input_cents_per_mtok=Decimal("100"),
        output_cents_per_mtok=Decimal("400"),
        effective_from=utc(2026, 3, 1, 12),
    )
    tokens = {"model": "gpt-4o", "input_tokens": 1_000_000, "output_tokens": 1_000_000}
    # when: one call just before the boundary, one at it
    response = post(
        api_client,
        [
            {**tokens, "created_at": "2026-03-01T11:59:59.999999Z", "idempotency_key": "a"},
            {**tokens, "created_at": "2026-03-01T12:00:00Z", "idempotency_key": "b"},
        ],
    )
    # then: catalogue before ($2.50 + $10), override from the boundary on ($1 + $4)
    assert response.status_code == 201
    before = CostRecord.objects.get(tenant=tenant, idempotency_key="a")
    after = CostRecord.objects.get(tenant=tenant, idempotency_key="b")
    assert (before.cost_source, before.cost_cents) == (CostSource.CATALOG, Decimal("1250"))
    assert (after.cost_source, after.cost_cents) == (CostSource.OVERRIDE, Decimal("500"))
    assert response.json()["pricing"]["override"] == 1


@time_machine.travel(NOW, tick=False)
def test_another_tenants_override_does_not_apply(api_client, tenant, other_tenant):
    # given
    ModelPriceOverrideFactory(
        tenant=other_tenant, model="acme-internal-llm", effective_from=utc(2020, 1, 1)
    )
    # when
    response = post(api_client, [{"model": "acme-internal-llm", "input_tokens": 10}])
    # then
    assert response.status_code == 201
    assert CostRecord.objects.get(tenant=tenant).cost_source == CostSource.UNPRICED


@time_machine.travel(NOW, tick=False)
def test_resending_a_priced_record_is_a_duplicate_and_a_cost_makes_it_a_conflict(
    api_client, tenant
):
    # given
    sent = {"idempotency_key": "k", "model": "gpt-4o", "input_tokens": 100, "output_tokens": 1}
    assert post(api_client, [sent]).status_code == 201
    # when
    again = post(api_client, [sent])
    with_cost = post(api_client, [{**sent, "cost_cents": "0.1"}])
    other_cache = post(api_client, [{**sent, "cache_read_tokens": 50}])
    # then
    assert (again.status_code, again.json()["duplicates"]) == (201, 1)
    assert with_cost.status_code == 409
    assert other_cache.status_code == 409
    assert CostRecord.objects.filter(tenant=tenant).count() == 1


def test_service_prices_rows_without_cache_columns_and_marks_snapshots_stale(tenant):
    # given: callers other than the batch API may leave the cache counts out
    period = utc(2026, 3, 2, 10)
    CostSnapshot.objects.create(
        tenant=tenant,
        snapshot_type=SnapshotType.HOURLY,
        period_start=period,
        period_end=utc(2026, 3, 2, 11),
        status=SnapshotStatus.COMPLETE,
    )
    rows = [
        service_row(model="claude-3-5-haiku", provider="anthropic", input_tokens=1_000_000),
        service_row(model="nobody-knows", input_tokens=1),
    ]
    # when
    result = cost_records_ingest(tenant=tenant, records=rows, received_at=NOW)
    # then: claude 3.5 haiku lists $0.80 per million input tokens
    assert result.accepted == 2 and result.snapshots_marked_stale == 1
    assert (result.pricing.catalog, result.pricing.unpriced) == (1, 1)
    priced = CostRecord.objects.get(tenant=tenant, model="claude-3-5-haiku")
    assert priced.cost_cents == Decimal("80")


def test_service_conflict_compares_cache_counts_within_a_batch(tenant):
    rows = [
        service_row(idempotency_key="k", input_tokens=10),
        service_row(idempotency_key="k", input_tokens=10, cache_read_tokens=5),
    ]
    with pytest.raises(IdempotencyKeyConflict):
        cost_records_ingest(tenant=tenant, records=rows, received_at=NOW)


@time_machine.travel(NOW, tick=False)
def test_bad_pricing_input_is_a_400_naming_the_field(api_client, tenant):
    # when
    response = post(
        api_client,
        [
            {"model": "gpt-4o"},
            {
                "model": "gpt-4o",
                "input_tokens": 10,
                "cache_read_tokens": 8,
                "cache_write_tokens": 3,
            },
            {"model": "gpt-4o", "input_tokens": 10, "cache_read_tokens": -1},
            {"model": "gpt-4o", "input_tokens": 10, "cache_write_tokens": "3"},
            {"model": "gpt-4o", "cost_cents": None},
        ],
    )
    # then
    assert response.status_code == 400
    errors = field_errors(response)
    assert errors["records[0].cost_cents"].startswith("is required unless")
    assert "must not exceed input_tokens" in errors["records[1].cache_read_tokens"]
    assert errors["records[2].cache_read_tokens"] == "must be greater than or equal to 0"
    assert errors["records[3].cache_write_tokens"] == "must be an integer"
    assert errors["records[4].cost_cents"].startswith("is required unless")
    assert not CostRecord.objects.filter(tenant=tenant).exists()


@time_machine.travel(NOW, tick=False)
def test_budget_status_counts_unpriced_records_and_leaves_them_out_of_spend(api_client, tenant):
    # given: a daily and monthly tenant budget; today one priced and two unpriced calls,
    # earlier this month one more unpriced call
    budget = BudgetFactory(tenant=tenant, daily_limit_cents=1000, monthly_limit_cents=10_000)
    today, earlier = "2026-03-02T09:00:00Z", "2026-03-01T09:00:00Z"
    sent = post(
        api_client,
        [
            {"model": "gpt-4o", "input_tokens": 1_000_000, "created_at": today},
            {"model": "acme-internal-llm", "input_tokens": 10, "created_at": today},
            {"model": "acme-internal-llm", "input_tokens": 20, "created_at": today},
            {"model": "acme-internal-llm", "input_tokens": 30, "created_at": earlier},
        ],
    )
    assert sent.status_code == 201, sent.json()
    # when
    response = api_client.get(f"/api/v1/budgets/{budget.pk}/status/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["daily"]["spend_cents"], body["daily"]["unpriced_records"]) == (250, 2)
    assert (body["monthly"]["spend_cents"], body["monthly"]["unpriced_records"]) == (250, 3)
