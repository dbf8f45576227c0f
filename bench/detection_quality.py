"""Labelled backtest of anomaly detection: does it find the real incidents, and only those?

    .venv/bin/python bench/detection_quality.py             # 30 tenants, about a minute
    .venv/bin/python bench/detection_quality.py --quick     # 6 tenants, a smoke run
    .venv/bin/python bench/detection_quality.py --verbose   # also every miss and false alarm
    .venv/bin/python bench/detection_quality.py --read anomalies   # score raw anomalies

1. `generate()` (plain Python, seeded by --seed, no database) writes --days (63) of daily
   spend ending yesterday (UTC) for --tenants (30) tenants: 2-6 users, 2-5 features and 1-3
   models each, a weekday level of $20-$500, 5-15 % day-to-day noise on the tenant total,
   weekends at 30-90 % of weekdays (or no weekly pattern) and, for some, organic growth.
   Entities carry noise of their own, the more the smaller they are (a user with a few
   requests a day is erratic); it moves spend between entities, not the tenant's total.
   Two thirds of the tenants get one or two labelled incidents (spike, outlier, drift,
   feature_surge, runaway_user, model_switch, prompt_growth), starting on or after
   --replay-from (day 36), each material: at least $5 a day and 30 % more on the entity that
   causes it, and at least 12 % more on the tenant. The other tenants carry only labelled
   benign behaviour that must raise nothing: strong seasonality, 1 %/day growth, 15 % noise,
   a tiny feature that triples (still under $1 a day), a tenant-wide +10 % step.
2. The records go into scratch tenants `bq-<run>-<i>` with one COPY. Detection is replayed
   day by day: for each day from --replay-from to yesterday the clock is frozen at 00:05 UTC
   of the next day and `anomalies_detect(tenant=..., as_of=day)` runs for every tenant. After
   each day the incidents are read: `analytics.models.Incident` rows or, while that model
   does not exist (or with --read anomalies), every raw Anomaly as its own one-day incident.
3. Scoring. An incident matches a label of its tenant when [started_on, last_seen_on]
   overlaps [start - 1, end + 2]. Recall: labels with a match. Precision: incidents (as they
   stand at the end, budget incidents left out) that match a label. Alerts per real incident:
   matching incidents per found label. Lag: first replayed day on which a matching incident
   that had reached the label's start existed, minus that start (an alarm from the day before
   matches, dates being fuzzy, but warns of nothing). Root cause: for found labels caused by
   one entity, is root_causes[0] of the first such incident (seen earliest) that entity, or
   one that is the very same spend (a feature's only model, used by no other feature)?
   False alarms per benign tenant: incidents on tenants without incident labels, divided by
   their number.
   Targets: recall and precision >= 0.9, <= 1.5 alerts per real incident, median lag <= 1
   day, root cause >= 0.9. PASS/FAIL is printed; the exit status is 0 either way.

The scratch rows are removed at the end (unless --keep). The database must be migrated.
"""

import argparse
import math
import os
import random
import secrets
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import NamedTuple

KINDS = ("spike", "outlier", "drift", "feature_surge", "runaway_user", "model_switch")
KINDS += ("prompt_growth",)
SHORT_KINDS = ("spike", "outlier", "feature_surge", "runaway_user")  # over before the data ends
BENIGN_KINDS = ("seasonality", "growth", "noise", "tiny_entity", "small_shift")
# Cents per 1,000 input and output tokens, roughly list prices.
MODELS = {
    "gpt-4o-mini": (0.015, 0.06),
    "claude-haiku": (0.08, 0.4),
    "gpt-4o": (0.25, 1.0),
    "claude-sonnet": (0.3, 1.5),
    "claude-opus": (1.5, 7.5),
}
STARTER_MODELS = ("gpt-4o-mini", "claude-haiku", "gpt-4o")  # what tenants run before a switch
FEATURES = ("chat", "search", "summarize", "extract", "classify", "agent", "translate")
USERS = ("ana", "ben", "chen", "dara", "eli", "fay", "gus", "hana")
TINY_FEATURE = "beta-lab"
# An incident must matter to a cost owner, on its entity and on the tenant's bill.
MIN_IMPACT_CENTS, MIN_ENTITY_RATIO, MIN_TENANT_RATIO = 500.0, 0.30, 0.12
MAX_RECORDS_PER_CELL = 80
# Spread of one request's cost around its cell's mean: an entity seen in a few requests a
# day is much noisier than the tenant it belongs to.
REQUEST_CV = 0.6
TARGETS = {  # name: (target, higher is better)
    "recall": (0.9, True),
    "precision": (0.9, True),
    "alerts per real incident": (1.5, False),
    "median lag (days)": (1, False),
    "root cause top-1": (0.9, True),
}


class Record(NamedTuple):
    tenant: int  # index into the generated tenants
    user_id: str
    feature_tag: str
    model: str
    input_tokens: int
    output_tokens: int
    cost_cents: float
    is_retry: bool
    created_at: datetime


