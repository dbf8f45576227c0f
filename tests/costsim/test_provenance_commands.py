"""backfill_provenance, export_provenance and prune_provenance against the database."""

import json
from io import StringIO

import psycopg
import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from analytics.services.locks import LockId
from costsim.models import Provenance
from tests.costsim.factories import BackfillProvenanceFactory, ProvenanceFactory
from tests.factories import utc

pytestmark = pytest.mark.django_db


def _run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def _write_lines(path, *objects) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objects), encoding="utf-8")
    return str(path)


# backfill_provenance -----------------------------------------------------------------


def test_backfill_command_imports_and_reports_counts(tmp_path, tenant):
    # given
    path = _write_lines(
        tmp_path / "baseline.jsonl",
        {"tenant": "acme", "cost": 5, "input": {"plan": [{"skill": "llm_invoke"}]}},
        {"tenant": "acme", "cost": 5, "input": {"plan": [{"skill": "llm_invoke"}]}},
        {"tenant": "acme", "cost": 0, "input_hash": "0123456789abcdef", "run_id": "r-1"},
    )
    # when
    output = _run("backfill_provenance", path, "--batch-size", "2")
    # then
    assert "Backfill complete: inserted 2, skipped 1, errors 0 (3 lines read)" in output
    assert Provenance.objects.filter(source="backfill", variant_slug="v1").count() == 2


def test_backfill_command_exits_1_and_names_bad_lines(tmp_path, tenant):
    # given
    path = tmp_path / "baseline.jsonl"
    path.write_text(
        '{"tenant": "acme", "cost": 1, "input": {}}\n'
        "{broken\n"
        '{"tenant": "nobody", "cost": 1, "input": {}}\n',
        encoding="utf-8",
    )
    out = StringIO()
    # when
    with pytest.raises(CommandError) as excinfo:
        call_command("backfill_provenance", str(path), stdout=out)
    # then
    assert excinfo.value.returncode == 1
    output = out.getvalue()
    assert "line 2: invalid JSON" in output
    assert "line 3: tenant: unknown tenant 'nobody'" in output
    assert "inserted 1, skipped 0, errors 2" in str(excinfo.value)
    assert Provenance.objects.count() == 1


def test_backfill_command_dry_run_writes_nothing(tmp_path, tenant):
    # given
    path = _write_lines(
        tmp_path / "baseline.jsonl",
        {"tenant": "acme", "cost": 5, "input": {"a": 1}},
        {"tenant": "acme", "cost": 5, "input": {"a": 2}},
    )
    # when
    output = _run("backfill_provenance", path, "--dry-run")
    # then
    assert "Dry run: would insert 2, skipped 0, errors 0" in output
    assert Provenance.objects.count() == 0


def test_backfill_command_rejects_a_missing_file(tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        _run("backfill_provenance", str(tmp_path / "missing.jsonl"))


def test_backfill_command_rejects_a_bad_batch_size(tmp_path):
    path = _write_lines(tmp_path / "x.jsonl", {"tenant": "acme", "cost": 1, "input": {}})
    with pytest.raises(CommandError, match="--batch-size"):
        _run("backfill_provenance", path, "--batch-size", "0")


# export_provenance -------------------------------------------------------------------


def test_export_command_writes_full_rows_as_jsonl_ordered_by_id(tmp_path, tenant, other_tenant):
    # given
    first = ProvenanceFactory(tenant=tenant)
    second = BackfillProvenanceFactory(tenant=other_tenant)
    path = tmp_path / "export.jsonl"
    # when
    output = _run("export_provenance", str(path))
    # then
    assert "Exported 2 provenance rows" in output
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [first.id, second.id]
    assert rows[0]["input_json"] == first.input_json
    assert rows[0]["output_json"] == first.output_json
    assert rows[0]["tenant"] == "acme"
    assert rows[1]["output_json"] is None


def test_export_command_filters_by_tenant_and_time(tmp_path, tenant, other_tenant):
    # given
    ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1, 23))
    wanted = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 2, 8))
    ProvenanceFactory(tenant=other_tenant, created_at=utc(2026, 3, 2, 8))
    path = tmp_path / "export.jsonl"
    # when
    _run(
        "export_provenance",
        str(path),
        "--tenant",
        "acme",
        "--since",
        "2026-03-02",
        "--until",
        "2026-03-03T00:00:00Z",
    )
    # then
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [wanted.id]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "nobody"], "Unknown tenant"),
        (["--since", "2026-03-02T00:00:00"], "timezone is required"),
        (["--until", "soon"], "--until"),
        (["--since", "2026-03-03", "--until", "2026-03-02"], "before"),
    ],
)
def test_export_command_rejects_bad_options(tmp_path, tenant, args, message):
    with pytest.raises(CommandError, match=message):
        _run("export_provenance", str(tmp_path / "out.jsonl"), *args)


