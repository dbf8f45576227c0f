"""Prices of LLM calls: the bundled `genai-prices` catalogue and tenant overrides as flat rates.

Pure: no ORM, no settings. The catalogue ships inside the package and is never refreshed over
the network, so a price depends only on the installed version (CATALOG_VERSION, stored on
every record the service prices).

Token conventions (those of genai-prices, of OpenAI's usage and of the OpenTelemetry GenAI
attributes): `input_tokens` counts every input token, cached ones included;
`cache_read_tokens` and `cache_write_tokens` are the parts of it read from and written to the
prompt cache, so together they never exceed `input_tokens`. The uncached rest is charged at
the input rate, cache reads and writes at their own rates, or at the input rate when the
model has none. A client reporting Anthropic's usage adds `cache_read_input_tokens` and
`cache_creation_input_tokens` to its `input_tokens`.

A price is a list of PriceCells per (model, provider): each is a flat Rate over a half-open
time window, a UTC time-of-day window (off-peak prices) and an input-token band (the
catalogue's tiered prices are "cliff" tiers: above a threshold of total input tokens every
token of the call pays the tier's rate). The cells of one key never overlap and cover all
time, so pricing a record is a join on exactly one cell, in SQL for a batch or a reprice and
in Python (cell_for and cost_cents) for CostSim.
"""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

import genai_prices
from genai_prices import data_snapshot, types

CATALOG_VERSION = f"genai-prices {genai_prices.__version__}"[:32]

SOURCE_CATALOG = "catalog"
SOURCE_OVERRIDE = "override"
SOURCE_UNPRICED = "unpriced"

# Cells span all time; PostgreSQL casts these strings to timestamptz infinities.
BEGINNING = datetime(1, 1, 1, tzinfo=UTC)
END = datetime(9999, 12, 31, tzinfo=UTC)
MIDNIGHT = time(0, 0)
# Exclusive end of the day; '24:00:00' is a valid PostgreSQL time.
END_OF_DAY = "24:00:00"
# Costs are stored with 6 decimal places (numeric(18, 6)).
CENT_PLACES = Decimal("0.000001")
MTOK = Decimal(1_000_000)

# Provider names of the OpenTelemetry GenAI conventions (gen_ai.provider.name and the older
# gen_ai.system) that the catalogue does not recognise by itself.
PROVIDER_ALIASES = {
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure.ai.inference": "azure",
    "x_ai": "x-ai",
    "fireworks_ai": "fireworks",
    "aws_bedrock": "aws",
    "vertex_ai": "google",
    "gemini": "google",
    "gcp.gen_ai": "google",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
}


@dataclass(frozen=True)
class Rate:
    """Cents per million tokens, and per request. None: no such price (cache prices fall back
    to the input price; a call with output tokens and no output price stays unpriced)."""

    input: Decimal
    output: Decimal | None
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    per_request: Decimal = Decimal(0)


@dataclass(frozen=True)
class OverrideRule:
    """A tenant price override as the pricing engine sees it."""

    model: str
    prefix: bool
    provider: str | None
    effective_from: datetime
    rate: Rate

    def matches(self, model: str, provider: str | None) -> bool:
        if self.provider is not None and self.provider != provider:
            return False
        return model.startswith(self.model) if self.prefix else model == self.model

    def specificity(self) -> tuple[int, int, int]:
        """Higher is more specific: an exact name over any prefix, a longer prefix over a
        shorter one, then a named provider over any provider."""
        return (0 if self.prefix else 1, len(self.model), 0 if self.provider is None else 1)


@dataclass(frozen=True)
class PriceCell:
    model: str
    provider: str | None
    source: str
    valid_from: datetime
    valid_until: datetime
    tod_from: time
    tod_until: time | None  # None: end of day
    # Band of input_tokens: min_input < input_tokens <= max_input (None: no upper bound).
    min_input: int
    max_input: int | None
    rate: Rate | None  # None: unpriced

    def as_row(self) -> dict:
        """The cell as a row of the SQL price table (see PRICE_TABLE_TYPES)."""
        rate = self.rate
        return {
            "model": self.model,
            "provider_key": self.provider or "",
            "source": self.source,
            "valid_from": "-infinity" if self.valid_from == BEGINNING else self.valid_from,
            "valid_until": "infinity" if self.valid_until == END else self.valid_until,
            "tod_from": self.tod_from,
            "tod_until": END_OF_DAY if self.tod_until is None else self.tod_until,
            "min_input": self.min_input,
            "max_input": self.max_input,
            "input": None if rate is None else rate.input,
            "output": None if rate is None else rate.output,
            "cache_read": None if rate is None else rate.cache_read,
            "cache_write": None if rate is None else rate.cache_write,
            "per_request": None if rate is None else rate.per_request,
        }