class Effect(NamedTuple):
    """What an injected change adds, averaged over its days."""

    impact_cents: float  # extra cents a day on the root-cause entity (or the tenant)
    entity_ratio: float  # extra / expected spend of that entity (inf: a new entity)
    tenant_ratio: float  # extra / expected spend of the tenant


@dataclass(frozen=True)
class Label:
    """One injected incident, or one benign behaviour (benign=True) that must raise nothing."""

    tenant: int
    kind: str
    start: date
    end: date
    root_cause: tuple[str, str] | None  # (entity_type, entity_id); None when tenant-wide
    effect: Effect
    equivalent_causes: tuple[tuple[str, str], ...] = ()  # entities that are the same spend
    benign: bool = False
    material: bool = True


@dataclass
class _Profile:
    level: float  # weekday cents a day on day 0
    noise: float  # sigma of the tenant's daily log-noise
    weekend: float  # Saturday and Sunday level relative to weekdays
    growth: float  # per day, compounded
    entity_noise: float
    requests: int  # records a day at the weekday level
    features: dict[str, float]  # shares of spend
    users: dict[str, float]
    mix: dict[str, dict[str, float]]  # feature -> model -> share of the feature's requests
    out_ratio: dict[str, float]  # feature -> output tokens per input token


# A day's spend is a dict of cells, one per (feature, user, model): [cents, request weight,
# prompt factor, retry cents]. The weight is the cell's share of a weekday's requests:
# traffic scales it, a longer prompt or a pricier model does not.


def generate(
    *, seed: int = 7, tenants: int = 30, days: int = 63, end: date | None = None, replay_from=36
) -> tuple[list[Record], list[Label]]:
    """Records and labels of the whole data set; the same arguments give the same data."""
    rng = random.Random(seed)
    end = end or datetime.now(UTC).date() - timedelta(days=1)
    dates = [end - timedelta(days=days - 1 - d) for d in range(days)]
    chosen = sorted(rng.sample(range(tenants), round(tenants / 3)))
    benign = {t: BENIGN_KINDS[i % len(BENIGN_KINDS)] for i, t in enumerate(chosen)}
    plans = _incident_plans(rng, [t for t in range(tenants) if t not in benign])
    records: list[Record] = []
    labels: list[Label] = []
    for t in range(tenants):
        profile = _profile(rng, benign.get(t))
        base = [_base_day(rng, profile, d, day) for d, day in enumerate(dates)]
        actual = [{key: cell[:] for key, cell in cells.items()} for cells in base]
        if t in benign:
            labels.append(_benign(rng, t, benign[t], profile, base, actual, dates, replay_from))
        first = replay_from
        for i, kind in enumerate(plans.get(t, [])):
            if i == 1:  # well after the first incident's matching window
                first = (labels[-1].end - dates[0]).days + 6
            latest = days - (5 if kind in SHORT_KINDS else 9)
            if first > latest:
                break
            start = rng.randint(first, latest if i or len(plans[t]) == 1 else first + 8)
            labels.append(_inject(rng, t, kind, start, profile, base, actual, dates))
        for day, cells in zip(dates, actual, strict=True):
            records.extend(_records(rng, t, profile, day, cells))
    return records, labels


def _incident_plans(rng: random.Random, tenants: list[int]) -> dict[int, list[str]]:
    """Kinds per incident tenant, every kind about as often: two in five tenants get two
    incidents, the first of them a short one."""
    pairs = round(len(tenants) * 0.4)
    pool = [KINDS[i % len(KINDS)] for i in range(len(tenants) + pairs)]
    rng.shuffle(pool)
    plans = {}
    for i, t in enumerate(rng.sample(tenants, len(tenants))):
        if i < pairs:
            first = next(k for k in pool if k in SHORT_KINDS)
            pool.remove(first)
            plans[t] = [first, pool.pop()]
        else:
            plans[t] = [pool.pop()]
    return plans


def _shares(rng: random.Random, names: list[str], shape: float) -> dict[str, float]:
    weights = [rng.gammavariate(shape, 1.0) for _ in names]
    return {name: w / sum(weights) for name, w in zip(names, weights, strict=True)}


def _profile(rng: random.Random, benign: str | None) -> _Profile:
    features = rng.sample(FEATURES, rng.randint(2, 5))
    models = rng.sample(STARTER_MODELS, rng.randint(1, 3))
    mix = {}
    for feature in features:
        primary = rng.choice(models)
        others = [m for m in models if m != primary]
        mix[feature] = {primary: 1.0}
        if others and rng.random() < 0.5:
            split = rng.uniform(0.1, 0.4)
            mix[feature] = {primary: 1 - split, rng.choice(others): split}
    profile = _Profile(
        level=math.exp(rng.uniform(math.log(2_000), math.log(50_000))),
        noise=rng.uniform(0.05, 0.15),
        weekend=1.0 if rng.random() < 0.2 else rng.uniform(0.3, 0.9),
        growth=rng.uniform(0.0, 0.01) if rng.random() < 0.35 else 0.0,
        entity_noise=rng.uniform(0.04, 0.10),
        requests=rng.randint(20, 60),
        features=_shares(rng, features, 1.2),
        users=_shares(rng, rng.sample(USERS, rng.randint(2, 6)), 1.0),
        mix=mix,
        out_ratio={feature: rng.uniform(0.1, 0.6) for feature in features},
    )
    if benign == "seasonality":
        profile.weekend, profile.growth, profile.noise = 0.3, 0.0, 0.06
    elif benign == "growth":
        profile.growth = 0.01
    elif benign == "noise":
        profile.noise = 0.15
    return profile


