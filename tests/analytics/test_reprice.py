"""Repricing stored records: service, command and API; unpriced records in statistics and
snapshots."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from analytics.models import CostRecord, CostSnapshot, CostSource, SnapshotStatus, SnapshotType
from analytics.services.price_catalog import CATALOG_VERSION
from analytics.services.pricing import cost_records_reprice
from analytics.services.snapshots import snapshot_compute
from tests.factories import CostRecordFactory, ModelPriceOverrideFactory, utc

pytestmark = pytest.mark.django_db

REPRICE = "/api/v1/cost-records/reprice/"
COST = "/api/v1/analytics/cost/"
NOW = utc(2026, 3, 10, 12)
DAY = utc(2026, 3, 2)


def priced(tenant, *, at, model="gpt-4o", cents="0", source=CostSource.CATALOG, **fields):
    """A record the service priced; `cents` None for an unpriced one."""
    return CostRecordFactory(
        tenant=tenant,
        model=model,
        provider=fields.pop("provider", None),
        input_tokens=fields.pop("input_tokens", 1_000_000),
        output_tokens=fields.pop("output_tokens", 0),
        cost_cents=None if source == CostSource.UNPRICED else Decimal(cents),
        cost_source=source,
        price_catalog_version="genai-prices 0.0.1",
        created_at=at,
        **fields,
    )


def complete_snapshot(tenant, snapshot_type, period_start):
    return CostSnapshot.objects.create(
        tenant=tenant,
        snapshot_type=snapshot_type,
        period_start=period_start,
        period_end=period_start + CostSnapshot.period_length(snapshot_type),
        status=SnapshotStatus.COMPLETE,
    )


def test_reprice_recomputes_service_prices_and_never_touches_client_costs(tenant):
    # given: gpt-4o lists $2.50 per million input tokens; two records priced at an old price,
    # one unpriced by a catalogue that did not know the model, one client cost
    old = priced(tenant, at=DAY + timedelta(hours=1), cents="100")
    lost = priced(tenant, at=DAY + timedelta(hours=2), source=CostSource.UNPRICED)
    right = priced(tenant, at=DAY + timedelta(hours=3), cents="250")
    client = CostRecordFactory(
        tenant=tenant,
        model="gpt-4o",
        input_tokens=1_000_000,
        cost_cents=Decimal("1"),
        created_at=DAY + timedelta(hours=4),
    )
    # when
    result = cost_records_reprice(tenant=tenant, since=DAY)
    # then
    assert (result.records_examined, result.rows_changed) == (3, 2)
    assert result.cents_delta == Decimal("400")  # 100 -> 250, unpriced -> 250
    assert (result.newly_priced, result.newly_unpriced) == (1, 0)
    for record in (old, lost, right):
        record.refresh_from_db()
        assert (record.cost_cents, record.cost_source) == (Decimal("250"), CostSource.CATALOG)
    assert old.price_catalog_version == CATALOG_VERSION
    assert right.price_catalog_version == "genai-prices 0.0.1"  # unchanged row, not written
    client.refresh_from_db()
    assert (client.cost_cents, client.cost_source) == (Decimal("1"), CostSource.CLIENT)


def test_second_reprice_changes_nothing(tenant):
    # given
    priced(tenant, at=DAY, cents="1")
    cost_records_reprice(tenant=tenant, since=DAY)
    # when
    again = cost_records_reprice(tenant=tenant, since=DAY)
    # then
    assert (again.records_examined, again.rows_changed, again.cents_delta) == (1, 0, 0)


def test_dry_run_reports_the_same_and_writes_nothing(tenant):
    # given
    record = priced(tenant, at=DAY + timedelta(hours=1), cents="1")
    hourly = complete_snapshot(tenant, SnapshotType.HOURLY, DAY + timedelta(hours=1))
    # when
    dry = cost_records_reprice(tenant=tenant, since=DAY, dry_run=True)
    # then
    assert (dry.rows_changed, dry.cents_delta, dry.snapshots_marked_stale) == (1, 249, 1)
    record.refresh_from_db()
    hourly.refresh_from_db()
    assert record.cost_cents == Decimal("1") and not hourly.is_stale
    # and the real run reports what the dry run promised
    real = cost_records_reprice(tenant=tenant, since=DAY)
    assert (real.rows_changed, real.cents_delta, real.snapshots_marked_stale) == (1, 249, 1)


def test_reprice_marks_the_covering_complete_snapshots_stale_only(tenant):
    # given: complete snapshots of the changed record's hour and day, and of another hour
    priced(tenant, at=DAY + timedelta(hours=5, minutes=30), cents="1")
    priced(tenant, at=DAY + timedelta(hours=7), cents="250")
    changed_hour = complete_snapshot(tenant, SnapshotType.HOURLY, DAY + timedelta(hours=5))
    changed_day = complete_snapshot(tenant, SnapshotType.DAILY, DAY)
    unchanged_hour = complete_snapshot(tenant, SnapshotType.HOURLY, DAY + timedelta(hours=7))
    # when
    result = cost_records_reprice(tenant=tenant, since=DAY, until=DAY + timedelta(days=1))
    # then
    assert result.snapshots_marked_stale == 2
    stale = set(CostSnapshot.objects.filter(is_stale=True).values_list("pk", flat=True))
    assert stale == {changed_hour.pk, changed_day.pk}
    assert unchanged_hour.pk not in stale


def test_range_and_model_filters_bound_the_reprice(tenant):
    # given
    before = priced(tenant, at=DAY - timedelta(microseconds=1), cents="1")
    inside = priced(tenant, at=DAY, cents="1")
    at_until = priced(tenant, at=DAY + timedelta(days=1), cents="1")
    other_model = priced(tenant, at=DAY, model="gpt-4o-mini", cents="1")
    # when
    result = cost_records_reprice(
        tenant=tenant, since=DAY, until=DAY + timedelta(days=1), model="gpt-4o"
    )
    # then
    assert result.rows_changed == 1
    for record, cents in ((before, "1"), (inside, "250"), (at_until, "1"), (other_model, "1")):
        record.refresh_from_db()
        assert record.cost_cents == Decimal(cents)


def test_override_across_its_effective_from_boundary(tenant):
    # given: a tenant price of 100 cents per million input tokens from DAY 12:00
    ModelPriceOverrideFactory(
        tenant=tenant,
        model="gpt-4o",
        input_cents_per_mtok=Decimal("100"),
        effective_from=DAY + timedelta(hours=12),
    )
    just_before = priced(tenant, at=DAY + timedelta(hours=12) - timedelta(microseconds=1))
    at_boundary = priced(tenant, at=DAY + timedelta(hours=12))
    # when
    cost_records_reprice(tenant=tenant, since=DAY)
    # then
    just_before.refresh_from_db()
    at_boundary.refresh_from_db()
    assert (just_before.cost_source, just_before.cost_cents) == (CostSource.CATALOG, 250)
    assert (at_boundary.cost_source, at_boundary.cost_cents) == (CostSource.OVERRIDE, 100)


def test_most_specific_override_wins(tenant):
    # given: a prefix for every fine-tune, a longer prefix, an exact name for one provider
    ModelPriceOverrideFactory(
        tenant=tenant, model="ft:", match="prefix", input_cents_per_mtok=1, effective_from=DAY
    )
    ModelPriceOverrideFactory(
        tenant=tenant,
        model="ft:gpt-4o",
        match="prefix",
        input_cents_per_mtok=2,
        effective_from=DAY,
    )
    ModelPriceOverrideFactory(
        tenant=tenant,
        model="ft:gpt-4o:acme",
        input_cents_per_mtok=3,
        provider="openai",
        effective_from=DAY,
    )
    # a later but less specific override does not beat an earlier exact one
    ModelPriceOverrideFactory(
        tenant=tenant,
        model="ft:gpt",
        match="prefix",
        input_cents_per_mtok=9,
        effective_from=DAY + timedelta(hours=1),
    )
    at = DAY + timedelta(hours=2)
    records = {
        "ft:llama": priced(tenant, at=at, model="ft:llama"),
        "ft:gpt-4o:other": priced(tenant, at=at, model="ft:gpt-4o:other"),
        "exact+provider": priced(tenant, at=at, model="ft:gpt-4o:acme", provider="openai"),
        "exact, no provider": priced(tenant, at=at, model="ft:gpt-4o:acme"),
        "ft:gpt-3.5": priced(tenant, at=at, model="ft:gpt-3.5"),
    }
    # when
    cost_records_reprice(tenant=tenant, since=DAY)
    # then
    cents = {name: CostRecord.objects.get(pk=r.pk).cost_cents for name, r in records.items()}
    assert cents == {
        "ft:llama": 1,
        "ft:gpt-4o:other": 2,
        "exact+provider": 3,
        "exact, no provider": 2,
        "ft:gpt-3.5": 9,
    }


def test_deleting_the_override_and_repricing_leaves_unknown_models_unpriced(tenant):
    # given: a self-hosted model priced by an override that is then removed
    override = ModelPriceOverrideFactory(tenant=tenant, model="acme-llm", effective_from=DAY)
    record = priced(tenant, at=DAY, model="acme-llm", cents="100", source=CostSource.OVERRIDE)
    override.delete()
    # when
    result = cost_records_reprice(tenant=tenant, since=DAY)
    # then: never 0
    record.refresh_from_db()
    assert (record.cost_source, record.cost_cents) == (CostSource.UNPRICED, None)
    assert (result.newly_unpriced, result.cents_delta) == (1, Decimal("-100"))


def test_reprice_is_scoped_to_the_tenant(tenant, other_tenant):
    # given: the other tenant has an override and an old price
    ModelPriceOverrideFactory(tenant=other_tenant, model="gpt-4o", effective_from=DAY)
    mine = priced(tenant, at=DAY, cents="1")
    theirs = priced(other_tenant, at=DAY, cents="1")
    # when
    cost_records_reprice(tenant=tenant, since=DAY)
    # then: my record takes the catalogue price, theirs is untouched
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.cost_source, mine.cost_cents) == (CostSource.CATALOG, 250)
    assert theirs.cost_cents == 1


# --- API ----------------------------------------------------------------------------------------


def test_api_reprices_the_callers_tenant_only(api_client, tenant, other_tenant):
    # given
    mine = priced(tenant, at=DAY, cents="1")
    theirs = priced(other_tenant, at=DAY, cents="1")
    # when
    dry = api_client.post(REPRICE, {"since": "2026-03-01", "dry_run": True}, format="json")
    real = api_client.post(REPRICE, {"since": "2026-03-01"}, format="json")
    # then
    assert dry.status_code == real.status_code == 200
    assert dry.json() == {
        "dry_run": True,
        "records_examined": 1,
        "rows_changed": 1,
        "cents_delta": 249,
        "newly_priced": 0,
        "newly_unpriced": 0,
        "snapshots_marked_stale": 0,
    }
    assert real.json()["rows_changed"] == 1 and real.json()["dry_run"] is False
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.cost_cents, theirs.cost_cents) == (250, 1)


@pytest.mark.parametrize(
    "body, field, reason",
    [
        ({}, "since", "This field is required."),
        ({"since": "yesterday"}, "since", "ISO-8601"),
        ({"since": "2026-03-01T00:00:00"}, "since", "timezone"),
        ({"since": "2026-03-02", "until": "2026-03-01"}, "since", "must be before"),
        ({"since": "2026-03-01", "model": "m" * 65}, "model", "no more than 64"),
        ({"since": "2026-03-01", "dry_run": "maybe"}, "dry_run", "valid boolean"),
        ({"since": "2026-03-01", "tenant": "globex"}, "tenant", "unknown field"),
    ],
)
def test_api_bad_input_is_a_400_naming_the_field(api_client, tenant, body, field, reason):
    # when
    response = api_client.post(REPRICE, body, format="json")
    # then
    assert response.status_code == 400
    errors = {item["field"]: item["reason"] for item in response.json()["field_errors"]}
    assert reason in errors[field]


# --- command ------------------------------------------------------------------------------------


def test_command_reprices_every_tenant_with_progress(tenant, other_tenant):
    # given
    mine = priced(tenant, at=DAY, cents="1")
    theirs = priced(other_tenant, at=DAY + timedelta(days=9), cents="250")
    out = StringIO()
    # when
    call_command("reprice", "--since", "2026-03-01", "--chunk-days", "3", stdout=out)
    # then
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.cost_cents, theirs.cost_cents) == (250, 250)
    text = out.getvalue()
    assert "acme 2026-03-02 00:00 .. 2026-03-02 00:00: 1 examined, 1 changed, +249" in text
    assert "globex: 0 row(s) changed of 1, +0 cents" in text
    assert "Done: 1 row(s) changed, cents delta +249" in text


def test_command_dry_run_for_one_tenant_and_model_changes_nothing(tenant):
    # given
    record = priced(tenant, at=DAY, cents="1")
    out = StringIO()
    # when
    call_command(
        "reprice",
        "--tenant",
        "acme",
        "--since",
        "2026-03-01T00:00:00Z",
        "--until",
        "2026-03-03",
        "--model",
        "gpt-4o",
        "--dry-run",
        stdout=out,
    )
    # then
    record.refresh_from_db()
    assert record.cost_cents == 1
    assert "Done (dry run): 1 row(s) would change, cents delta +249" in out.getvalue()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--since", "soon"], "--since must be an ISO-8601"),
        (["--since", "2026-03-02", "--until", "2026-03-01"], "--since must be before --until"),
        (["--since", "2026-03-02", "--tenant", "nobody"], "Unknown tenant"),
        (["--since", "2026-03-02", "--chunk-days", "0"], "--chunk-days must be at least 1"),
    ],
)
def test_command_bad_input_is_a_command_error(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("reprice", *args, stdout=StringIO())


# --- unpriced records in statistics and snapshots -------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_unpriced_records_are_counted_alike_from_records_and_from_snapshots(api_client, tenant):
    # given: one priced and two unpriced records on DAY
    priced(tenant, at=DAY + timedelta(hours=1), cents="250")
    priced(tenant, at=DAY + timedelta(hours=2), model="acme-llm", source=CostSource.UNPRICED)
    priced(tenant, at=DAY + timedelta(hours=3), model="acme-llm", source=CostSource.UNPRICED)
    params = {"from": "2026-03-02", "to": "2026-03-03", "resolution": "day"}
    # when: answered from the records, then from a complete daily snapshot
    from_records = api_client.get(COST, params).json()
    snapshot = snapshot_compute(tenant=tenant, snapshot_type=SnapshotType.DAILY, period_start=DAY)
    from_snapshot = api_client.get(COST, params).json()
    # then
    assert from_records == from_snapshot
    assert from_records["totals"]["unpriced_records"] == 2
    assert from_records["totals"]["spend_cents"] == 250
    models = {row["model"]: row["unpriced_records"] for row in from_records["by_model"]}
    assert models == {"gpt-4o": 0, "acme-llm": 2}
    tenant_row = snapshot.aggregates.get(entity_type="tenant")
    assert (tenant_row.unpriced_records, tenant_row.total_cost_cents) == (2, 250)
    model_row = snapshot.aggregates.get(entity_type="model", entity_id="acme-llm")
    assert (model_row.unpriced_records, model_row.total_cost_cents) == (2, 0)
