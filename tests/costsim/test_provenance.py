"""Provenance service and selectors: record, backfill, export, prune; and the admin."""

import json
from datetime import timedelta

import psycopg
import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from analytics.services.locks import LockId
from costsim.models import Provenance
from costsim.selectors import provenance_drift_stats, provenance_existing_keys, provenance_list
from costsim.services.drift import compare
from costsim.services.estimators import estimate_v1, estimate_v2
from costsim.services.provenance import (
    ProvenanceEntry,
    provenance_backfill,
    provenance_export,
    provenance_input_json,
    provenance_prune,
    provenance_record,
    provenance_record_many,
)
from tests.costsim.factories import BackfillProvenanceFactory, ProvenanceFactory
from tests.factories import TenantFactory, utc

pytestmark = pytest.mark.django_db

SPEC_INPUT = {
    "plan": [{"skill": "http_call", "params": {"url": "https://api.example.com"}}],
    "budget_cents": 100,
}
# The known input_hash of SPEC_INPUT; a client hashing the same request gets this value.
SPEC_INPUT_HASH = "7d2218dea0c346ce"


def _comparison(plan, budget_cents=100):
    v1 = estimate_v1(plan, budget_cents=budget_cents)
    v2 = estimate_v2(plan, budget_cents=budget_cents)
    return v1, v2, compare(v1, v2)


def _line(**fields) -> str:
    return json.dumps(fields)


@pytest.fixture
def lock_holder():
    """Hold an advisory lock from a second database connection, as another process would."""
    params = connection.get_connection_params()
    conn = psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname=params["dbname"],
        autocommit=True,
    )

    def hold(lock_id: int) -> None:
        conn.execute("SELECT pg_advisory_lock(%s)", [lock_id])

    yield hold
    conn.close()


# provenance_record -------------------------------------------------------------------


def test_record_stores_the_comparison_with_configured_versions(tenant, settings):
    # given
    settings.COSTSIM_MODEL_VERSION = "2.0.1"
    settings.COSTSIM_ADAPTER_VERSION = "2.0.2"
    settings.GIT_COMMIT_SHA = "abcdef123456"
    v1, v2, comparison = _comparison(SPEC_INPUT["plan"])
    # when
    row = provenance_record(
        tenant=tenant,
        run_id="run-9",
        source="sandbox",
        input_json=SPEC_INPUT,
        v1_result=v1,
        v2_result=v2,
        comparison=comparison,
    )
    # then
    row.refresh_from_db()
    assert row.input_hash == SPEC_INPUT_HASH
    assert row.input_json == SPEC_INPUT
    assert (row.model_version, row.adapter_version, row.commit_sha) == (
        "2.0.1",
        "2.0.2",
        "abcdef123456",
    )
    assert (row.variant_slug, row.source, row.run_id) == ("v2", "sandbox", "run-9")
    assert (row.v1_cost, row.v2_cost) == (v1.estimated_cost_cents, v2.estimated_cost_cents)
    assert row.cost_delta == v2.estimated_cost_cents - v1.estimated_cost_cents
    assert row.output_hash == v2.output_hash
    assert row.output_json == v2.to_dict()
    assert (row.verdict, row.drift_score) == (comparison.verdict, comparison.drift_score)


def test_input_json_has_allowed_skills_only_when_given():
    assert provenance_input_json(plan=[], budget_cents=5, allowed_skills=None) == {
        "plan": [],
        "budget_cents": 5,
    }
    assert provenance_input_json(plan=[], budget_cents=5, allowed_skills=[]) == {
        "plan": [],
        "budget_cents": 5,
        "allowed_skills": [],
    }


def test_record_many_inserts_all_rows_and_returns_their_ids(tenant, other_tenant):
    # given
    v1, v2, comparison = _comparison(SPEC_INPUT["plan"])
    entries = [
        ProvenanceEntry(
            tenant=owner,
            run_id=None,
            source="api",
            input_json={**SPEC_INPUT, "budget_cents": budget},
            v1_result=v1,
            v2_result=v2,
            comparison=comparison,
        )
        for owner, budget in ((tenant, 100), (other_tenant, 200), (tenant, 300))
    ]
    # when
    rows = provenance_record_many(entries=entries)
    # then
    assert all(row.pk is not None for row in rows)
    stored = {row.pk: row for row in Provenance.objects.all()}
    assert set(stored) == {row.pk for row in rows}
    assert [stored[row.pk].input_json["budget_cents"] for row in rows] == [100, 200, 300]
    assert stored[rows[1].pk].tenant_id == other_tenant.pk