def _lognormal(rng: random.Random, sigma: float) -> float:
    """A multiplicative noise factor with mean 1."""
    return math.exp(rng.gauss(0.0, sigma) - sigma * sigma / 2)


def _base_day(rng: random.Random, p: _Profile, d: int, day: date) -> dict:
    season = p.weekend if day.weekday() >= 5 else 1.0
    total = p.level * season * (1 + p.growth) ** d * _lognormal(rng, p.noise)
    # Per-entity noise moves spend between entities; the tenant's own noise is in `total`.
    features = {f: s * _lognormal(rng, p.entity_noise) for f, s in p.features.items()}
    users = {u: s * _lognormal(rng, p.entity_noise) for u, s in p.users.items()}
    f_sum, u_sum = sum(features.values()), sum(users.values())
    drawn = {}
    for feature, f_share in features.items():
        for user, u_share in users.items():
            for model, m_share in p.mix[feature].items():
                cents = total * f_share / f_sum * u_share / u_sum * m_share
                drawn[(feature, user, model)] = cents * _request_noise(rng, p, cents)
    scale = total / sum(drawn.values())  # the tenant's total keeps exactly its own noise
    return {key: [c * scale, c * scale / p.level, 1.0, 0.0] for key, c in drawn.items()}


def _request_noise(rng: random.Random, p: _Profile, cents: float) -> float:
    """The noise of a sum of about `requests` requests whose costs vary by REQUEST_CV."""
    requests = max(0.5, p.requests * cents / p.level)
    return _lognormal(rng, math.sqrt(math.log1p(REQUEST_CV**2 / requests)))


def _matches(key: tuple, entity: tuple[str, str] | None) -> bool:
    if entity is None:
        return True
    return key[("feature", "user", "model").index(entity[0])] == entity[1]


def _scale(cells, entity, factor: float, *, prompt: bool = False) -> None:
    """More traffic (or, with prompt=True, longer prompts) on the entity's cells."""
    for key, cell in cells.items():
        if _matches(key, entity):
            cell[0] *= factor
            cell[2 if prompt else 1] *= factor


def _retry(cells, user: str, factor: float) -> None:
    for key, cell in cells.items():
        if key[1] == user:
            cell[3] += cell[0] * (factor - 1)


def _switch(cells, feature: str, old: str, new: str, share: float, ratio: float) -> None:
    """Move `share` of the feature's requests from `old` to `new`: same tokens, new price."""
    for key, cell in list(cells.items()):
        if key[0] == feature and key[2] == old:
            cents, weight = cell[0] * share, cell[1] * share
            cell[0], cell[1] = cell[0] - cents, cell[1] - weight
            target = cells.setdefault((feature, key[1], new), [0.0, 0.0, 1.0, 0.0])
            target[0] += cents * ratio
            target[1] += weight


def _price(model: str, out_ratio: float) -> float:
    price_in, price_out = MODELS[model]
    return price_in + out_ratio * price_out


def _plan(rng: random.Random, kind: str, start: int, last: int, p: _Profile):
    """(end day, root cause, effect) of one incident; effect(d, cells) changes day d."""
    lasting = last if rng.random() < 0.5 else min(last, start + rng.randint(10, 14))
    if kind == "spike":
        factor = rng.uniform(1.8, 4.0)
        return start + rng.randint(0, 2), None, lambda d, c: _scale(c, None, factor)
    if kind == "outlier":
        models = sorted({model for mix in p.mix.values() for model in mix})
        names = {"feature": list(p.features), "user": list(p.users), "model": models}
        if len(models) == 1:  # a tenant's only model is the tenant itself
            del names["model"]
        entity_type, entity = rng.choice(["tenant", *names]), None
        if entity_type != "tenant":
            entity = (entity_type, rng.choice(names[entity_type]))
        factor = rng.uniform(3.0, 6.0)
        return start, entity, lambda d, c: _scale(c, entity, factor)
    if kind == "drift":
        factor = 1 + rng.uniform(0.35, 0.8)
        return lasting, None, lambda d, c: _scale(c, None, factor)
    if kind == "feature_surge":
        entity, factor = ("feature", rng.choice(list(p.features))), rng.uniform(2.0, 5.0)
        return start + rng.randint(1, 4), entity, lambda d, c: _scale(c, entity, factor)
    if kind == "runaway_user":
        user, factor = rng.choice(list(p.users)), rng.uniform(3.0, 10.0)
        return start + rng.randint(0, 3), ("user", user), lambda d, c: _retry(c, user, factor)
    if kind == "model_switch":
        feature = rng.choice(list(p.features))
        old, r = max(p.mix[feature], key=p.mix[feature].get), p.out_ratio[feature]
        ratios = {m: _price(m, r) / _price(old, r) for m in MODELS}
        pricier = sorted((x, m) for m, x in ratios.items() if x >= 1.5)
        # An upgrade of a step or two (at most 5x the price), else the next model up.
        new = rng.choice([m for x, m in pricier if x <= 5] or [pricier[0][1]])
        ratio, share = ratios[new], rng.uniform(0.3, 1.0)
        return lasting, ("model", new), lambda d, c: _switch(c, feature, old, new, share, ratio)
    if kind == "prompt_growth":
        entity, factor = ("feature", rng.choice(list(p.features))), rng.uniform(1.5, 3.0)
        ramp = rng.randint(2, 4)

        def grow(d, cells):
            _scale(cells, entity, 1 + (factor - 1) * min(1.0, (d - start + 1) / ramp), prompt=True)

        return last, entity, grow
    raise ValueError(kind)


