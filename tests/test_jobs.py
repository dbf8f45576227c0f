"""Fanned-out per-tenant jobs in one process: dispatch, chunks, retries, the run's report.

The chunks run eagerly here (`task.apply()`); tests/test_jobs_worker.py runs them on real
Celery workers.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import OperationalError
from django.test import override_settings
from django.urls import reverse

from analytics.models import CostSnapshot, JobChunk, JobRun
from analytics.services import jobs as jobs_module
from analytics.services.job_runs import (
    ChunkLockBusy,
    job_chunk_run,
    job_lock_key,
    job_run_report,
    job_run_start,
)
from analytics.services.jobs import DAILY_SNAPSHOTS, HOURLY_SNAPSHOTS, tenant_job_run
from analytics.services.locks import LockId
from analytics.tasks import detect_anomalies_task, hourly_snapshots_task
from tests.factories import CostRecordFactory, TenantFactory, utc
from tests.jobs_support import lose_connection_once_at, snapshot_versions

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 16, 12, 5)
HOUR = utc(2026, 3, 16, 11, 30)  # inside the hour the 12:05 run snapshots


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def tenants(frozen):
    made = [TenantFactory(slug=f"t{index}") for index in range(5)]
    for tenant in made:
        CostRecordFactory(tenant=tenant, created_at=HOUR, cost_cents=Decimal("2"))
    TenantFactory(slug="asleep", is_active=False)
    return made


@override_settings(JOBS_CHUNK_SIZE=2)
def test_dispatch_splits_active_tenants_into_chunks_and_settles_the_run(tenants):
    # when
    result = hourly_snapshots_task.apply().get()
    # then every active tenant was snapshotted once, in three chunks of at most two
    run = JobRun.objects.get()
    assert (run.job, run.status, run.tenants_total, run.chunks_total) == (
        "hourly_snapshots",
        "success",
        5,
        3,
    )
    assert run.scheduled_for == utc(2026, 3, 16, 12)
    assert run.params["period_start"] == "2026-03-16T11:00:00+00:00"
    chunks = list(run.chunks.all())
    assert [len(chunk.tenant_ids) for chunk in chunks] == [2, 2, 1]
    assert all(chunk.status == "success" and chunk.attempts == 1 for chunk in chunks)
    assert snapshot_versions() == [1] * 5
    assert (result["outcome"], result["tenants"], result["totals"]["snapshots"]) == (
        "success",
        5,
        5,
    )
    assert result["run_id"] == run.pk and result["chunks"] == 3


@override_settings(JOBS_CHUNK_SIZE=2)
def test_fanned_out_run_leaves_what_the_inline_run_leaves(tenants):
    # given an inline run's report
    inline = tenant_job_run(HOURLY_SNAPSHOTS, now=NOW)
    # when the same job is fanned out for the same hour
    fanned = hourly_snapshots_task.apply().get()
    # then both counted the same, and the second only recomputed in place
    assert fanned["totals"] == inline.totals
    assert fanned["tenants"] == inline.tenants == 5
    assert snapshot_versions() == [2] * 5


def test_a_tick_delivered_twice_dispatches_once(tenants):
    # given
    first = hourly_snapshots_task.apply().get()
    # when beat's message for the same hour arrives again
    second = hourly_snapshots_task.apply().get()
    # then nothing more was run
    assert first["outcome"] == "success"
    assert (second["outcome"], second["run_id"]) == ("skipped", None)
    assert JobRun.objects.count() == 1
    assert snapshot_versions() == [1] * 5


def test_dispatch_is_skipped_while_another_dispatcher_of_the_job_leads(tenants, other_session):
    # given another process is dispatching detection
    other_session.execute(
        "SELECT pg_advisory_lock(%s::int4, %s::int4)",
        [int(LockId.JOB_DISPATCH), job_lock_key("detect_anomalies")],
    )
    # when
    detection = detect_anomalies_task.apply().get()
    snapshots = hourly_snapshots_task.apply().get()
    # then detection sent nothing, and other jobs do not wait for it
    assert detection["outcome"] == "skipped"
    assert snapshots["outcome"] == "success"
    assert list(JobRun.objects.values_list("job", flat=True)) == ["hourly_snapshots"]


@override_settings(JOBS_CHUNK_SIZE=5)
def test_a_chunk_retried_after_a_lost_connection_skips_committed_tenants(tenants, monkeypatch):
    # given a run whose chunk loses its database connection at the fourth tenant
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    chunk = run.chunks.get()
    calls = lose_connection_once_at(monkeypatch, "t3")
    with pytest.raises(OperationalError):
        job_chunk_run(chunk_id=chunk.pk, max_attempts=4)
    chunk.refresh_from_db()
    assert (chunk.status, len(chunk.done_tenant_ids)) == ("running", 3)

    # when the chunk runs again
    job_chunk_run(chunk_id=chunk.pk, max_attempts=4)

    # then the three committed tenants were not redone, and every tenant counts once
    chunk.refresh_from_db()
    assert calls == ["t0", "t1", "t2", "t3", "t3", "t4"]
    assert (chunk.status, chunk.attempts, chunk.totals["snapshots"]) == ("success", 2, 5)
    assert sorted(chunk.done_tenant_ids) == sorted(tenant.pk for tenant in tenants)
    assert snapshot_versions() == [1] * 5
    run.refresh_from_db()
    assert run.status == "success"


def test_a_chunk_delivered_after_it_finished_does_nothing(tenants):
    # given
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    chunk = run.chunks.get()
    job_chunk_run(chunk_id=chunk.pk, max_attempts=4)
    # when the broker delivers its message again
    again = job_chunk_run(chunk_id=chunk.pk, max_attempts=4)
    # then
    assert again is None
    chunk.refresh_from_db()
    assert chunk.attempts == 1
    assert snapshot_versions() == [1] * 5


def test_a_failing_tenant_fails_the_run_but_not_its_chunk(tenants, monkeypatch):
    # given snapshots break for one tenant
    real = jobs_module.snapshot_compute

    def failing_for_t1(*, tenant, **kwargs):
        if tenant.slug == "t1":
            raise RuntimeError("boom")
        return real(tenant=tenant, **kwargs)

    monkeypatch.setattr(jobs_module, "snapshot_compute", failing_for_t1)
    # when
    result = hourly_snapshots_task.apply().get()
    # then the others were done and the failure is visible on the run
    run = JobRun.objects.get()
    assert run.status == "failed"
    assert [chunk.status for chunk in run.chunks.all()] == ["success"]
    assert (result["outcome"], result["failed_tenants"], result["tenants"]) == (
        "failed",
        ["t1"],
        5,
    )
    assert result["totals"]["snapshots"] == 4


def test_a_chunk_whose_worker_keeps_dying_is_given_up(tenants):
    # given a chunk already started as often as allowed (its worker died each time)
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    JobChunk.objects.filter(run=run).update(attempts=4, status="running")
    chunk = run.chunks.get()
    # when it is delivered once more
    finished = job_chunk_run(chunk_id=chunk.pk, max_attempts=4)
    # then it is recorded as failed without running, and the run is settled
    assert finished.status == "failed" and "gave up after 4 attempts" in finished.error
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None
    assert not CostSnapshot.objects.exists()


def test_daily_chunks_wait_for_a_backfill_holding_lock_7004(tenants, other_session):
    # given a snapshot backfill holds lock 7004
    other_session.execute("SELECT pg_advisory_lock(%s)", [int(LockId.SNAPSHOTS_DAILY)])
    run = job_run_start(spec=DAILY_SNAPSHOTS, now=NOW)
    chunk = run.chunks.get()
    # when / then the chunk asks to be retried and did nothing
    with pytest.raises(ChunkLockBusy):
        job_chunk_run(chunk_id=chunk.pk, max_attempts=4)
    assert not CostSnapshot.objects.exists()
    # and once the backfill is done the chunk runs, holding the lock only shared
    other_session.execute("SELECT pg_advisory_unlock(%s)", [int(LockId.SNAPSHOTS_DAILY)])
    assert job_chunk_run(chunk_id=chunk.pk, max_attempts=4).status == "success"


def test_two_daily_chunks_share_lock_7004(tenants, other_session):
    # given another chunk of the daily run holds the lock shared
    other_session.execute("SELECT pg_advisory_lock_shared(%s)", [int(LockId.SNAPSHOTS_DAILY)])
    run = job_run_start(spec=DAILY_SNAPSHOTS, now=NOW)
    # when
    chunk = job_chunk_run(chunk_id=run.chunks.get().pk, max_attempts=4)
    # then
    assert chunk.status == "success" and chunk.totals["snapshots"] == 5


def test_a_run_without_tenants_is_finished_at_once(frozen):
    # when
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    # then
    assert (run.status, run.chunks_total, run.finished_at) == ("success", 0, NOW)
    assert job_run_report(run).tenants == 0


def test_the_next_tick_is_a_new_run(tenants):
    # given
    hourly_snapshots_task.apply().get()
    # when an hour later
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        hourly_snapshots_task.apply().get()
    # then
    assert JobRun.objects.count() == 2


@override_settings(JOBS_CHUNK_SIZE=2)
def test_operators_see_runs_and_chunk_progress_in_the_admin(tenants, client, staff_user):
    # given a finished run
    hourly_snapshots_task.apply().get()
    run = JobRun.objects.get()
    client.force_login(staff_user)
    # when
    listing = client.get(reverse("admin:analytics_jobrun_changelist"))
    detail = client.get(reverse("admin:analytics_jobrun_change", args=[run.pk]))
    # then
    assert listing.status_code == 200 and "3 / 3" in listing.content.decode()
    page = detail.content.decode()
    assert detail.status_code == 200
    assert "5 tenant(s); snapshots 5" in page and "failed: none" in page
    assert page.count("success") >= 4  # the run and its three chunks
