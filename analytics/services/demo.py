"""Deterministic demo data: 60 days of realistic traffic with a few injected incidents.

Everything goes through the same ingest services as the API, so the demo exercises the real
write path. Record n carries the idempotency key `seed-<n>`: running the seed again inserts
nothing new. The random generator is seeded, so two runs at the same instant produce the same
rows; a later run produces the same keys with shifted timestamps, so records whose key is
stored already are not sent again (ingest would refuse a key reused with another payload).
"""

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from analytics.models import (
    ApiKey,
    Budget,
    BudgetType,
    CostRecord,
    FeatureTag,
    RunRecord,
    RunStatus,
    Tenant,
)
from analytics.services.ingest import cost_records_ingest, run_records_upsert
from analytics.services.tenants import api_key_create, tenant_create

DEMO_SLUG = "demo"
SEED = 20260302
DAYS = 60
BATCH = 1000
DAILY_BUDGET_CENTS = 5_000
MONTHLY_BUDGET_CENTS = 100_000
# Long enough that every 7-day window of a three-day drift backtest sees grown prompts.
GROWTH_DAYS = 10

# Cents per 1,000 tokens (input, output); demo prices, not a vendor's price list.
MODELS = {
    "gpt-4o": ("openai", Decimal("0.25"), Decimal("1.0")),
    "gpt-4o-mini": ("openai", Decimal("0.015"), Decimal("0.06")),
    "claude-sonnet-4": ("anthropic", Decimal("0.3"), Decimal("1.5")),
    "llama-3.1-70b": ("together", Decimal("0.09"), Decimal("0.09")),
}
MODEL_WEIGHTS = {"gpt-4o": 4, "gpt-4o-mini": 5, "claude-sonnet-4": 3, "llama-3.1-70b": 1}
# Typical (input, output) tokens per call of each feature; None = untagged traffic.
FEATURES = {"chat": (15_000, 4_000), "search": (30_000, 2_000), "summarize": (40_000, 3_000)}
FEATURE_WEIGHTS = {"chat": 5, "search": 3, "summarize": 2, None: 1}
USERS = [f"user-{n}" for n in range(1, 13)]


@dataclass
class DemoResult:
    tenant: Tenant
    raw_key: str | None
    records_sent: int
    records_accepted: int
    runs_created: int


def _weighted(rng: random.Random, weights: dict):
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    _, per_in, per_out = MODELS[model]
    cost = per_in * input_tokens / 1000 + per_out * output_tokens / 1000
    return cost.quantize(Decimal("0.000001"))


def _record(rng, *, at, feature, model=None, input_scale=1.0, is_retry=False) -> dict:
    model = model or _weighted(rng, MODEL_WEIGHTS)
    base_in, base_out = FEATURES.get(feature, (8_000, 2_000))
    input_tokens = int(base_in * input_scale * rng.uniform(0.6, 1.4))
    output_tokens = int(base_out * rng.uniform(0.5, 1.5))
    return {
        "idempotency_key": None,  # numbered when emitted
        "user_id": rng.choice(USERS) if rng.random() < 0.9 else None,
        "feature_tag": feature,
        "request_id": uuid.UUID(int=rng.getrandbits(128)).hex[:24],
        "workflow_id": None,
        "run_id": None,
        "skill_id": "llm_invoke",
        "model": model,
        "provider": MODELS[model][0],
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_cents": _cost(model, input_tokens, output_tokens),
        "is_retry": is_retry or rng.random() < 0.02,
        "created_at": at,
    }


# complexity: one seeded random stream runs through the three phases (hourly traffic, retry bursts,
# budget push); their order fixes every record
def demo_cost_records(*, now: datetime) -> Iterator[dict]:
    """Every demo cost record in time order of generation (keys `seed-<n>`)."""
    rng = random.Random(SEED)
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    # DAYS calendar days: the DAYS - 1 days before today, and today up to now.
    start = today - timedelta(days=DAYS - 1)
    yesterday = today - timedelta(days=1)
    growth_start = today - timedelta(days=GROWTH_DAYS)
    counter = 0

    def numbered(record: dict) -> dict:
        nonlocal counter
        counter += 1
        record["idempotency_key"] = f"seed-{counter}"
        return record

    hour = start
    today_spend = Decimal(0)
    while hour < now:
        weekend = hour.weekday() >= 5
        busy = 8 <= hour.hour < 20
        mean = (30 if busy else 8) * (0.4 if weekend else 1.0)
        for _ in range(max(0, int(rng.gauss(mean, mean**0.5)))):
            at = hour + timedelta(seconds=rng.randrange(3600))
            if at >= now:
                continue
            feature = _weighted(rng, FEATURE_WEIGHTS)
            scale = 1.0
            if feature == "summarize" and at >= growth_start:
                # Prompt growth: summarize prompts grow from 1.6x to 3.8x over the growth days.
                scale = 1.6 + 2.2 * (at - growth_start) / timedelta(days=GROWTH_DAYS)
            record = numbered(_record(rng, at=at, feature=feature, input_scale=scale))
            if at >= today:
                today_spend += record["cost_cents"]
            yield record
        hour += timedelta(hours=1)

    # Retry loop on `search`: a burst yesterday and a bigger one today (spike for two days).
    elapsed_today = max((now - today).total_seconds() - 60, 1)
    for day, count, span in ((yesterday, 60, 86_400), (today, 150, elapsed_today)):
        for _ in range(count):
            at = day + timedelta(seconds=rng.uniform(0, span))
            record = numbered(_record(rng, at=at, feature="search", model="gpt-4o", is_retry=True))
            if at >= today:
                today_spend += record["cost_cents"]
            yield record

    # A nightly backfill job today pushes spend past 80 % of the daily budget.
    target = Decimal(DAILY_BUDGET_CENTS) * Decimal("0.85")
    while today_spend < target:
        at = today + timedelta(seconds=rng.uniform(0, elapsed_today))
        record = numbered(_record(rng, at=at, feature="chat", model="claude-sonnet-4"))
        today_spend += record["cost_cents"]
        yield record


