"""Celery application; tasks live in each app's tasks.py and are found by autodiscovery."""

import os
from datetime import UTC, datetime
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("costwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