# Column types of the SQL price table built from PriceCell.as_row().
PRICE_TABLE_TYPES = (
    "model varchar, provider_key varchar, source varchar, valid_from timestamptz, "
    "valid_until timestamptz, tod_from time, tod_until time, min_input bigint, max_input bigint, "
    "input numeric, output numeric, cache_read numeric, cache_write numeric, per_request numeric"
)


def price_table_json(cells: Iterable[PriceCell]) -> str:
    """Cells as a JSON array for json_to_recordset(..) AS p(PRICE_TABLE_TYPES); datetimes,
    times and Decimals travel as text, which PostgreSQL casts back without loss."""
    return json.dumps([cell.as_row() for cell in cells], default=str, separators=(",", ":"))


def catalog_provider_id(provider: str | None) -> str | None:
    if provider is None:
        return None
    return PROVIDER_ALIASES.get(provider.lower(), provider)


# genai-prices remembers every name it was asked about, misses included, in its snapshot.
# Names come from clients, so lookups go through a snapshot of our own over the bundled data,
# replaced (with empty memories) every LOOKUPS_PER_SNAPSHOT lookups.
LOOKUPS_PER_SNAPSHOT = 4096
_snapshot: data_snapshot.DataSnapshot | None = None
_snapshot_lookups = 0


def _lookup_snapshot() -> data_snapshot.DataSnapshot:
    global _snapshot, _snapshot_lookups
    if _snapshot is None or _snapshot_lookups >= LOOKUPS_PER_SNAPSHOT:
        bundled = data_snapshot.get_snapshot()
        _snapshot = data_snapshot.DataSnapshot(providers=bundled.providers, from_auto_update=False)
        _snapshot_lookups = 0
    _snapshot_lookups += 1
    return _snapshot


@lru_cache(maxsize=LOOKUPS_PER_SNAPSHOT)
def catalog_model(model: str, provider: str | None) -> types.ModelInfo | None:
    """The catalogue's model for a record, or None when the catalogue does not know it.

    With a provider, only that provider's models count (a provider the catalogue does not
    know prices nothing: a self-hosted model must not take a hosted model's price); without
    one, the provider is inferred from the model name, as genai-prices does.
    """
    try:
        _, info = _lookup_snapshot().find_provider_model(
            model, None, catalog_provider_id(provider), None
        )
    except LookupError:
        return None
    return info


def _usd_to_cents(value: Decimal | None) -> Decimal | None:
    return None if value is None else value * 100


def _tier_starts(model_price: types.ModelPrice) -> list[int]:
    starts = set()
    for key in ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok"):
        value = getattr(model_price, key, None)
        if isinstance(value, types.TieredPrices):
            starts.update(tier.start for tier in value.tiers)
    return sorted(starts)


def _price_at(value, total_input_tokens: int) -> Decimal | None:
    """A price key's USD value for a call of `total_input_tokens` (the catalogue's rule:
    the highest tier whose start the call's input exceeds)."""
    if not isinstance(value, types.TieredPrices):
        return value
    price = value.base
    for tier in reversed(value.tiers):
        if total_input_tokens > tier.start:
            price = tier.price
            break
    return price


