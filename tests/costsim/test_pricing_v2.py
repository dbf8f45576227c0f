"""V2 prices steps that name a model and token counts; V1 ignores them."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from analytics.models import ModelPriceOverride
from analytics.services.price_catalog import OverrideRule, Rate
from costsim.services.estimators import estimate_v1, estimate_v2

AT = datetime(2026, 3, 2, 12, tzinfo=UTC)
SIMULATE_V2 = "/api/v1/costsim/v2/simulate/"


def llm_step(**params):
    return {"skill": "llm_invoke", "params": {"prompt": "x" * 3000, **params}, "iterations": 2}


def test_a_step_with_model_and_tokens_costs_its_catalogue_price():
    # given: gpt-4o lists $2.50 input, $1.25 cached input, $10 output per million tokens
    step = llm_step(
        model="gpt-4o", input_tokens=200_000, cache_read_tokens=100_000, output_tokens=50_000
    )
    # when
    result = estimate_v2([step], budget_cents=10_000, priced_at=AT)
    # then: (100k x 250 + 100k x 125 + 50k x 1000) / 1M = 87.5 cents, twice
    assert result.step_estimates[0].cost_cents == 175.0
    assert result.estimated_cost_cents == 175
    assert result.warnings == []


def test_the_tenants_override_in_effect_wins():
    # given
    override = OverrideRule(
        model="gpt-4o",
        prefix=False,
        provider=None,
        effective_from=datetime(2026, 3, 1, tzinfo=UTC),
        rate=Rate(input=Decimal(100), output=Decimal(400)),
    )
    step = llm_step(model="gpt-4o", input_tokens=1_000_000, output_tokens=1_000_000)
    # when
    before = estimate_v2(
        [step],
        budget_cents=10**6,
        price_overrides=[override],
        priced_at=datetime(2026, 2, 28, tzinfo=UTC),
    )
    after = estimate_v2([step], budget_cents=10**6, price_overrides=[override], priced_at=AT)
    # then
    assert before.step_estimates[0].cost_cents == 2 * 1250.0
    assert after.step_estimates[0].cost_cents == 2 * 500.0


def test_an_unpriced_model_keeps_the_table_estimate_and_says_so():
    # given
    plain = estimate_v2([llm_step()], priced_at=AT)
    # when
    unknown = estimate_v2([llm_step(model="acme-llm", input_tokens=10)], priced_at=AT)
    # then
    assert unknown.step_estimates[0].cost_cents == plain.step_estimates[0].cost_cents
    assert unknown.warnings == [
        "Model 'acme-llm' of step 0 has no price: estimated from the skill table"
    ]


def test_v1_and_steps_without_tokens_are_unchanged():
    # given
    step = llm_step(model="gpt-4o", input_tokens=1_000_000)
    # when / then
    assert estimate_v1([step]).to_dict() == estimate_v1([llm_step()]).to_dict()
    model_only = estimate_v2([llm_step(model="gpt-4o")], priced_at=AT)
    assert model_only.output_hash == estimate_v2([llm_step()], priced_at=AT).output_hash


@pytest.mark.django_db
@pytest.mark.parametrize(
    "params, field, reason",
    [
        ({"model": 5, "input_tokens": 1}, "model", "must be a string"),
        ({"model": "", "input_tokens": 1}, "model", "must be a string"),
        ({"model": "gpt-4o", "provider": ["x"]}, "provider", "must be a string"),
        ({"model": "gpt-4o", "input_tokens": -1}, "input_tokens", "must be an integer"),
        ({"model": "gpt-4o", "output_tokens": 1.5}, "output_tokens", "must be an integer"),
        ({"model": "gpt-4o", "input_tokens": True}, "input_tokens", "must be an integer"),
        ({"model": "gpt-4o", "input_tokens": 10**10}, "input_tokens", "must be an integer"),
        (
            {"model": "gpt-4o", "input_tokens": 5, "cache_read_tokens": 6},
            "input_tokens",
            "at least cache_read_tokens",
        ),
    ],
)
def test_bad_priced_step_params_are_a_400(api_client, params, field, reason):
    # when
    response = api_client.post(
        SIMULATE_V2, {"plan": [{"skill": "llm_invoke", "params": params}]}, format="json"
    )
    # then
    assert response.status_code == 400
    errors = {item["field"]: item["reason"] for item in response.json()["field_errors"]}
    assert reason in errors[f"plan[0].params.{field}"]


@pytest.mark.django_db
def test_v2_endpoint_prices_a_step_with_tokens(api_client):
    # when
    response = api_client.post(
        SIMULATE_V2,
        {
            "plan": [
                {
                    "skill": "llm_invoke",
                    "params": {"model": "gpt-4o-mini", "input_tokens": 1_000_000},
                }
            ],
            "budget_cents": 1000,
        },
        format="json",
    )
    # then: gpt-4o-mini lists $0.15 per million input tokens
    assert response.status_code == 200, response.json()
    assert response.json()["v2"]["step_estimates"][0]["cost_cents"] == 15.0


@pytest.mark.django_db
def test_the_v2_endpoint_uses_the_callers_price_overrides(api_client, tenant, other_client):
    # given: the tenant pays $1 per million input tokens of gpt-4o-mini instead of $0.15
    ModelPriceOverride.objects.create(
        tenant=tenant,
        model="gpt-4o-mini",
        effective_from=datetime(2020, 1, 1, tzinfo=UTC),
        input_cents_per_mtok=Decimal(100),
        output_cents_per_mtok=Decimal(400),
    )
    body = {
        "plan": [
            {"skill": "llm_invoke", "params": {"model": "gpt-4o-mini", "input_tokens": 1_000_000}}
        ],
        "budget_cents": 1000,
    }
    # when
    own = api_client.post(SIMULATE_V2, body, format="json")
    other = other_client.post(SIMULATE_V2, body, format="json")
    # then: another tenant still gets the list price
    assert own.json()["v2"]["step_estimates"][0]["cost_cents"] == 100.0
    assert other.json()["v2"]["step_estimates"][0]["cost_cents"] == 15.0