def _spend(cells, entity) -> float:
    return sum(cell[0] + cell[3] for key, cell in cells.items() if _matches(key, entity))


def _extra(base, changed, entity) -> tuple[float, float]:
    """(extra, expected) cents of the entity over the days of `changed`."""
    expected = sum(_spend(base[d], entity) for d in changed)
    return sum(_spend(cells, entity) for d, cells in changed.items()) - expected, expected


def _measure(base, changed, entity) -> Effect:
    extra, expected = _extra(base, changed, entity)
    tenant_extra, tenant_expected = _extra(base, changed, None)
    ratio = extra / expected if expected else math.inf
    return Effect(extra / len(changed), ratio, tenant_extra / tenant_expected)


def _equivalents(base, changed, root) -> tuple[tuple[str, str], ...]:
    """Entities with the root cause's extra and expected spend: the same cells by another
    name, such as the only model of a feature that is alone on that model."""
    if root is None:
        return ()
    names = ("feature", "user", "model")
    entities = {(names[i], key[i]) for cells in changed.values() for key in cells for i in range(3)}
    wanted = _extra(base, changed, root)

    def same(entity) -> bool:
        found = _extra(base, changed, entity)
        return all(math.isclose(a, b, rel_tol=0.005) for a, b in zip(found, wanted, strict=True))

    return tuple(sorted(e for e in entities - {root} if same(e)))


def _inject(rng, t, kind, start, p, base, actual, dates) -> Label:
    """Draw the incident until it is material (keep the least weak of 200 draws otherwise)."""
    best = None
    for _ in range(200):
        end, root, change = _plan(rng, kind, start, len(dates) - 1, p)
        changed = {d: {k: c[:] for k, c in actual[d].items()} for d in range(start, end + 1)}
        for d, cells in changed.items():
            change(d, cells)
        effect = _measure(base, changed, root)
        strength = min(
            effect.impact_cents / MIN_IMPACT_CENTS,
            effect.entity_ratio / MIN_ENTITY_RATIO,
            effect.tenant_ratio / MIN_TENANT_RATIO,
        )
        if best is None or strength > best[0]:
            best = (strength, end, root, changed, effect)
        if strength >= 1:
            break
    strength, end, root, changed, effect = best
    actual[start : end + 1] = changed.values()
    equivalents = _equivalents(base, changed, root)
    return Label(t, kind, dates[start], dates[end], root, effect, equivalents, False, strength >= 1)


def _benign(rng, t, kind, p, base, actual, dates, replay_from) -> Label:
    last = len(dates) - 1
    start, root = 0, None
    if kind == "tiny_entity":
        # A feature worth a few cents a day that triples: under $1 a day even afterwards.
        start, user = rng.randint(replay_from, last - 9), max(p.users, key=p.users.get)
        cents, key = rng.uniform(15.0, 30.0), (TINY_FEATURE, user, "gpt-4o-mini")
        p.out_ratio[TINY_FEATURE], root = 0.3, ("feature", TINY_FEATURE)
        for d, cells in enumerate(actual):
            spend = cents * _request_noise(rng, p, cents)
            base[d][key] = [spend, spend / p.level, 1.0, 0.0]
            factor = 3 if d >= start else 1
            cells[key] = [spend * factor, spend * factor / p.level, 1.0, 0.0]
    elif kind == "small_shift":
        start = rng.randint(replay_from, last - 9)
        for cells in actual[start:]:
            _scale(cells, None, 1.10)
    changed = {d: actual[d] for d in range(start, last + 1)}
    return Label(
        t, kind, dates[start], dates[last], root, _measure(base, changed, root), benign=True
    )