# Selectors ---------------------------------------------------------------------------


def test_list_is_scoped_to_the_tenant(tenant, other_tenant):
    # given
    mine = ProvenanceFactory(tenant=tenant)
    ProvenanceFactory(tenant=other_tenant)
    # then
    assert list(provenance_list(tenant=tenant)) == [mine]


def test_drift_stats_are_scoped_to_the_tenant(tenant, other_tenant):
    # given
    ProvenanceFactory(tenant=other_tenant, v1_cost=0, v2_cost=50)
    # then
    assert provenance_drift_stats(tenant=tenant)["total"] == 0
    assert provenance_drift_stats(tenant=other_tenant)["max_delta"] == 50.0


def test_existing_keys_do_not_match_another_tenants_hash(tenant, other_tenant):
    # given
    row = ProvenanceFactory(tenant=other_tenant)
    # when
    found = provenance_existing_keys(
        keys={(tenant.pk, row.input_hash), (other_tenant.pk, row.input_hash)}
    )
    # then
    assert found == {(other_tenant.pk, row.input_hash)}


# Backfill ----------------------------------------------------------------------------


def test_backfill_inserts_v1_baseline_rows(tenant):
    # given
    lines = [
        _line(tenant="acme", cost=12, run_id="r-1", input=SPEC_INPUT),
        _line(tenant="acme", cost=3.0, input_hash="ABCDEF0123456789"),
    ]
    # when
    result = provenance_backfill(lines=lines)
    # then
    assert (result.inserted, result.skipped, result.errors) == (2, 0, [])
    first, second = Provenance.objects.order_by("id")
    assert (first.variant_slug, first.source, first.run_id) == ("v1", "backfill", "r-1")
    assert (first.v1_cost, first.v2_cost, first.cost_delta, first.drift_score) == (
        12,
        None,
        None,
        None,
    )
    assert first.input_json == SPEC_INPUT
    assert first.input_hash == SPEC_INPUT_HASH
    assert first.output_json is None
    assert (second.input_json, second.input_hash, second.v1_cost) == ({}, "abcdef0123456789", 3)


def test_backfill_skips_duplicates_within_the_file_and_against_the_database(tenant, other_tenant):
    # given: one hash already stored for acme (by a sandbox row)
    stored = ProvenanceFactory(tenant=tenant)
    lines = [
        _line(tenant="acme", cost=1, input_hash=stored.input_hash),  # in the database
        _line(tenant="acme", cost=1, input=SPEC_INPUT),
        _line(tenant="acme", cost=2, input_hash=SPEC_INPUT_HASH),  # same hash, earlier line
        _line(tenant="globex", cost=1, input=SPEC_INPUT),  # same hash, other tenant
    ]
    # when
    result = provenance_backfill(lines=lines, batch_size=2)
    # then
    assert (result.inserted, result.skipped, result.errors) == (2, 2, [])
    assert Provenance.objects.filter(source="backfill").count() == 2
    assert Provenance.objects.filter(tenant=other_tenant, input_hash=SPEC_INPUT_HASH).exists()


def test_backfill_run_twice_inserts_nothing_the_second_time(tenant):
    # given
    lines = [_line(tenant="acme", cost=n, input={"n": n}) for n in range(5)]
    provenance_backfill(lines=lines, batch_size=2)
    # when
    again = provenance_backfill(lines=lines, batch_size=2)
    # then
    assert (again.inserted, again.skipped) == (0, 5)
    assert Provenance.objects.count() == 5


