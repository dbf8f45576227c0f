"""The sweeper of fanned-out runs: a chunk whose message was lost is sent again, once.

The chunks run eagerly here (`task.apply()`), as in tests/test_jobs.py. A chunk is stalled
after JOBS_CHUNK_STALL_MINUTES (30 by default) without being claimed or sent again.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.db import OperationalError
from django.test import override_settings

from analytics.models import CostSnapshot, JobChunk
from analytics.services.job_runs import (
    STALLED_RESEND_SQL,
    job_chunk_note_retry,
    job_chunk_run,
    job_chunks_sweep,
    job_run_start,
)
from analytics.services.jobs import HOURLY_SNAPSHOTS
from analytics.tasks import sweep_job_runs_task
from tests.factories import CostRecordFactory, TenantFactory, utc
from tests.jobs_support import lose_connection_once_at, snapshot_versions

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 16, 12, 5)
HOUR = utc(2026, 3, 16, 11, 30)  # inside the hour the 12:05 run snapshots
STALLED = NOW + timedelta(minutes=31)


@pytest.fixture
def tenants():
    with time_machine.travel(NOW, tick=False):
        made = [TenantFactory(slug=f"t{index}") for index in range(5)]
        for tenant in made:
            CostRecordFactory(tenant=tenant, created_at=HOUR, cost_cents=Decimal("2"))
    return made


@override_settings(JOBS_CHUNK_SIZE=2)
def test_chunks_whose_messages_were_lost_are_sent_again_and_settle_the_run(tenants):
    # given a run recorded by a dispatcher that died before sending its chunks
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    # when the sweeper looks before the bound, nothing has stalled yet
    with time_machine.travel(NOW + timedelta(minutes=29), tick=False):
        early = sweep_job_runs_task.apply().get()
    assert early == {"resent": [], "failed": []}
    assert set(run.chunks.values_list("status", flat=True)) == {"pending"}
    # when it looks past the bound
    with time_machine.travel(STALLED, tick=False):
        result = sweep_job_runs_task.apply().get()
    # then every chunk was sent again and ran once, and the run is settled
    chunks = list(run.chunks.order_by("index"))
    assert result == {"resent": [chunk.pk for chunk in chunks], "failed": []}
    assert [(chunk.status, chunk.attempts) for chunk in chunks] == [("success", 2)] * 3
    run.refresh_from_db()
    assert (run.status, run.finished_at) == ("success", STALLED)
    assert snapshot_versions() == [1] * 5


@override_settings(JOBS_CHUNK_SIZE=5)
def test_a_chunk_whose_retry_was_lost_runs_again_without_duplicates(tenants, monkeypatch):
    # given a chunk that lost its database at the fourth tenant and whose retry never came
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    chunk = run.chunks.get()
    calls = lose_connection_once_at(monkeypatch, "t3")
    with time_machine.travel(NOW, tick=False):
        with pytest.raises(OperationalError):
            job_chunk_run(chunk_id=chunk.pk, max_attempts=4)
        job_chunk_note_retry(chunk_id=chunk.pk, error="OperationalError: server closed")
    # when the sweeper finds it stalled
    with time_machine.travel(STALLED, tick=False):
        result = sweep_job_runs_task.apply().get()
    # then the committed tenants were not redone and every tenant counts once
    chunk.refresh_from_db()
    assert result["resent"] == [chunk.pk]
    assert calls == ["t0", "t1", "t2", "t3", "t3", "t4"]
    assert (chunk.status, chunk.attempts, chunk.totals["snapshots"]) == ("success", 2, 5)
    assert snapshot_versions() == [1] * 5
    run.refresh_from_db()
    assert run.status == "success"


def test_the_error_of_a_resent_chunk_says_why_and_keeps_the_last_one(tenants):
    # given a chunk stuck in retrying whose retry message was lost
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    JobChunk.objects.filter(run=run).update(
        status="retrying", attempts=1, started_at=NOW, error="OperationalError: gone"
    )
    # when
    with time_machine.travel(STALLED, tick=False):
        sweep = job_chunks_sweep()
    # then it is pending again, its attempt already counted by its claim
    chunk = run.chunks.get()
    assert sweep.resend == [chunk.pk]
    assert (chunk.status, chunk.attempts, chunk.started_at) == ("pending", 1, STALLED)
    assert chunk.error == (
        "sent again at 2026-03-16 12:36Z: no progress for 30 min "
        "(last error: OperationalError: gone)"
    )


@pytest.mark.parametrize(
    ("status", "attempts", "counted"),
    [("running", 4, 4), ("pending", 3, 4)],
    ids=["claimed-four-times", "lost-after-three-attempts"],
)
def test_a_stalled_chunk_out_of_attempts_is_failed_with_the_reason(
    tenants, status, attempts, counted
):
    # given a chunk that has used its attempts (JOBS_CHUNK_MAX_RETRIES 3: four in all)
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    JobChunk.objects.filter(run=run).update(status=status, attempts=attempts, started_at=NOW)
    # when
    with time_machine.travel(STALLED, tick=False):
        result = sweep_job_runs_task.apply().get()
    # then it is not sent again but failed, which settles its run
    chunk = run.chunks.get()
    assert result == {"resent": [], "failed": [chunk.pk]}
    assert chunk.status == "failed"
    assert chunk.error == f"gave up: no progress for 30 min after {counted} attempts"
    run.refresh_from_db()
    assert (run.status, run.finished_at) == ("failed", STALLED)
    assert not CostSnapshot.objects.exists()


def test_a_chunk_claimed_within_the_bound_is_left_running(tenants):
    # given a chunk a worker claimed 20 minutes ago, in a run dispatched 40 minutes ago
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    claimed = NOW + timedelta(minutes=20)
    JobChunk.objects.filter(run=run).update(status="running", attempts=1, started_at=claimed)
    # when
    with time_machine.travel(NOW + timedelta(minutes=40), tick=False):
        sweep = job_chunks_sweep()
    # then
    assert (sweep.resend, sweep.failed) == ([], [])
    assert run.chunks.get().status == "running"


# Committed rows, so that the other session sees the run.
@pytest.mark.django_db(transaction=True)
@override_settings(JOBS_CHUNK_SIZE=2)
def test_two_sweepers_side_by_side_send_each_chunk_once(tenants, other_session):
    # given a run whose chunk messages were lost
    run = job_run_start(spec=HOURLY_SNAPSHOTS, now=NOW)
    chunk_ids = list(run.chunks.order_by("pk").values_list("pk", flat=True))
    params = {
        "now": STALLED,
        "stalled_before": STALLED - timedelta(minutes=30),
        "max_attempts": 4,
        "note": "sent again by the other sweeper",
    }
    with other_session.transaction():
        # when another sweeper has claimed them and not committed yet
        claimed = other_session.execute(STALLED_RESEND_SQL, params).fetchall()
        with time_machine.travel(STALLED, tick=False):
            while_claimed = job_chunks_sweep()
    # and after it committed
    with time_machine.travel(STALLED + timedelta(minutes=1), tick=False):
        after = job_chunks_sweep()
    # then only the other sweeper sends them, and nobody gives them up
    assert sorted(row[0] for row in claimed) == chunk_ids
    assert (while_claimed.resend, while_claimed.failed) == ([], [])
    assert (after.resend, after.failed) == ([], [])
    assert list(run.chunks.values_list("attempts", flat=True)) == [1, 1, 1]
    run.refresh_from_db()
    assert run.status == "running"


@pytest.mark.django_db(False)
def test_the_sweeper_is_scheduled_on_the_dispatch_queue():
    entry = settings.CELERY_BEAT_SCHEDULE["analytics-sweep-job-runs"]
    assert entry["task"] == sweep_job_runs_task.name == "analytics.sweep_job_runs"
    assert entry["options"]["expires"] < 5 * 60
    from config.celery import app

    assert app.conf.task_routes[sweep_job_runs_task.name] == {"queue": settings.JOBS_DISPATCH_QUEUE}
