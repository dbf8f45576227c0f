import threading
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connections
from prometheus_client import REGISTRY

from analytics.admin.snapshots import snapshots_recompute
from analytics.models import (
    AnomalyEvaluation,
    Baseline,
    CostSnapshot,
    SnapshotAggregate,
    SnapshotStatus,
)
from analytics.services import jobs
from analytics.services import snapshots as snapshot_service
from analytics.services.jobs import daily_snapshots_run, hourly_snapshots_run
from analytics.services.snapshots import snapshot_compute
from analytics.tasks import daily_snapshots_task, hourly_snapshots_task
from tests.factories import CostRecordFactory, TenantFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 2, 10, 5)
HOUR = utc(2026, 3, 2, 9)
YESTERDAY = utc(2026, 3, 1)
BROKEN_AGGREGATION = "SELECT * FROM no_such_table CROSS JOIN ({baselines}) AS b"


def record(tenant, at, cents=1, **fields):
    return CostRecordFactory(tenant=tenant, created_at=at, cost_cents=Decimal(str(cents)), **fields)


def runs(job: str, outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("analytics_job_runs_total", {"job": job, "outcome": outcome}) or 0
    )


@contextmanager
def lock_held_elsewhere(lock_id: int = jobs.DAILY_LOCK_ID):
    """Hold the advisory lock on a second connection, as another worker would."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [lock_id])
        yield
    finally:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
        other.close()


# --- hourly job -------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_hourly_job_snapshots_previous_hour_of_each_active_tenant_and_evaluates(
    tenant, other_tenant
):
    # given a same-hour history so the new snapshot has a baseline to be evaluated against
    inactive = TenantFactory(slug="sleepy", is_active=False)
    for t in (tenant, other_tenant, inactive):
        record(t, HOUR + timedelta(minutes=1), 2)
    record(tenant, HOUR - timedelta(days=1), 1)
    snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=HOUR - timedelta(days=1))
    success_before = runs("hourly_snapshots", "success")
    # when
    report = hourly_snapshots_run()
    # then
    snapshots = CostSnapshot.objects.filter(period_start=HOUR, snapshot_type="hourly")
    assert {s.tenant.slug for s in snapshots} == {"acme", "globex"}
    assert {s.status for s in snapshots} == {SnapshotStatus.COMPLETE}
    evaluation = AnomalyEvaluation.objects.get(snapshot__tenant=tenant, entity_type="tenant")
    assert evaluation.deviation_pct == 100.0
    assert evaluation.threshold_pct == 200.0  # ANALYTICS_SNAPSHOT_THRESHOLD_PCT
    assert (report.outcome, report.tenants, report.totals["snapshots"], report.failed_tenants) == (
        "success",
        2,
        2,
        [],
    )
    assert runs("hourly_snapshots", "success") == success_before + 1


@time_machine.travel(NOW, tick=False)
def test_hourly_job_recomputes_stale_snapshots_of_the_last_48_hours(tenant):
    # given stale snapshots that ended 3 h, 1 day 10 h and 49 h ago, each missing a record
    recent = snapshot_compute(
        tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 3, 2, 6)
    )
    daily = snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=YESTERDAY)
    old = snapshot_compute(tenant=tenant, snapshot_type="hourly", period_start=utc(2026, 2, 28, 8))
    for snapshot in (recent, daily, old):
        record(tenant, snapshot.period_start + timedelta(minutes=30), 3)
    CostSnapshot.objects.update(is_stale=True)
    # when
    report = hourly_snapshots_run()
    # then
    recent.refresh_from_db()
    daily.refresh_from_db()
    old.refresh_from_db()
    assert (recent.version, recent.is_stale, recent.records_processed) == (2, False, 1)
    assert (daily.version, daily.is_stale, daily.records_processed) == (2, False, 1)
    assert (old.version, old.is_stale, old.records_processed) == (1, True, 0)
    assert report.totals["recomputed"] == 2


@time_machine.travel(NOW, tick=False)
def test_hourly_job_twice_keeps_one_row_per_tenant(tenant):
    record(tenant, HOUR, 2, user_id="u")
    hourly_snapshots_run()
    hourly_snapshots_run()
    snapshot = CostSnapshot.objects.get()
    assert snapshot.version == 2
    assert SnapshotAggregate.objects.filter(snapshot=snapshot).count() == 3


@time_machine.travel(NOW, tick=False)
def test_a_failing_tenant_is_logged_and_the_others_continue(tenant, other_tenant, monkeypatch):
    # given evaluation that breaks for acme only
    real_evaluate = jobs.snapshot_evaluate

    def evaluate(*, snapshot, threshold_pct):
        if snapshot.tenant_id == tenant.pk:
            raise RuntimeError("boom")
        return real_evaluate(snapshot=snapshot, threshold_pct=threshold_pct)

    monkeypatch.setattr(jobs, "snapshot_evaluate", evaluate)
    failed_before = runs("hourly_snapshots", "failed")
    # when
    report = hourly_snapshots_run()
    # then acme's work was rolled back, globex's was kept
    assert [s.tenant_id for s in CostSnapshot.objects.all()] == [other_tenant.pk]
    assert (report.outcome, report.failed_tenants, report.totals["snapshots"]) == (
        "failed",
        ["acme"],
        1,
    )
    assert runs("hourly_snapshots", "failed") == failed_before + 1


@time_machine.travel(NOW, tick=False)
def test_a_failed_snapshot_is_kept_and_fails_the_run(tenant, monkeypatch):
    monkeypatch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
    report = hourly_snapshots_run()
    assert CostSnapshot.objects.get().status == SnapshotStatus.FAILED
    assert (report.outcome, report.totals["failed_snapshots"], report.failed_tenants) == (
        "failed",
        1,
        ["acme"],
    )
    assert not AnomalyEvaluation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_two_hourly_jobs_side_by_side_leave_the_same_rows(tenant, other_tenant):
    # given
    for t in (tenant, other_tenant):
        for minute in range(5):
            record(t, HOUR + timedelta(minutes=minute), 1, user_id=f"u{minute}")
        # a same-hour baseline yesterday, so evaluations are written
        record(t, HOUR - timedelta(days=1), 1, user_id="u0")
        with time_machine.travel(NOW, tick=False):
            snapshot_compute(
                tenant=t, snapshot_type="hourly", period_start=HOUR - timedelta(days=1)
            )
    barrier = threading.Barrier(2)
    reports, errors = [], []

    def run():
        try:
            barrier.wait()
            reports.append(hourly_snapshots_run(now=NOW))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    # when
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then
    assert errors == []
    assert [r.outcome for r in reports] == ["success", "success"]
    current = CostSnapshot.objects.filter(period_start=HOUR)
    assert sorted(s.version for s in current) == [2, 2]
    assert SnapshotAggregate.objects.filter(snapshot__in=current).count() == 2 * 7
    assert AnomalyEvaluation.objects.filter(snapshot__in=current).count() == 2 * 3


# --- daily job --------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_daily_job_snapshots_yesterday_then_baselines_as_of_today(tenant):
    # given two earlier days of history and yesterday's traffic
    for day in (27, 28):
        record(tenant, utc(2026, 2, day, 12), 10)
        snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=utc(2026, 2, day))
    record(tenant, YESTERDAY + timedelta(hours=12), 40)
    success_before = runs("daily_snapshots", "success")
    # when
    report = daily_snapshots_run()
    # then yesterday's snapshot read the baselines as of yesterday (10/day)
    snapshot = CostSnapshot.objects.get(snapshot_type="daily", period_start=YESTERDAY)
    tenant_row = snapshot.aggregates.get(entity_type="tenant")
    assert tenant_row.baseline_7d_avg_cents == 10.0
    assert tenant_row.deviation_from_7d_pct == 300.0
    assert AnomalyEvaluation.objects.get(snapshot=snapshot, entity_type="tenant").triggered
    # and today's baselines include yesterday
    today = Baseline.objects.get(as_of=date(2026, 3, 2), window_days=7, entity_type="tenant")
    assert (today.avg_daily_cost_cents, today.samples_count, today.is_current) == (20.0, 3, True)
    assert Baseline.objects.filter(as_of=date(2026, 3, 2), window_days=30).count() == 2
    assert (report.outcome, report.totals["snapshots"], report.totals["baselines"]) == (
        "success",
        1,
        4,
    )
    assert runs("daily_snapshots", "success") == success_before + 1


@time_machine.travel(NOW, tick=False)
def test_daily_job_twice_leaves_the_same_rows(tenant):
    record(tenant, utc(2026, 2, 28, 12), 10)
    snapshot_compute(tenant=tenant, snapshot_type="daily", period_start=utc(2026, 2, 28))
    record(tenant, YESTERDAY + timedelta(hours=1), 20)
    daily_snapshots_run()
    baselines = set(
        Baseline.objects.values_list("id", "as_of", "window_days", "avg_daily_cost_cents")
    )
    daily_snapshots_run()
    assert (
        set(Baseline.objects.values_list("id", "as_of", "window_days", "avg_daily_cost_cents"))
        == baselines
    )
    assert CostSnapshot.objects.get(period_start=YESTERDAY).version == 2


@time_machine.travel(NOW, tick=False)
def test_daily_job_is_skipped_while_lock_7004_is_held(tenant):
    record(tenant, YESTERDAY + timedelta(hours=1), 20)
    skipped_before = runs("daily_snapshots", "skipped")
    with lock_held_elsewhere():
        report = daily_snapshots_run()
    assert report.outcome == "skipped"
    assert not CostSnapshot.objects.exists()
    assert runs("daily_snapshots", "skipped") == skipped_before + 1
    # and the lock is free again afterwards
    assert daily_snapshots_run().outcome == "success"


@time_machine.travel(NOW, tick=False)
def test_tasks_return_the_job_report(tenant):
    record(tenant, HOUR, 1)
    hourly = hourly_snapshots_task.apply().get()
    daily = daily_snapshots_task.apply().get()
    assert hourly["job"] == "hourly_snapshots" and hourly["totals"]["snapshots"] == 1
    assert daily["job"] == "daily_snapshots" and daily["outcome"] == "success"
    assert hourly_snapshots_task.name == "analytics.hourly_snapshots"
    assert daily_snapshots_task.name == "analytics.daily_snapshots"


# --- compute_snapshots command ----------------------------------------------------------------


def command(*args) -> str:
    out = StringIO()
    call_command("compute_snapshots", *args, stdout=out)
    return out.getvalue()


@time_machine.travel(NOW, tick=False)
def test_command_without_range_computes_previous_hour_and_yesterday(tenant, other_tenant):
    record(tenant, HOUR, 2)
    output = command()
    assert set(
        CostSnapshot.objects.values_list("tenant__slug", "snapshot_type", "period_start")
    ) == {
        ("acme", "hourly", HOUR),
        ("acme", "daily", YESTERDAY),
        ("globex", "hourly", HOUR),
        ("globex", "daily", YESTERDAY),
    }
    assert "acme hourly 2026-03-02T09:00Z: complete v1, 1 records" in output
    assert output.rstrip().endswith("Done: 4 snapshot(s) computed, 0 failed.")


@time_machine.travel(NOW, tick=False)
def test_command_for_one_tenant_and_type_with_evaluation(tenant, other_tenant):
    output = command("--tenant", "acme", "--type", "hourly", "--evaluate")
    assert list(CostSnapshot.objects.values_list("tenant__slug", "snapshot_type")) == [
        ("acme", "hourly")
    ]
    assert "evaluated 0, triggered 0" in output


@time_machine.travel(NOW, tick=False)
def test_command_range_computes_every_period_in_order_under_the_lock(tenant):
    # given
    record(tenant, utc(2026, 2, 27, 5), 1)
    # when
    output = command("--since", "2026-02-27", "--until", "2026-02-28", "--type", "daily")
    hourly_output = command(
        "--tenant", "acme", "--since", "2026-03-01", "--until", "2026-03-05", "--type", "hourly"
    )
    # then
    daily = CostSnapshot.objects.filter(snapshot_type="daily").order_by("id")
    assert [s.period_start for s in daily] == [utc(2026, 2, 27), utc(2026, 2, 28)]
    assert output.index("2026-02-27T00:00Z") < output.index("2026-02-28T00:00Z")
    # hourly from 2026-03-01 00:00 up to the current hour (10:00), none in the future
    hourly = CostSnapshot.objects.filter(snapshot_type="hourly")
    assert hourly.count() == 24 + 11
    assert max(s.period_start for s in hourly) == utc(2026, 3, 2, 10)
    assert "Done: 35 snapshot(s) computed" in hourly_output


@time_machine.travel(NOW, tick=False)
def test_command_range_refuses_to_run_while_the_lock_is_held(tenant):
    with lock_held_elsewhere(), pytest.raises(CommandError, match="7004"):
        command("--since", "2026-02-27", "--until", "2026-02-28")
    assert not CostSnapshot.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "2026-02-27"), "together"),
        (("--since", "2026-02-28", "--until", "2026-02-27"), "after"),
        (("--since", "27/02/2026", "--until", "2026-02-28"), "YYYY-MM-DD"),
        (("--since", "2026-03-03", "--until", "2026-03-04"), "future"),
        (("--tenant", "nobody"), "Unknown tenant"),
    ],
)
@time_machine.travel(NOW, tick=False)
def test_command_rejects_bad_input(tenant, args, message):
    with pytest.raises(CommandError, match=message):
        command(*args)
    assert not CostSnapshot.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_command_rejects_an_inactive_tenant(db):
    TenantFactory(slug="sleepy", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        command("--tenant", "sleepy")


@time_machine.travel(NOW, tick=False)
def test_command_exits_with_error_when_a_snapshot_failed(tenant, monkeypatch):
    monkeypatch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
    with pytest.raises(CommandError, match="1 failed"):
        command("--type", "daily")
    assert CostSnapshot.objects.get().status == SnapshotStatus.FAILED


# --- admin ------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_recompute_action_helper_recomputes_and_counts(tenant, monkeypatch):
    first = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    second = snapshot_compute(tenant=tenant, snapshot_type="daily")
    counts = snapshots_recompute(CostSnapshot.objects.filter(pk__in=[first.pk, second.pk]))
    assert counts == {"complete": 2}
    assert set(CostSnapshot.objects.values_list("version", flat=True)) == {2}
    monkeypatch.setattr(snapshot_service, "_AGGREGATES_INSERT", BROKEN_AGGREGATION)
    assert snapshots_recompute(CostSnapshot.objects.all()) == {"failed": 2}


@time_machine.travel(NOW, tick=False)
def test_admin_lists_snapshots_and_runs_the_recompute_action(client, staff_user, tenant):
    # given
    snapshot = snapshot_compute(tenant=tenant, snapshot_type="hourly")
    client.force_login(staff_user)
    # when
    listing = client.get("/admin/analytics/costsnapshot/?status__exact=complete&is_stale__exact=0")
    detail = client.get(f"/admin/analytics/costsnapshot/{snapshot.pk}/change/")
    response = client.post(
        "/admin/analytics/costsnapshot/",
        {"action": "recompute", "_selected_action": [snapshot.pk]},
        follow=True,
    )
    baselines = client.get("/admin/analytics/baseline/")
    # then
    assert listing.status_code == detail.status_code == baselines.status_code == 200
    assert "1 snapshot(s) recomputed: 1 complete." in response.content.decode()
    snapshot.refresh_from_db()
    assert snapshot.version == 2