def test_backfill_dry_run_writes_nothing_but_counts_the_same(tenant):
    # given
    lines = [
        _line(tenant="acme", cost=1, input={"a": 1}),
        _line(tenant="acme", cost=1, input={"a": 1}),
        _line(tenant="nobody", cost=1, input={"a": 1}),
    ]
    # when
    dry = provenance_backfill(lines=lines, dry_run=True)
    # then
    assert Provenance.objects.count() == 0
    real = provenance_backfill(lines=lines)
    assert (dry.inserted, dry.skipped, dry.errors) == (real.inserted, real.skipped, real.errors)
    assert (dry.inserted, dry.skipped, len(dry.errors)) == (1, 1, 1)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{not json", "invalid JSON"),
        ('{"tenant": "acme", "cost": NaN, "input": {}}', "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (_line(cost=1, input={}), "tenant: is required"),
        (_line(tenant="nobody", cost=1, input={}), "tenant: unknown tenant 'nobody'"),
        (_line(tenant="acme", input={}), "cost: is required"),
        (_line(tenant="acme", cost=-1, input={}), "cost: must be a number >= 0"),
        (_line(tenant="acme", cost="5", input={}), "cost: must be a number >= 0"),
        (_line(tenant="acme", cost=1.5, input={}), "cost: must be a whole number of cents"),
        (_line(tenant="acme", cost=2**31, input={}), "cost: must be at most 2147483647"),
        (_line(tenant="acme", cost=1), "input or input_hash is required"),
        (_line(tenant="acme", cost=1, input=[1]), "input: must be an object"),
        (_line(tenant="acme", cost=1, input_hash="xyz"), "input_hash: must be 16 hex characters"),
        (_line(tenant="acme", cost=1, input={}, run_id="r" * 65), "run_id:"),
        (_line(tenant="acme", cost=1, input={}, extra=1), "unknown field(s): extra"),
        (_line(tenant="acme", cost=1, input={"p": "a\u0000b"}), "input.p: contains a NUL"),
    ],
)
def test_backfill_reports_bad_lines_with_their_numbers(tenant, text, reason):
    # given: the bad line sits between two good ones
    lines = [
        _line(tenant="acme", cost=1, input={"i": 1}),
        text,
        _line(tenant="acme", cost=1, input={"i": 2}),
    ]
    # when
    result = provenance_backfill(lines=lines)
    # then
    assert result.inserted == 2
    assert len(result.errors) == 1
    line_no, message = result.errors[0]
    assert line_no == 2
    assert reason in message
    assert Provenance.objects.count() == 2


def test_backfill_numbers_lines_in_the_file_including_blank_ones(tenant):
    # given
    lines = ["\n", _line(tenant="acme", cost=1, input={}) + "\n", "\n", "oops\n"]
    # when
    result = provenance_backfill(lines=lines)
    # then
    assert result.errors[0][0] == 4
    assert result.lines == 2


def test_backfill_accepts_utf8_bytes_and_reports_undecodable_lines(tenant):
    # given
    lines = [_line(tenant="acme", cost=1, input={"p": "café"}).encode(), b"\xff\xfe{\n"]
    # when
    result = provenance_backfill(lines=lines)
    # then
    assert result.inserted == 1
    assert Provenance.objects.get().input_json == {"p": "café"}
    assert result.errors[0][0] == 2


def test_backfill_makes_one_duplicate_query_per_batch(tenant):
    # given: 6 lines in batches of 3
    lines = [_line(tenant="acme", cost=1, input={"n": n}) for n in range(6)]
    # when
    with CaptureQueriesContext(connection) as queries:
        provenance_backfill(lines=lines, batch_size=3)
    # then
    sql = [query["sql"] for query in queries.captured_queries]
    duplicate_checks = [s for s in sql if s.startswith("SELECT") and '"input_hash" IN' in s]
    inserts = [s for s in sql if s.startswith("INSERT")]
    tenant_lookups = [s for s in sql if 'FROM "analytics_tenant"' in s]
    assert len(duplicate_checks) == 2
    assert len(inserts) == 2
    assert len(tenant_lookups) == 1


def test_backfill_progress_is_called_per_batch(tenant):
    # given
    seen = []
    lines = [_line(tenant="acme", cost=1, input={"n": n}) for n in range(5)]
    # when
    provenance_backfill(lines=lines, batch_size=2, progress=lambda r: seen.append(r.lines))
    # then
    assert seen == [2, 4, 5]