def demo_runs(*, now: datetime) -> Iterator[dict]:
    """Run records of four workers, including a failure streak and a rising cost trend."""
    rng = random.Random(SEED + 1)
    start = now - timedelta(days=DAYS)
    counter = 0

    def run(worker: str, at: datetime, status: str, *, cost=None, error=None) -> dict:
        nonlocal counter
        counter += 1
        latency = rng.randint(800, 30_000)
        finished = status in RunStatus.terminal()
        return {
            "run_id": f"seed-run-{counter}",
            "worker_id": worker,
            "status": status,
            "success": (status == RunStatus.COMPLETED) if finished else None,
            "error": error,
            "total_tokens": rng.randint(2_000, 60_000),
            "total_latency_ms": latency if finished else None,
            "cost_cents": cost,
            "is_retry": False,
            "attempt": 1,
            "parent_run_id": None,
            "created_at": at,
            "started_at": at,
            "completed_at": at + timedelta(milliseconds=latency) if finished else None,
        }

    for day in range(DAYS):
        day_start = start + timedelta(days=day)
        for _ in range(15):
            at = day_start + timedelta(seconds=rng.randrange(86_400))
            if rng.random() < 0.03:
                yield run(
                    "chat-agent",
                    at,
                    RunStatus.FAILED,
                    error=rng.choice(
                        ["Rate limit exceeded (429)", "Context length exceeded: 131072 tokens"]
                    ),
                )
            else:
                cost = Decimal(rng.randint(300, 900)) / 100
                yield run("chat-agent", at, RunStatus.COMPLETED, cost=cost)
        at = day_start + timedelta(seconds=rng.randrange(86_400))
        yield run("ingest-worker", at, RunStatus.COMPLETED, cost=Decimal("1.2"))
        at = day_start + timedelta(hours=6, seconds=rng.randrange(3600))
        yield run("report-worker", at, RunStatus.COMPLETED, cost=Decimal(rng.randint(38, 46)))

    # ingest-worker: the same upstream timeout six times in the last day (a failure pattern
    # and a high failure likelihood).
    for n in range(6):
        at = now - timedelta(hours=20 - 3 * n)
        job = uuid.UUID(int=rng.getrandbits(128))
        error = f"Timeout after 30s calling upstream job {job} (attempt {n % 3 + 1})"
        yield run(
            "ingest-worker", at, RunStatus.FAILED if n % 2 else RunStatus.CRASHED, error=error
        )
    # report-worker: its last three reports cost far more than usual (cost spike and overrun).
    for n, cost in enumerate((68, 74, 92)):
        yield run(
            "report-worker",
            now - timedelta(hours=5 - 2 * n),
            RunStatus.COMPLETED,
            cost=Decimal(cost),
        )
    # a run still in flight
    yield run("chat-agent", now - timedelta(minutes=2), RunStatus.RUNNING)


def _batches(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# complexity: each part of the demo (tenant, key, tags, budget, records, runs) is created only when
# missing, so a rerun completes it
def demo_seed(
    *, now: datetime, progress: Callable[[str], None] = lambda message: None
) -> DemoResult:
    """Create (or complete) the demo tenant and its records; safe to run again."""
    tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
    raw_key = None
    if tenant is None:
        tenant = tenant_create(slug=DEMO_SLUG, name="Demo Inc.")
    if not ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True).exists():
        _, raw_key = api_key_create(tenant=tenant, name="demo")
    for tag in FEATURES:
        FeatureTag.objects.get_or_create(
            tenant=tenant, tag=tag, defaults={"display_name": tag.title()}
        )
    Budget.objects.get_or_create(
        tenant=tenant,
        budget_type=BudgetType.TENANT,
        entity_id=None,
        defaults={
            "daily_limit_cents": DAILY_BUDGET_CENTS,
            "monthly_limit_cents": MONTHLY_BUDGET_CENTS,
        },
    )

    stored_keys = set(
        CostRecord.objects.filter(tenant=tenant, idempotency_key__startswith="seed-").values_list(
            "idempotency_key", flat=True
        )
    )
    records = (r for r in demo_cost_records(now=now) if r["idempotency_key"] not in stored_keys)
    sent = accepted = 0
    for batch in _batches(records, BATCH):
        result = cost_records_ingest(tenant=tenant, records=batch, received_at=now)
        sent += len(batch)
        accepted += result.accepted
        progress(f"cost records: {sent} sent, {accepted} new")

    # Terminal runs are immutable, and a later seed shifts every timestamp: only runs that
    # are not stored yet are sent.
    runs = list(demo_runs(now=now))
    stored = set(
        RunRecord.objects.filter(tenant=tenant, run_id__in=[r["run_id"] for r in runs]).values_list(
            "run_id", flat=True
        )
    )
    created = 0
    for batch in _batches((r for r in runs if r["run_id"] not in stored), BATCH):
        created += run_records_upsert(tenant=tenant, runs=batch, received_at=now).created
        progress(f"run records: {created} new")
    return DemoResult(tenant, raw_key, sent, accepted, created)