def _records(rng, t: int, p: _Profile, day: date, cells) -> list[Record]:
    """The cells as records. A record stands for a batch of calls (its tokens are the
    batch's), which keeps a default run near 100,000 rows."""
    midnight = datetime.combine(day, day_time.min, tzinfo=UTC)
    records = []
    for (feature, user, model), (cents, weight, prompt, retry) in cells.items():
        requests = min(MAX_RECORDS_PER_CELL, max(1, round(p.requests * weight)))
        batches = [(cents, requests, False)]
        if retry > 0:
            retries = round(requests * retry / cents) if cents else requests
            batches.append((retry, min(MAX_RECORDS_PER_CELL, max(1, retries)), True))
        price_in, price_out = (price / 1000 for price in MODELS[model])
        out_ratio = p.out_ratio[feature]
        for total, count, is_retry in batches:
            parts = [rng.uniform(0.5, 1.5) for _ in range(count)] if total > 0 else []
            for part in parts:
                cost = total * part / sum(parts)
                # Output tokens are what the request produced before any prompt growth; the
                # input tokens carry the rest of the cost.
                tokens_out = out_ratio * (cost / prompt) / (price_in + out_ratio * price_out)
                tokens_in = max(1, round((cost - tokens_out * price_out) / price_in))
                at = midnight + timedelta(seconds=rng.randrange(86_400))
                row = (t, user, feature, model, tokens_in, round(tokens_out), round(cost, 6))
                records.append(Record(*row, is_retry, at))
    return records


# --- The database: scratch tenants, records, replay --------------------------------------


def log(message: str = "") -> None:
    print(message, flush=True)


def setup_django() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # DEBUG off so Django does not keep every query of the run in memory.
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + secrets.token_hex(24))
    os.environ.setdefault("DJANGO_DEBUG", "0")
    import django

    django.setup()
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        sys.exit("The database has unapplied migrations; run `manage.py migrate` first.")


def insert(prefix: str, count: int, records: list[Record]) -> list:
    """Create the scratch tenants, their feature tags and records; return the tenants."""
    from django.db import connection

    from analytics.models import FeatureTag, Tenant

    slugs = [f"{prefix}{i}" for i in range(count)]
    Tenant.objects.bulk_create(Tenant(slug=slug, name=slug) for slug in slugs)
    by_slug = Tenant.objects.in_bulk(slugs, field_name="slug")
    tenants = [by_slug[slug] for slug in slugs]
    # Detection reads the tag off each record; the tags also exist as ingest would need them.
    tags = sorted({(r.tenant, r.feature_tag) for r in records})
    FeatureTag.objects.bulk_create(
        FeatureTag(tenant=tenants[t], tag=tag, display_name=tag) for t, tag in tags
    )
    columns = "tenant_id, user_id, feature_tag, model, provider, input_tokens, output_tokens, "
    columns += "cost_cents, is_retry, created_at, ingested_at"
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY analytics_costrecord ({columns}) FROM STDIN") as copy:
            for r in records:
                copy.write_row((tenants[r.tenant].pk, *r[1:4], "bench", *r[4:], r.created_at))
        cursor.execute("ANALYZE analytics_costrecord")
    return tenants


class Found(NamedTuple):
    """An incident as the scorer sees it (in the fallback, one raw anomaly)."""

    key: tuple
    tenant_id: int
    kind: str
    started_on: date
    last_seen_on: date
    impact_cents: float | None
    impact_pct: float | None
    root_causes: tuple[tuple[str, str | None], ...]


def incident_model():
    """analytics.models.Incident, or None while it does not exist."""
    try:
        from analytics.models import Incident
    except ImportError:
        return None
    return Incident


def read_incidents(tenant_ids: list[int]) -> list[Found]:
    fields = "pk tenant_id kind started_on last_seen_on impact_cents impact_pct root_causes"
    rows = incident_model().objects.filter(tenant_id__in=tenant_ids).values_list(*fields.split())
    return [
        Found(
            ("incident", row[0]),
            *row[1:7],
            tuple((cause.get("entity_type"), cause.get("entity_id")) for cause in row[7] or []),
        )
        for row in rows
    ]


ANOMALY_KINDS = {"ABSOLUTE_SPIKE": "spike", "SNAPSHOT_SPIKE": "spike", "SUSTAINED_DRIFT": "drift"}
ANOMALY_KINDS |= {"STATISTICAL_OUTLIER": "outlier"}


def read_anomalies(tenant_ids: list[int]) -> list[Found]:
    """Every raw anomaly as a one-day incident: the numbers from before incidents existed."""
    from analytics.models import Anomaly

    fields = "pk tenant_id anomaly_type entity_type entity_id anomaly_date current_value_cents "
    fields += "expected_value_cents deviation_pct contributors"
    found = []
    for row in Anomaly.objects.filter(tenant_id__in=tenant_ids).values_list(*fields.split()):
        pk, tenant_id, anomaly_type, entity_type, entity_id, day, current, expected = row[:8]
        # The anomaly's own entity is its first suspect (contributors skip its dimension),
        # then the contributors, largest first.
        causes = [] if entity_type == "tenant" else [(entity_type, entity_id)]
        contributors = sorted(row[9] or [], key=lambda c: -(c.get("cents") or 0))
        causes += [(c["dimension"], c["key"]) for c in contributors]
        kind = ANOMALY_KINDS.get(anomaly_type, "budget")
        impact = current - expected
        found.append(
            Found(("anomaly", pk), tenant_id, kind, day, day, impact, row[8], tuple(causes))
        )
    return found


