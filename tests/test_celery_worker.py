"""A real Celery worker process consumes a task sent by another process.

Both sides run as subprocesses with the project's own settings, so the broker and result
backend are exactly what `make run` uses: the file-system broker when REDIS_URL is unset,
Redis when it is set. Each test uses a queue of its own, so a worker that happens to run
beside the suite (say, from `make run`) cannot take the task.
"""

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime

import pytest
from django.conf import settings

from config.database import resolve_database_url

TIMEOUT = 30

SEND_HEARTBEAT = """
import json, sys
from config.celery import app
result = app.send_task("costwise.heartbeat", queue=sys.argv[1])
print(json.dumps(result.get(timeout=float(sys.argv[2]))))
"""


def _env(*, redis_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "CELERY_BROKER_URL")}
    if redis_url:
        env["REDIS_URL"] = redis_url
    env["DJANGO_SETTINGS_MODULE"] = os.environ.get("DJANGO_SETTINGS_MODULE", "config.test_settings")
    # The suite's process owns the embedded server (if any) and outlives these children.
    env["DATABASE_URL"] = resolve_database_url()
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _heartbeat_through_worker(*, env: dict[str, str], log_path) -> dict:
    queue = f"test-heartbeat-{uuid.uuid4().hex[:12]}"
    worker_argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--pool=solo",
        "--loglevel=INFO",
        f"--queues={queue}",
        f"--hostname={queue}@%h",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            worker_argv, cwd=settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            sender = subprocess.run(
                [sys.executable, "-c", SEND_HEARTBEAT, queue, str(TIMEOUT)],
                cwd=settings.BASE_DIR,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT + 30,
            )
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    assert sender.returncode == 0, (
        f"sender failed:\n{sender.stderr[-3000:]}\nworker log:\n{log_path.read_text()[-3000:]}"
    )
    return json.loads(sender.stdout.strip().splitlines()[-1])


def test_worker_runs_heartbeat_over_serverless_broker(tmp_path):
    # when
    result = _heartbeat_through_worker(env=_env(redis_url=None), log_path=tmp_path / "w.log")
    # then
    assert result["status"] == "ok"
    assert datetime.fromisoformat(result["at"]).tzinfo is not None


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set")
def test_worker_runs_heartbeat_over_redis(tmp_path):
    # when
    result = _heartbeat_through_worker(
        env=_env(redis_url=os.environ["REDIS_URL"]), log_path=tmp_path / "w.log"
    )
    # then
    assert result["status"] == "ok"
    assert datetime.fromisoformat(result["at"]).tzinfo is not None
