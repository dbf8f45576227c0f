"""Celery application; tasks live in each app's tasks.py and are found by autodiscovery."""

import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from celery import Celery
from celery.signals import after_setup_logger, beat_init, worker_ready

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("costwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The beat tasks of the fanned-out per-tenant jobs (each only dispatches a run's chunks) and
# the sweeper that sends stalled chunks again.
DISPATCH_TASKS = (
    "analytics.hourly_snapshots",
    "analytics.daily_snapshots",
    "analytics.detect_anomalies",
    "analytics.sweep_job_runs",
    "feedback.detect_patterns",
    "predictions.run_cycle",
)


@app.on_after_configure.connect
def _declare_job_queues(sender, **kwargs) -> None:
    # Declared, so a worker started without --queues consumes the default queue and both
    # job queues; a dedicated chunk worker is `celery -A config worker -Q <JOBS_CHUNK_QUEUE>`.
    from django.conf import settings
    from kombu import Exchange, Queue

    names = (
        sender.conf.task_default_queue,
        settings.JOBS_DISPATCH_QUEUE,
        settings.JOBS_CHUNK_QUEUE,
    )
    sender.conf.task_queues = [
        Queue(name, Exchange(name), routing_key=name) for name in dict.fromkeys(names)
    ]
    routes = {name: {"queue": settings.JOBS_DISPATCH_QUEUE} for name in DISPATCH_TASKS}
    routes["analytics.job_chunk"] = {"queue": settings.JOBS_CHUNK_QUEUE}
    sender.conf.task_routes = routes


# A task beat sends more often than this is routine: Celery's per-run INFO lines about it
# are dropped from the log (RoutineTaskFilter).
ROUTINE_PERIOD = timedelta(minutes=1)
# Set by scripts/run.py: the worker and beat touch a file here once they are up.
READY_DIR_ENV = "COSTWISE_READY_DIR"


@app.on_after_configure.connect
def _ensure_filesystem_broker_folders(sender, **kwargs) -> None:
    # The file-system transport expects its folders to exist before the first publish.
    options = sender.conf.broker_transport_options or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        if options.get(key):
            Path(options[key]).mkdir(parents=True, exist_ok=True)
    backend = sender.conf.result_backend or ""
    if backend.startswith("file://"):
        Path(backend.removeprefix("file://")).mkdir(parents=True, exist_ok=True)


@app.task(name="costwise.heartbeat", soft_time_limit=10, time_limit=20)
def heartbeat_task() -> dict:
    """Prove that a worker consumes tasks; used by the readiness tests and operators."""
    return {"status": "ok", "at": datetime.now(UTC).isoformat()}


class RoutineTaskFilter(logging.Filter):
    """Drop the INFO lines Celery writes for every run of a routine task.

    The alert outbox runs every 10 s: beat's "Sending due task" line and the worker's
    "received" and "succeeded" lines for it would bury everything else. Warnings and
    errors pass, and so does whatever the task itself logs (a delivered alert, say).
    """

    def __init__(self, task_names: set[str]) -> None:
        super().__init__()
        self.task_names = frozenset(task_names)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or _task_name(record) not in self.task_names


def _task_name(record: logging.LogRecord) -> str | None:
    args = record.args
    if record.name == "celery.beat" and isinstance(args, tuple) and len(args) == 2:
        return args[1]  # "Scheduler: Sending due task %s (%s)": entry name, task name
    if record.name in ("celery.app.trace", "celery.worker.strategy") and isinstance(args, dict):
        return args.get("name")  # "Task %(name)s[%(id)s] received / succeeded ..."
    return None


def routine_tasks(schedule: dict) -> set[str]:
    """Return the names of the tasks `schedule` runs more often than ROUTINE_PERIOD."""
    names = set()
    for entry in schedule.values():
        every = entry["schedule"]
        if isinstance(every, int | float):
            every = timedelta(seconds=every)
        if isinstance(every, timedelta) and every < ROUTINE_PERIOD:
            names.add(entry["task"])
    return names


@after_setup_logger.connect
def _quiet_routine_tasks(sender=None, logger=None, **kwargs) -> None:
    # On the handlers, not the logger: records of Celery's child loggers reach the root
    # logger's handlers without passing the root logger's own filters.
    log_filter = RoutineTaskFilter(routine_tasks(app.conf.beat_schedule or {}))
    for handler in logger.handlers:
        handler.addFilter(log_filter)


@worker_ready.connect
def _worker_ready_mark(sender=None, **kwargs) -> None:
    _ready_mark("worker")


@beat_init.connect
def _beat_ready_mark(sender=None, **kwargs) -> None:
    _ready_mark("beat")


def _ready_mark(name: str) -> None:
    # scripts/run.py prints its summary once web, worker and beat are all up, so that the
    # summary is the last thing start-up writes to the console.
    folder = os.environ.get(READY_DIR_ENV)
    if folder:
        Path(folder, name).touch()