def replay(tenants: list, first: date, last: date, reader) -> tuple[dict, dict, int]:
    """Detect as of the end of each day, first to last.

    Returns the incidents as they stand at the end (by key), every version of each incident
    seen along the way (by key: a list of (as_of, Found)) and the number of failed runs.
    """
    import time_machine
    from tqdm import tqdm

    from analytics.services.anomalies import anomalies_detect

    ids = [t.pk for t in tenants]
    final, history, failures = {}, {}, 0
    days = (last - first).days + 1
    # Time is frozen inside a day, so the bar moves once a day.
    with tqdm(total=days * len(tenants), unit="run", desc="replay", file=sys.stderr) as bar:
        for as_of in (first + timedelta(days=n) for n in range(days)):
            at = datetime.combine(as_of + timedelta(days=1), day_time(0, 5), tzinfo=UTC)
            with time_machine.travel(at, tick=False):
                for tenant in tenants:
                    try:
                        anomalies_detect(tenant=tenant, as_of=as_of)
                    except Exception as exc:  # counted and shown: the benchmark carries on
                        failures += 1
                        if failures <= 3:
                            log(f"detection failed for {tenant.slug} as of {as_of}: {exc!r}")
            final = {found.key: found for found in reader(ids)}
            for key, found in final.items():
                versions = history.setdefault(key, [])
                if not versions or versions[-1][1] != found:
                    versions.append((as_of, found))
            bar.update(len(tenants))
            bar.set_postfix(incidents=len(final), refresh=False)
    return final, history, failures


def cleanup(prefix: str) -> None:
    """Delete the scratch tenants and every row that points at them, whatever the models."""
    from django.apps import apps
    from django.db import IntegrityError, transaction

    from analytics.models import Tenant

    scratch = Tenant.objects.filter(slug__startswith=prefix)
    pending = [
        (model, f.name)
        for model in apps.get_models()
        for f in model._meta.fields
        if f.is_relation and f.related_model is Tenant
    ]
    # Rows may protect each other (an anomaly and its incident, a snapshot and its anomalies):
    # retry what a reference blocked until nothing is left or nothing moves.
    while pending:
        blocked = []
        for model, name in pending:
            try:
                with transaction.atomic():
                    model._base_manager.filter(**{f"{name}__in": scratch}).delete()
            except IntegrityError:
                blocked.append((model, name))
        if len(blocked) == len(pending):
            raise RuntimeError(f"cannot delete the scratch rows of {blocked}")
        pending = blocked
    scratch.delete()
    log(f"cleanup: removed the scratch tenants {prefix}* and their rows")


# --- Scoring -----------------------------------------------------------------------------


def _overlaps(label: Label, found: Found) -> bool:
    window_start, window_end = label.start - timedelta(days=1), label.end + timedelta(days=2)
    return found.started_on <= window_end and found.last_seen_on >= window_start


def _covers(label: Label, found: Found) -> bool:
    """Matches and has seen a day of the label itself: an alarm raised the day before the
    start matches (dates are fuzzy) but is no early warning."""
    return _overlaps(label, found) and found.last_seen_on >= label.start


@dataclass
class Verdict:
    label: Label
    matches: list[Found]
    lag: int | None = None
    first: Found | None = None  # the first matching incident (seen earliest)
    cause_right: bool | None = None  # None: tenant-wide or not found


def score(labels: list[Label], tenants: list, final: dict, history: dict):
    """One verdict per incident label, and the labels each final incident matches."""
    incidents = [f for f in final.values() if f.kind != "budget"]
    verdicts = []
    for label in (label for label in labels if not label.benign):
        tenant_id = tenants[label.tenant].pk
        mine = [f for f in incidents if f.tenant_id == tenant_id and _overlaps(label, f)]
        verdict = Verdict(label, mine)
        # The lag counts every version of every incident, also ones later merged away.
        seen = [
            as_of
            for versions in history.values()
            for as_of, f in versions
            if f.tenant_id == tenant_id and f.kind != "budget" and _covers(label, f)
        ]
        if seen:
            verdict.lag = max(0, (min(seen) - label.start).days)
        if mine:
            covering = [f for f in mine if _covers(label, f)] or mine
            verdict.first = min(covering, key=lambda f: (history[f.key][0][0], f.started_on, f.key))
        if mine and label.root_cause is not None:
            right = {label.root_cause, *label.equivalent_causes}
            causes = verdict.first.root_causes
            verdict.cause_right = bool(causes) and causes[0] in right
        verdicts.append(verdict)
    matched = {f.key: [v.label for v in verdicts if f in v.matches] for f in incidents}
    return verdicts, incidents, matched


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summarize(verdicts: list[Verdict]) -> dict:
    found = [v for v in verdicts if v.matches]
    lags = sorted(v.lag for v in found if v.lag is not None)
    alerts = [len(v.matches) for v in found]
    causes = [v.cause_right for v in found if v.cause_right is not None]
    return {
        "labels": len(verdicts),
        "found": len(found),
        "recall": _ratio(len(found), len(verdicts)),
        "alerts": statistics.fmean(alerts) if alerts else None,
        "alerts_max": max(alerts, default=None),
        "lag": statistics.median(lags) if lags else None,
        "lag_p90": lags[math.ceil(0.9 * len(lags)) - 1] if lags else None,
        "causes": len(causes),
        "cause": _ratio(sum(causes), len(causes)),
    }