def _rate_of(model_price: types.ModelPrice, total_input_tokens: int) -> Rate | None:
    input_price = _price_at(getattr(model_price, "input_mtok", None), total_input_tokens)
    if input_price is None:
        # Priced by characters, pages or audio only: nothing a token count can price.
        return None
    requests = getattr(model_price, "requests_kcount", None)
    return Rate(
        input=_usd_to_cents(input_price),
        output=_usd_to_cents(
            _price_at(getattr(model_price, "output_mtok", None), total_input_tokens)
        ),
        cache_read=_usd_to_cents(
            _price_at(getattr(model_price, "cache_read_mtok", None), total_input_tokens)
        ),
        cache_write=_usd_to_cents(
            _price_at(getattr(model_price, "cache_write_mtok", None), total_input_tokens)
        ),
        # USD per thousand requests -> cents per request.
        per_request=Decimal(0) if requests is None else requests / 10,
    )


def _catalog_dates(info: types.ModelInfo | None) -> list[date]:
    if info is None or not isinstance(info.prices, list):
        return []
    return sorted(
        {
            price.constraint.start_date
            for price in info.prices
            if isinstance(price.constraint, types.StartDateConstraint)
        }
    )


def _times_of_day(info: types.ModelInfo) -> list[time]:
    """Boundaries of the model's off-peak windows, UTC, sorted, starting at midnight."""
    points = {MIDNIGHT}
    if isinstance(info.prices, list):
        for price in info.prices:
            constraint = price.constraint
            if isinstance(constraint, types.TimeOfDateConstraint):
                for value in (constraint.start_time, constraint.end_time):
                    if value.tzinfo is not None:
                        value = datetime.combine(date(2000, 1, 1), value).astimezone(UTC).time()
                    points.add(value.replace(tzinfo=None))
    return sorted(points)


def _catalog_cells(
    *, model: str, provider: str | None, start: datetime, end: datetime
) -> list[PriceCell]:
    """Cells of the catalogue's price for [start, end), during which the catalogue's own
    date-dependent prices do not change (the caller splits at CATALOG dates)."""
    info = catalog_model(model, provider)
    if info is None:
        return [
            _whole_span_cell(
                model=model,
                provider=provider,
                start=start,
                end=end,
                source=SOURCE_UNPRICED,
                rate=None,
            )
        ]
    cells = []
    day = start.date()
    times = _times_of_day(info)
    for index, tod_from in enumerate(times):
        tod_until = times[index + 1] if index + 1 < len(times) else None
        model_price = info.get_prices(datetime.combine(day, tod_from, tzinfo=UTC))
        starts = _tier_starts(model_price)
        bounds = [-1, *starts]
        for band, low in enumerate(bounds):
            high = bounds[band + 1] if band + 1 < len(bounds) else None
            rate = _rate_of(model_price, max(low + 1, 0))
            cells.append(
                PriceCell(
                    model=model,
                    provider=provider,
                    source=SOURCE_CATALOG if rate is not None else SOURCE_UNPRICED,
                    valid_from=start,
                    valid_until=end,
                    tod_from=tod_from,
                    tod_until=tod_until,
                    min_input=low,
                    max_input=high,
                    rate=rate,
                )
            )
    return cells


def _whole_span_cell(
    *, model: str, provider: str | None, start: datetime, end: datetime, source: str, rate
) -> PriceCell:
    """One cell over [start, end): every time of day and every prompt size at one rate."""
    return PriceCell(
        model=model,
        provider=provider,
        source=source,
        valid_from=start,
        valid_until=end,
        tod_from=MIDNIGHT,
        tod_until=None,
        min_input=-1,
        max_input=None,
        rate=rate,
    )


def override_in_effect(
    rules: Sequence[OverrideRule], *, model: str, provider: str | None, at: datetime
) -> OverrideRule | None:
    """The override pricing a call of `model`/`provider` at `at`: among the matching
    overrides whose effective_from is not after `at`, the most specific one
    (OverrideRule.specificity), and of equally specific ones the latest to take effect."""
    best = None
    best_key = None
    for rule in rules:
        if rule.effective_from <= at and rule.matches(model, provider):
            key = (rule.specificity(), rule.effective_from)
            if best_key is None or key > best_key:
                best, best_key = rule, key
    return best