def test_an_export_file_backfilled_into_an_empty_table_gives_the_same_rows(tmp_path, tenant):
    # given
    ProvenanceFactory(tenant=tenant, run_id="run-1")
    ProvenanceFactory(tenant=tenant, source="api")
    BackfillProvenanceFactory(tenant=tenant)
    fields = [f.attname for f in Provenance._meta.concrete_fields if f.attname != "id"]
    before = list(Provenance.objects.order_by("id").values(*fields))
    path = tmp_path / "export.jsonl"
    _run("export_provenance", str(path))
    Provenance.objects.all().delete()
    # when
    output = _run("backfill_provenance", str(path))
    # then
    assert "Backfill complete: inserted 3, skipped 0, errors 0 (3 lines read)" in output
    assert list(Provenance.objects.order_by("id").values(*fields)) == before
    assert "inserted 0, skipped 3" in _run("backfill_provenance", str(path))


# prune_provenance --------------------------------------------------------------------


@time_machine.travel(utc(2026, 3, 31, 12), tick=False)
def test_prune_command_deletes_old_rows_and_prints_the_count(tenant):
    # given
    BackfillProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 1))
    kept = ProvenanceFactory(tenant=tenant, created_at=utc(2026, 3, 30))
    # when
    dry = _run("prune_provenance", "--days", "7", "--dry-run")
    output = _run("prune_provenance", "--days", "7")
    # then
    assert "Would delete 1 provenance rows." in dry
    assert "Deleted 1 provenance rows." in output
    assert list(Provenance.objects.values_list("id", flat=True)) == [kept.id]


@time_machine.travel(utc(2026, 3, 31, 12), tick=False)
def test_prune_command_defaults_to_the_retention_setting(tenant, settings):
    # given
    settings.COSTSIM_PROVENANCE_RETENTION_DAYS = 90
    BackfillProvenanceFactory(tenant=tenant, created_at=utc(2025, 12, 1))
    BackfillProvenanceFactory(tenant=tenant, created_at=utc(2026, 1, 15))
    # when
    output = _run("prune_provenance")
    # then
    assert "older than 90 days" in output
    assert "Deleted 1 provenance rows." in output


def test_prune_command_prints_skipped_when_the_lock_is_held(tenant):
    # given: another process holds lock 7003
    BackfillProvenanceFactory(tenant=tenant, created_at=utc(2020, 1, 1))
    params = connection.get_connection_params()
    with psycopg.connect(
        host=params.get("host"),
        port=params.get("port"),
        user=params.get("user"),
        dbname=params["dbname"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [int(LockId.PROVENANCE_PRUNE)])
        # when
        output = _run("prune_provenance", "--days", "1")
    # then
    assert "skipped" in output
    assert Provenance.objects.count() == 1


def test_prune_command_rejects_days_below_one():
    with pytest.raises(CommandError, match="--days"):
        _run("prune_provenance", "--days", "0")