def _label_line(label: Label, slug: str) -> str:
    cause = ":".join(label.root_cause) if label.root_cause else "tenant-wide"
    e = label.effect
    entity = "new" if math.isinf(e.entity_ratio) else f"{e.entity_ratio:+.0%}"
    return (
        f"{slug} {label.kind} {label.start}..{label.end} cause {cause}: "
        f"${e.impact_cents / 100:.2f}/day, {entity} on the entity, {e.tenant_ratio:+.0%} on "
        f"the tenant{'' if label.material else ' (below the materiality floor)'}"
    )


def _found_line(f: Found, slug: str) -> str:
    cause = ":".join(str(part) for part in f.root_causes[0]) if f.root_causes else "-"
    impact = _fmt(None if f.impact_cents is None else f.impact_cents / 100)
    return (
        f"{slug} {f.kind} {f.started_on}..{f.last_seen_on} impact ${impact} "
        f"({_fmt(f.impact_pct, '+.0f')} %), first cause {cause}"
    )


def report(labels, tenants, verdicts, incidents, matched, *, verbose: bool) -> None:
    slugs = {t.pk: t.slug for t in tenants}
    real = {label.tenant for label in labels if not label.benign}
    benign = {tenants[x.tenant].pk: x.kind for x in labels if x.benign and x.tenant not in real}
    head = f"{'label kind':<15}{'labels':>7}{'found':>6}{'recall':>8}{'alerts/real':>12}"
    head += f"{'max':>5}{'lag med':>8}{'p90':>5}{'root cause (n)':>16}"
    log("\n" + head + "\n" + "-" * len(head))
    for kind in (*KINDS, "all"):
        s = summarize([v for v in verdicts if kind in ("all", v.label.kind)])
        cause = f"{_fmt(s['cause'])} ({s['causes']})" if s["causes"] else "-"
        log(
            ("-" * len(head) + "\n" if kind == "all" else "")
            + (
                f"{kind:<15}{s['labels']:>7}{s['found']:>6}{_fmt(s['recall']):>8}"
                f"{_fmt(s['alerts'], '.1f'):>12}{_fmt(s['alerts_max'], 'd'):>5}"
                f"{_fmt(s['lag'], '.1f'):>8}{_fmt(s['lag_p90'], 'd'):>5}{cause:>16}"
            )
        )
    overall = summarize(verdicts)
    log(f"\n{'incident kind':<15}{'incidents':>10}{'matching':>10}{'precision':>11}")
    for kind in (*sorted({f.kind for f in incidents}), "all"):
        rows = [f for f in incidents if kind in ("all", f.kind)]
        true = sum(1 for f in rows if matched[f.key])
        log(f"{kind:<15}{len(rows):>10}{true:>10}{_fmt(_ratio(true, len(rows))):>11}")
    precision = _ratio(sum(1 for f in incidents if matched[f.key]), len(incidents))
    false = [f for f in incidents if not matched[f.key]]
    on_benign = Counter(benign[f.tenant_id] for f in false if f.tenant_id in benign)
    per_benign = _ratio(on_benign.total(), len(benign))
    kinds = Counter(benign.values())
    log(
        f"\nfalse alarms: {len(false)}; on the {len(benign)} benign tenants {on_benign.total()} "
        f"({_fmt(per_benign, '.1f')} per tenant; "
        + ", ".join(f"{kind} {on_benign[kind]} on {kinds[kind]}" for kind in sorted(kinds))
        + f"); on incident tenants outside the label windows {len(false) - on_benign.total()}"
    )
    if verbose:
        log()
        for v in verdicts:
            if not v.matches:
                log(f"MISS         {_label_line(v.label, slugs[tenants[v.label.tenant].pk])}")
            elif v.cause_right is False:
                log(f"WRONG CAUSE  {_label_line(v.label, slugs[tenants[v.label.tenant].pk])}")
                log(f"             first incident: {_found_line(v.first, '')}")
        for f in sorted(false, key=lambda f: (slugs[f.tenant_id], f.started_on, f.kind)):
            note = f" [benign tenant: {benign[f.tenant_id]}]" if f.tenant_id in benign else ""
            log(f"FALSE ALARM  {_found_line(f, slugs[f.tenant_id])}{note}")
    values = [overall["recall"], precision, overall["alerts"], overall["lag"], overall["cause"]]
    failed = 0
    log()
    for (name, (target, higher)), value in zip(TARGETS.items(), values, strict=True):
        passed = value is not None and (value >= target if higher else value <= target)
        failed += not passed
        log(
            f"{'PASS' if passed else 'FAIL'}  {name:<26}{_fmt(value):>6}  "
            f"(target {'>=' if higher else '<='} {target})"
        )
    verdict = "PASS" if not failed else f"FAIL ({failed} of {len(TARGETS)} targets missed)"
    log(
        f"\nSUMMARY recall {_fmt(overall['recall'])}, precision {_fmt(precision)}, "
        f"{_fmt(overall['alerts'], '.1f')} alerts per real incident (max "
        f"{_fmt(overall['alerts_max'], 'd')}), lag median {_fmt(overall['lag'], '.1f')} d / "
        f"p90 {_fmt(overall['lag_p90'], 'd')} d, root cause {_fmt(overall['cause'])}, "
        f"{_fmt(per_benign, '.1f')} false alarms per benign tenant: {verdict}"
    )


