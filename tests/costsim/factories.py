"""factory_boy factories for the costsim models.

ProvenanceFactory builds a real V2 comparison by default: the plan, budget and allowlist
(factory parameters, not model fields) run through both estimators, so input_hash,
output_json, output_hash, costs, drift score and verdict agree with each other exactly as
a sandbox row would. Override any field to fake something the estimators cannot produce.
"""

import factory
from django.conf import settings
from django.utils import timezone

from analytics.hashing import short_hash
from costsim.models import Provenance, ProvenanceSource, Variant
from costsim.services.drift import compare
from costsim.services.estimators import estimate_v1, estimate_v2
from tests.factories import TenantFactory

DEFAULT_PLAN = [
    {"skill": "http_call", "params": {"url": "https://api.example.com"}},
    {"skill": "llm_invoke", "params": {"prompt": "Analyze this data..."}},
    {"skill": "json_transform", "params": {"query": "$.result"}},
]


def _input_json(o) -> dict:
    value = {"plan": o.plan, "budget_cents": o.budget_cents}
    if o.allowed_skills is not None:
        value["allowed_skills"] = o.allowed_skills
    return value


def _v1(o):
    return estimate_v1(o.plan, budget_cents=o.budget_cents, allowed_skills=o.allowed_skills)


def _v2(o):
    return estimate_v2(
        o.plan,
        budget_cents=o.budget_cents,
        allowed_skills=o.allowed_skills,
        model_version=settings.COSTSIM_MODEL_VERSION,
        adapter_version=settings.COSTSIM_ADAPTER_VERSION,
        commit_sha=settings.GIT_COMMIT_SHA,
    )


class ProvenanceFactory(factory.django.DjangoModelFactory):
    """A V2 sandbox comparison row; `plan`, `budget_cents`, `allowed_skills` drive it.

    `ProvenanceFactory(tenant=t, plan=[...], budget_cents=50)` gives a consistent row; a
    V1 baseline row as the backfill writes it comes from `BackfillProvenanceFactory`.
    """

    class Meta:
        model = Provenance
        exclude = ("v1_result", "v2_result", "cmp")

    class Params:
        plan = factory.LazyFunction(lambda: [dict(step) for step in DEFAULT_PLAN])
        budget_cents = 100
        allowed_skills = None

    v1_result = factory.LazyAttribute(_v1)
    v2_result = factory.LazyAttribute(_v2)
    cmp = factory.LazyAttribute(lambda o: compare(o.v1_result, o.v2_result))

    tenant = factory.SubFactory(TenantFactory)
    run_id = None
    variant_slug = Variant.V2
    source = ProvenanceSource.SANDBOX
    model_version = factory.LazyFunction(lambda: settings.COSTSIM_MODEL_VERSION)
    adapter_version = factory.LazyFunction(lambda: settings.COSTSIM_ADAPTER_VERSION)
    commit_sha = factory.LazyFunction(lambda: settings.GIT_COMMIT_SHA)
    input_json = factory.LazyAttribute(_input_json)
    input_hash = factory.LazyAttribute(lambda o: short_hash(o.input_json))
    output_json = factory.LazyAttribute(lambda o: o.v2_result.to_dict())
    output_hash = factory.LazyAttribute(lambda o: o.v2_result.output_hash)
    v1_cost = factory.LazyAttribute(lambda o: o.v1_result.estimated_cost_cents)
    v2_cost = factory.LazyAttribute(lambda o: o.v2_result.estimated_cost_cents)
    cost_delta = factory.LazyAttribute(
        lambda o: None if o.v1_cost is None or o.v2_cost is None else o.v2_cost - o.v1_cost
    )
    drift_score = factory.LazyAttribute(lambda o: o.cmp.drift_score)
    verdict = factory.LazyAttribute(lambda o: o.cmp.verdict)
    v2_status = factory.LazyAttribute(lambda o: o.v2_result.status)
    runtime_ms = factory.LazyAttribute(lambda o: o.v2_result.runtime_ms)
    created_at = factory.LazyFunction(timezone.now)


class BackfillProvenanceFactory(factory.django.DjangoModelFactory):
    """A V1 baseline row as `backfill_provenance` writes it (only v1_cost set)."""

    class Meta:
        model = Provenance

    tenant = factory.SubFactory(TenantFactory)
    run_id = None
    variant_slug = Variant.V1
    source = ProvenanceSource.BACKFILL
    model_version = factory.LazyFunction(lambda: settings.COSTSIM_MODEL_VERSION)
    adapter_version = factory.LazyFunction(lambda: settings.COSTSIM_ADAPTER_VERSION)
    commit_sha = factory.LazyFunction(lambda: settings.GIT_COMMIT_SHA)
    input_json = factory.Sequence(lambda n: {"plan": [{"skill": f"skill_{n}"}]})
    input_hash = factory.LazyAttribute(lambda o: short_hash(o.input_json))
    output_json = None
    output_hash = ""
    v1_cost = 10
    created_at = factory.LazyFunction(timezone.now)