# Export ------------------------------------------------------------------------------


def test_export_yields_every_column_ordered_by_id(tenant, other_tenant):
    # given
    first = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 2, 10), run_id="r")
    second = BackfillProvenanceFactory(tenant=other_tenant, created_at=utc(2026, 3, 1))
    # when
    rows = list(provenance_export())
    # then
    assert [row["id"] for row in rows] == [first.id, second.id]
    row = rows[0]
    columns = {f.attname for f in Provenance._meta.concrete_fields}
    money = {"v1_cost", "v2_cost", "cost_delta"}
    assert set(row) == columns - money | {"v1_cost_cents", "v2_cost_cents", "cost_delta_cents"} | {
        "tenant"
    }
    assert (row["v1_cost_cents"], row["v2_cost_cents"]) == (first.v1_cost, first.v2_cost)
    assert row["tenant"] == "acme"
    assert row["tenant_id"] == tenant.id
    assert row["created_at"] == "2026-03-02T10:00:00Z"
    assert row["input_json"] == first.input_json
    assert row["output_json"] == first.output_json
    json.dumps(row)  # JSON-ready as it is


def test_export_filters_by_tenant_and_window(tenant, other_tenant):
    # given
    ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1))
    inside = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 2))
    ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 3))
    ProvenanceFactory(tenant=other_tenant, created_at=utc(2026, 3, 2))
    # when
    rows = list(provenance_export(tenant=tenant, start=utc(2026, 3, 2), end=utc(2026, 3, 3)))
    # then
    assert [row["id"] for row in rows] == [inside.id]


# Round trip: export, then backfill --------------------------------------------------

_ROW_FIELDS = [f.attname for f in Provenance._meta.concrete_fields if f.attname != "id"]


def _rows(**filters) -> list[dict]:
    return list(Provenance.objects.filter(**filters).order_by("id").values(*_ROW_FIELDS))


def _export_lines(**filters) -> list[str]:
    return [json.dumps(row) for row in provenance_export(**filters)]


def test_exported_rows_backfilled_into_an_empty_table_are_the_same_rows(tenant):
    # given: a sandbox comparison with a run, the same plan compared again later, an API
    # comparison whose V2 failed, and a V1 baseline
    plan = [{"skill": "llm_invoke", "params": {"prompt": "é" * 40}}]
    ProvenanceFactory(tenant=tenant, plan=plan, run_id="run-1", created_at=utc(2026, 3, 1, 9))
    ProvenanceFactory(tenant=tenant, plan=plan, created_at=utc(2026, 3, 1, 9, 0, 0, 123456))
    ProvenanceFactory(
        tenant=tenant,
        source="api",
        output_json=None,
        output_hash="",
        v2_cost=None,
        cost_delta=None,
        drift_score=None,
        verdict=None,
        v2_status="error",
        model_version="1.9.0",
        commit_sha="0123456789ab",
    )
    BackfillProvenanceFactory(tenant=tenant, run_id="r-7", v1_cost=0)
    before = _rows()
    lines = _export_lines()
    Provenance.objects.all().delete()
    # when
    result = provenance_backfill(lines=lines, batch_size=3)
    # then
    assert (result.inserted, result.skipped, result.errors) == (4, 0, [])
    assert _rows() == before


def test_exported_rows_find_their_tenant_by_slug_not_by_id(tenant):
    # given: the rows are exported, and the database they go to has its own "acme"
    ProvenanceFactory(tenant=tenant, run_id="run-1")
    before = _rows()
    lines = _export_lines()
    Provenance.objects.all().delete()
    tenant.delete()
    fresh = TenantFactory(slug="acme")
    # when
    result = provenance_backfill(lines=lines)
    # then
    assert (result.inserted, result.errors) == (1, [])
    assert _rows() == [row | {"tenant_id": fresh.id} for row in before]


def test_backfilling_an_export_again_skips_every_row(tenant):
    # given: two comparisons of the same plan at different instants
    ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1))
    ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 2))
    lines = _export_lines()
    # when
    result = provenance_backfill(lines=lines + lines)
    # then
    assert (result.inserted, result.skipped, result.errors) == (0, 4, [])
    assert Provenance.objects.count() == 2