def price_cells(
    keys: Iterable[tuple[str, str | None]], overrides: Sequence[OverrideRule]
) -> list[PriceCell]:
    """Cells pricing every (model, provider) of `keys` over all time with the catalogue and
    the tenant's `overrides`; each key's cells are disjoint and cover every instant, UTC time
    of day and input size."""
    cells: list[PriceCell] = []
    for model, provider in keys:
        rules = [rule for rule in overrides if rule.matches(model, provider)]
        breaks = {BEGINNING}
        breaks.update(
            datetime.combine(day, MIDNIGHT, tzinfo=UTC)
            for day in _catalog_dates(catalog_model(model, provider))
        )
        breaks.update(rule.effective_from for rule in rules)
        points = sorted(breaks)
        for index, start in enumerate(points):
            end = points[index + 1] if index + 1 < len(points) else END
            rule = override_in_effect(rules, model=model, provider=provider, at=start)
            if rule is None:
                cells.extend(_catalog_cells(model=model, provider=provider, start=start, end=end))
            else:
                cells.append(
                    _whole_span_cell(
                        model=model,
                        provider=provider,
                        start=start,
                        end=end,
                        source=SOURCE_OVERRIDE,
                        rate=rule.rate,
                    )
                )
    return cells


# complexity: one condition per term of the SQL price join it mirrors, kept as one expression so the
# two read alike
def cell_for(
    cells: Iterable[PriceCell], *, model: str, provider: str | None, at: datetime, input_tokens: int
) -> PriceCell | None:
    """The cell pricing one call; the Python twin of the SQL join (PRICE_JOIN)."""
    moment = at.astimezone(UTC)
    time_of_day = moment.time().replace(tzinfo=None)
    for cell in cells:
        if (
            cell.model == model
            and cell.provider == provider
            and cell.valid_from <= moment < cell.valid_until
            and cell.tod_from <= time_of_day
            and (cell.tod_until is None or time_of_day < cell.tod_until)
            and input_tokens > cell.min_input
            and (cell.max_input is None or input_tokens <= cell.max_input)
        ):
            return cell
    return None


def cost_cents(
    rate: Rate | None,
    *,
    input_tokens: int,
    output_tokens: int,
    cache_read_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Decimal | None:
    """Cents of one call at `rate`, rounded half up to 6 places as the SQL twin (COST_SQL)
    stores it; None when unpriced."""
    if rate is None:
        return None
    if output_tokens and rate.output is None:
        return None
    uncached = input_tokens - cache_read_tokens - cache_write_tokens
    cache_read = rate.input if rate.cache_read is None else rate.cache_read
    cache_write = rate.input if rate.cache_write is None else rate.cache_write
    tokens_cost = (
        uncached * rate.input
        + cache_read_tokens * cache_read
        + cache_write_tokens * cache_write
        + (output_tokens * rate.output if output_tokens else 0)
    )
    total = tokens_cost / MTOK + rate.per_request
    return total.quantize(CENT_PLACES, rounding=ROUND_HALF_UP)


# The SQL twins of cost_cents() and cell_for(), over a record `r` and a price table `p`
# (PRICE_TABLE_TYPES). Record columns are spelled r.<name>; a caller whose record source is not
# a table aliases it as `r`.
COST_SQL = """
CASE WHEN p.input IS NULL OR (r.output_tokens > 0 AND p.output IS NULL) THEN NULL
     ELSE round(
         ((r.input_tokens - r.cache_read_tokens - r.cache_write_tokens) * p.input
          + r.cache_read_tokens * COALESCE(p.cache_read, p.input)
          + r.cache_write_tokens * COALESCE(p.cache_write, p.input)
          + CASE WHEN r.output_tokens > 0 THEN r.output_tokens * p.output ELSE 0 END
         ) / 1000000 + p.per_request, 6)
END"""


def price_join(created_at: str) -> str:
    """The join condition of a record `r` with its one cell of the price table `p`;
    `created_at` is the SQL expression of the record's time. Equality on model and provider
    comes first so PostgreSQL can hash the join."""
    return f"""
    p.model = r.model AND p.provider_key = COALESCE(r.provider, '')
    AND {created_at} >= p.valid_from AND {created_at} < p.valid_until
    AND ({created_at} AT TIME ZONE 'UTC')::time >= p.tod_from
    AND ({created_at} AT TIME ZONE 'UTC')::time < p.tod_until
    AND r.input_tokens > p.min_input AND (p.max_input IS NULL OR r.input_tokens <= p.max_input)
    """
