"""factory_boy factories for the base (analytics) models.

Factories of other apps live beside their tests (tests/<app>/factories.py).
"""

from datetime import UTC, datetime
from decimal import Decimal

import factory
from django.utils import timezone

from analytics.models import (
    ApiKey,
    Budget,
    BudgetType,
    CostRecord,
    CostRecordKey,
    FeatureTag,
    ModelPriceOverride,
    RunRecord,
    RunStatus,
    Tenant,
)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"tenant-{n}")
    name = factory.LazyAttribute(lambda o: o.slug.title())
    is_active = True


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """Build with `raw_key=...` to know the key; the default is a fresh random one."""

    class Meta:
        model = ApiKey
        exclude = ("raw_key",)

    tenant = factory.SubFactory(TenantFactory)
    name = "test"
    raw_key = factory.LazyFunction(ApiKey.generate_raw_key)
    prefix = factory.LazyAttribute(lambda o: o.raw_key[:11])
    key_hash = factory.LazyAttribute(lambda o: ApiKey.hash_key(o.raw_key))
    is_staff = False


class CostRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CostRecord
        skip_postgeneration_save = True

    tenant = factory.SubFactory(TenantFactory)
    model = "gpt-4o-mini"
    provider = "openai"
    input_tokens = 100
    output_tokens = 50
    cost_cents = Decimal("1.5")
    created_at = factory.LazyFunction(timezone.now)
    ingested_at = factory.LazyFunction(timezone.now)

    @factory.post_generation
    def key(record, create, extracted, **kwargs):
        """Keys are unique per tenant through their own table, as ingest writes them."""
        if create and record.idempotency_key is not None:
            CostRecordKey.objects.create(
                tenant_id=record.tenant_id,
                idempotency_key=record.idempotency_key,
                record_id=record.pk,
                created_at=record.created_at,
            )


class RunRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = RunRecord

    tenant = factory.SubFactory(TenantFactory)
    run_id = factory.Sequence(lambda n: f"run-{n}")
    worker_id = "worker-a"
    status = RunStatus.COMPLETED
    created_at = factory.LazyFunction(timezone.now)
    ingested_at = factory.LazyFunction(timezone.now)
    updated_at = factory.LazyFunction(timezone.now)


class FeatureTagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = FeatureTag

    tenant = factory.SubFactory(TenantFactory)
    tag = factory.Sequence(lambda n: f"feature-{n}")
    display_name = factory.LazyAttribute(lambda o: o.tag.title())


class BudgetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Budget

    tenant = factory.SubFactory(TenantFactory)
    budget_type = BudgetType.TENANT
    entity_id = None
    daily_limit_cents = 1000
    monthly_limit_cents = None


def utc(*args) -> datetime:
    """utc(2026, 3, 2, 10) -> an aware UTC datetime; keeps test data short."""
    return datetime(*args, tzinfo=UTC)


class ChannelFactory(factory.django.DjangoModelFactory):
    """A webhook channel with a fixed test secret; give `url=` a local receiver's."""

    class Meta:
        model = "notifications.Channel"

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"channel-{n}")
    kind = "webhook"
    url = "https://hooks.example.com/costwise"
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class RuleFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "notifications.Rule"

    tenant = factory.LazyAttribute(lambda o: o.channel.tenant)
    channel = factory.SubFactory(ChannelFactory)
    events = factory.LazyFunction(
        lambda: ["incident.opened", "incident.escalated", "incident.resolved", "budget.threshold"]
    )
    min_severity = "LOW"
    mode = "immediate"


class ModelPriceOverrideFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelPriceOverride

    tenant = factory.SubFactory(TenantFactory)
    model = "gpt-4o"
    input_cents_per_mtok = Decimal("100")
    output_cents_per_mtok = Decimal("400")
    effective_from = factory.LazyFunction(timezone.now)