def test_an_exported_row_is_restored_beside_other_comparisons_of_its_plan(tenant, other_tenant):
    # given: the other tenant's row is exported; this database already compared the plan
    exported = ProvenanceFactory(tenant=other_tenant, created_at=utc(2026, 3, 1))
    lines = _export_lines(tenant=other_tenant)
    exported.delete()
    ProvenanceFactory(tenant=other_tenant, created_at=utc(2026, 3, 5))
    # when: the export, then a V1 baseline of the same plan
    baseline = _line(tenant="globex", cost=1, input_hash=exported.input_hash)
    result = provenance_backfill(lines=[*lines, baseline])
    # then: the comparison is restored; the baseline is a duplicate, as before
    assert (result.inserted, result.skipped, result.errors) == (1, 1, [])
    assert Provenance.objects.filter(input_hash=exported.input_hash).count() == 2


def test_backfill_reads_exports_written_with_the_bare_money_names(tenant):
    # given: a line as export files had it before the money columns were named in cents
    row = ProvenanceFactory(tenant=tenant, v1_cost=40, v2_cost=55, cost_delta=15)
    (line,) = provenance_export()
    old = {
        {"v1_cost_cents": "v1_cost", "v2_cost_cents": "v2_cost"}.get(k, k): v
        for k, v in line.items()
    }
    old["cost_delta"] = old.pop("cost_delta_cents")
    row.delete()
    # when
    result = provenance_backfill(lines=[json.dumps(old)])
    # then
    assert (result.inserted, result.errors) == (1, [])
    stored = Provenance.objects.get()
    assert (stored.v1_cost, stored.v2_cost, stored.cost_delta) == (40, 55, 15)


def _exported(**changes) -> str:
    row = {
        "id": 1,
        "tenant_id": 1,
        "tenant": "acme",
        "run_id": None,
        "variant_slug": "v2",
        "source": "sandbox",
        "model_version": "2.0.0",
        "adapter_version": "2.0.0",
        "commit_sha": "unknown",
        "input_json": SPEC_INPUT,
        "input_hash": SPEC_INPUT_HASH,
        "output_json": {"status": "success"},
        "output_hash": "ab" * 32,
        "v1_cost_cents": 10,
        "v2_cost_cents": 12,
        "cost_delta_cents": 2,
        "drift_score": 0.2,
        "verdict": "match",
        "v2_status": "success",
        "runtime_ms": 3,
        "created_at": "2026-03-01T09:00:00.5Z",
    }
    row.update(changes)
    return json.dumps({k: v for k, v in row.items() if v is not ...})


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_exported(created_at=...), "created_at: is required"),
        (_exported(created_at="2026-03-01T09:00:00"), "created_at:"),
        (_exported(source=...), "source: is required"),
        (_exported(source="import"), "source:"),
        (_exported(verdict="maybe"), "verdict:"),
        (_exported(model_version=2), "model_version: must be a string"),
        (_exported(input_hash="xyz"), "input_hash: must be 16 hex characters"),
        (_exported(input_json=[1]), "input_json: must be an object"),
        (_exported(v2_cost_cents=12.5), "v2_cost_cents: must be a whole number of cents"),
        (_exported(v1_cost_cents=-1), "v1_cost_cents: must be between 0 and 2147483647 cents"),
        (_exported(v1_cost=10), "v1_cost_cents: given twice (also as v1_cost)"),
        (_exported(runtime_ms="3"), "runtime_ms: must be a whole number of milliseconds"),
        (_exported(drift_score="high"), "drift_score: must be a number"),
        ('{"tenant": "acme", "variant_slug": "v2", "drift_score": 1e400}', "drift_score: must"),
        (_exported(cost=1), "unknown field(s): cost"),
        (_exported(tenant="nobody"), "tenant: unknown tenant 'nobody'"),
    ],
)
def test_backfill_reports_bad_exported_rows(tenant, text, reason):
    # given: the bad line sits between two good ones
    lines = [_exported(), text, _exported(created_at="2026-03-02T00:00:00Z")]
    # when
    result = provenance_backfill(lines=lines)
    # then
    assert result.inserted == 2
    assert [line_no for line_no, _ in result.errors] == [2]
    assert reason in result.errors[0][1]


