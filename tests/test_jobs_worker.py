"""A fanned-out job on a real Celery worker: a chunk fails once and is retried, nothing twice.

The worker is a subprocess with the project's settings on the suite's test database, the
broker is whatever `make run` would use (Redis with REDIS_URL, else the file-system
transport), and its prefork pool runs two chunks at a time. The only thing changed in it is
the failure: one tenant's work kills the pool process the first time it runs (the message
is delivered again: acks_late, reject_on_worker_lost), another's raises a lost-connection
error the first time (Celery retries the chunk).
"""

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from analytics.models import CostSnapshot, JobRun
from analytics.services.jobs import HOURLY_SNAPSHOTS
from analytics.tasks import hourly_snapshots_task, tenant_job_dispatch
from config.database import database_url_from_settings
from tests.factories import CostRecordFactory, TenantFactory

TIMEOUT = 90

# Runs the worker with one tenant's snapshot failing once in each of two ways; the marks
# in JOBS_TEST_FAULT_DIR make each failure happen exactly once across pool processes.
WORKER = """
import os, sys
from pathlib import Path

import django
django.setup()
from django.db import OperationalError

from analytics.services import jobs

marks = Path(os.environ["JOBS_TEST_FAULT_DIR"])
real = jobs.snapshot_compute


def snapshot_compute(*, tenant, **kwargs):
    mark = marks / tenant.slug
    if tenant.slug == "dies-once" and not mark.exists():
        snapshot = real(tenant=tenant, **kwargs)  # written, never committed
        mark.touch()
        os._exit(1)
    if tenant.slug == "errs-once" and not mark.exists():
        mark.touch()
        raise OperationalError("server closed the connection unexpectedly")
    return real(tenant=tenant, **kwargs)


jobs.snapshot_compute = snapshot_compute
from celery.bin.celery import main
sys.argv = ["celery", "-A", "config", *sys.argv[1:]]
main()
"""


def _database_url() -> str:
    return database_url_from_settings(connection.settings_dict)


@pytest.fixture
def worker(tmp_path):
    queue = f"test-jobs-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "DATABASE_URL": _database_url(), "PYTHONUNBUFFERED": "1"}
    env["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE", "config.test_settings")
    env["JOBS_TEST_FAULT_DIR"] = str(tmp_path)
    log_path = tmp_path / "worker.log"
    argv = [
        sys.executable,
        "-c",
        WORKER,
        "worker",
        "--pool=prefork",
        "--concurrency=2",
        "--loglevel=INFO",
        f"--queues={queue}",
        f"--hostname={queue}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            argv, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield queue, log_path
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_run(run_id: int, log_path) -> JobRun:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        run = JobRun.objects.get(pk=run_id)
        if run.status != "running":
            return run
        time.sleep(0.5)
    pytest.fail(f"run {run_id} did not finish; worker log:\n{log_path.read_text()[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_chunks_failing_once_are_retried_without_duplicates(worker):
    queue, log_path = worker
    # given eight tenants with spend in the last full hour, two of them failing once
    slugs = ["a1", "a2", "dies-once", "a3", "a4", "errs-once", "a5", "a6"]
    tenants = [TenantFactory(slug=slug) for slug in slugs]
    this_hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    for tenant in tenants:
        CostRecordFactory(tenant=tenant, created_at=this_hour - timedelta(minutes=30))
    # when the job is dispatched in chunks of three onto the worker's queue
    with override_settings(JOBS_CHUNK_SIZE=3, JOBS_CHUNK_QUEUE=queue):
        sent = tenant_job_dispatch(
            hourly_snapshots_task, HOURLY_SNAPSHOTS, tenant_ids=[t.pk for t in tenants]
        )
    assert (sent["outcome"], sent["chunks"]) == ("dispatched", 3)
    run = _wait_for_run(sent["run_id"], log_path)
    # then the run succeeded, the two failing chunks ran twice, the other one once
    chunks = list(run.chunks.order_by("index"))
    log = log_path.read_text()
    assert run.status == "success", log[-4000:]
    assert [chunk.attempts for chunk in chunks] == [2, 2, 1], log[-4000:]
    assert "WorkerLostError" in log or "exited with" in log
    # and every tenant was computed and counted exactly once
    for chunk in chunks:
        assert sorted(chunk.done_tenant_ids) == sorted(chunk.tenant_ids)
        assert chunk.totals["snapshots"] == len(chunk.tenant_ids)
    versions = CostSnapshot.objects.values_list("tenant__slug", "version")
    assert sorted(versions) == sorted((slug, 1) for slug in slugs)