# --- Entry point -------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=7, help="generator seed (7)")
    parser.add_argument("--tenants", type=int, default=30, help="scratch tenants (30)")
    parser.add_argument("--days", type=int, default=63, help="days of history (63)")
    parser.add_argument("--replay-from", type=int, default=36, help="first replayed day (36)")
    parser.add_argument(
        "--read",
        choices=("auto", "incidents", "anomalies"),
        default="auto",
        help="score Incident rows, raw anomalies, or incidents once the model exists (auto)",
    )
    parser.add_argument("--quick", action="store_true", help="6 tenants: a smoke run")
    parser.add_argument("--verbose", action="store_true", help="list misses and false alarms")
    parser.add_argument("--keep", action="store_true", help="keep the scratch rows")
    parser.add_argument(
        "--end",
        type=date.fromisoformat,
        help="last generated day, YYYY-MM-DD (yesterday): weekdays fall on other days of the "
        "series with another end, so a seed's figures are only comparable at the same end",
    )
    args = parser.parse_args()
    if args.quick:
        args.tenants = 6
    # The statistical rule wants 28 days of history; incidents need room after they start.
    if args.tenants < 3 or args.replay_from < 29 or args.days < args.replay_from + 14:
        parser.error("need --tenants >= 3, --replay-from >= 29, --days >= --replay-from + 14")
    return args


def main() -> None:
    began = time.perf_counter()
    args = parse_args()
    setup_django()
    end = args.end or datetime.now(UTC).date() - timedelta(days=1)
    records, labels = generate(
        seed=args.seed, tenants=args.tenants, days=args.days, end=end, replay_from=args.replay_from
    )
    real = [label for label in labels if not label.benign]
    log(
        f"bench/detection_quality: seed {args.seed}, {args.tenants} tenants x {args.days} days "
        f"to {end}, {len(records):,} records, generated in {time.perf_counter() - began:.1f} s"
    )
    for name, group in (("incidents", real), ("benign", [x for x in labels if x.benign])):
        counts = Counter(label.kind for label in group)
        log(f"  {name} ({len(group)}): " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    entity = sum(1 for label in real if label.root_cause)
    log(f"  root cause: one entity in {entity}, tenant-wide in {len(real) - entity}")
    if weak := [label for label in real if not label.material]:
        log(f"  warning: {len(weak)} incidents are below the materiality floor")
    if args.read == "incidents" and not incident_model():
        sys.exit("analytics.models.Incident does not exist yet; use --read anomalies")
    use_incidents = args.read == "incidents" or (args.read == "auto" and incident_model())
    reader = read_incidents if use_incidents else read_anomalies
    log(f"  scoring {'Incident rows' if use_incidents else 'raw anomalies, one incident each'}")

    prefix = f"bq-{secrets.token_hex(3)}-"
    try:
        step = time.perf_counter()
        tenants = insert(prefix, args.tenants, records)
        log(f"inserted into {prefix}* in {time.perf_counter() - step:.1f} s")
        step = time.perf_counter()
        first = end - timedelta(days=args.days - 1 - args.replay_from)
        final, history, failures = replay(tenants, first, end, reader)
        runs = len(tenants) * ((end - first).days + 1)
        log(
            f"replayed {first}..{end}: {runs} detection runs in "
            f"{time.perf_counter() - step:.1f} s, {failures} failed"
        )
        verdicts, incidents, matched = score(labels, tenants, final, history)
        report(labels, tenants, verdicts, incidents, matched, verbose=args.verbose)
    finally:
        if args.keep:
            log(f"kept the scratch tenants {prefix}*")
        else:
            cleanup(prefix)
    log(f"total {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