# Prune -------------------------------------------------------------------------------


@time_machine.travel(utc(2026, 3, 31, 12), tick=False)
def test_prune_deletes_only_rows_older_than_the_retention(tenant):
    # given
    cutoff = utc(2026, 3, 31, 12) - timedelta(days=30)
    old = [
        ProvenanceFactory(tenant=tenant, created_at=cutoff - timedelta(seconds=1)),
        BackfillProvenanceFactory(tenant=tenant, created_at=cutoff - timedelta(days=5)),
    ]
    kept = [
        ProvenanceFactory(tenant=tenant, created_at=cutoff),
        ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 31)),
    ]
    # when
    dry = provenance_prune(days=30, dry_run=True)
    deleted = provenance_prune(days=30)
    # then
    assert dry == 2
    assert deleted == 2
    assert set(Provenance.objects.values_list("id", flat=True)) == {row.id for row in kept}
    assert not Provenance.objects.filter(id__in=[row.id for row in old]).exists()


def test_prune_in_chunks_deletes_everything_expired(tenant, monkeypatch):
    # given: more expired rows than one chunk
    monkeypatch.setattr("costsim.services.provenance.PRUNE_CHUNK_SIZE", 2)
    long_ago = utc(2020, 1, 1)
    for _ in range(5):
        BackfillProvenanceFactory(tenant=tenant, created_at=long_ago)
    # when
    deleted = provenance_prune(days=1)
    # then
    assert deleted == 5
    assert Provenance.objects.count() == 0


def test_prune_is_skipped_while_another_process_holds_the_lock(tenant, lock_holder):
    # given
    BackfillProvenanceFactory(tenant=tenant, created_at=utc(2020, 1, 1))
    lock_holder(int(LockId.PROVENANCE_PRUNE))
    # when
    result = provenance_prune(days=1)
    # then
    assert result is None
    assert Provenance.objects.count() == 1


# Admin -------------------------------------------------------------------------------


def test_admin_lists_provenance_read_only(client, staff_user, tenant):
    # given
    ProvenanceFactory(tenant=tenant)
    client.force_login(staff_user)
    # when
    response = client.get(reverse("admin:costsim_provenance_changelist"))
    # then
    assert response.status_code == 200
    content = response.content.decode()
    assert "minor_drift" in content
    assert "Add provenance" not in content
    assert 'value="delete_selected"' not in content


def test_admin_detail_pretty_prints_the_payloads(client, staff_user, tenant):
    # given
    row = ProvenanceFactory(tenant=tenant)
    client.force_login(staff_user)
    # when
    response = client.get(reverse("admin:costsim_provenance_change", args=[row.pk]))
    # then
    assert response.status_code == 200
    content = response.content.decode()
    # the payload as a table, its cents in dollars
    assert '<th scope="row">budget_cents</th><td>$1.00</td>' in content
    assert row.output_hash in content
    assert 'name="_save"' not in content


def test_admin_search_finds_by_input_hash(client, staff_user, tenant):
    # given
    wanted = ProvenanceFactory(tenant=tenant, run_id="wanted-run")
    ProvenanceFactory(tenant=tenant, plan=[{"skill": "kv_get"}], run_id="other-run")
    client.force_login(staff_user)
    # when
    response = client.get(reverse("admin:costsim_provenance_changelist"), {"q": wanted.input_hash})
    # then
    content = response.content.decode()
    assert "wanted-run" in content
    assert "other-run" not in content


def test_admin_refuses_to_delete(client, staff_user, tenant):
    # given
    row = ProvenanceFactory(tenant=tenant)
    client.force_login(staff_user)
    # when
    response = client.post(
        reverse("admin:costsim_provenance_delete", args=[row.pk]), {"post": "yes"}
    )
    # then
    assert response.status_code == 403
    assert Provenance.objects.filter(pk=row.pk).exists()
