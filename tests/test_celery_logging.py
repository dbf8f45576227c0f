"""Console hygiene of the worker and beat (config/celery.py): routine ticks stay out of the
log, errors do not."""

import logging

from django.conf import settings

from config.celery import RoutineTaskFilter, routine_tasks

OUTBOX = "notifications.dispatch"


def _record(logger: str, level: int, message: str, *args) -> logging.LogRecord:
    return logging.LogRecord(logger, level, __file__, 1, message, args, None)


def _received(task: str, level: int = logging.INFO) -> logging.LogRecord:
    context = {"name": task, "id": "0f1e", "runtime": 0.01, "return_value": {}}
    return _record("celery.worker.strategy", level, "Task %(name)s[%(id)s] received", context)


def test_only_the_ten_second_outboxes_are_routine():
    # then
    assert routine_tasks(settings.CELERY_BEAT_SCHEDULE) == {OUTBOX}


def test_routine_runs_are_dropped_and_other_tasks_kept():
    # given
    log_filter = RoutineTaskFilter({OUTBOX})
    succeeded = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"
    sending = "Scheduler: Sending due task %s (%s)"
    # then
    assert not log_filter.filter(_received(OUTBOX))
    assert not log_filter.filter(
        _record("celery.app.trace", logging.INFO, succeeded, {"name": OUTBOX, "id": "1"})
    )
    assert not log_filter.filter(
        _record("celery.beat", logging.INFO, sending, "notifications-dispatch", OUTBOX)
    )
    assert log_filter.filter(_received("analytics.hourly_snapshots"))
    assert log_filter.filter(
        _record("celery.beat", logging.INFO, sending, "hourly", "analytics.hourly_snapshots")
    )


def test_warnings_and_errors_of_routine_tasks_still_pass():
    # given
    log_filter = RoutineTaskFilter({OUTBOX})
    # then
    assert log_filter.filter(_received(OUTBOX, logging.WARNING))
    assert log_filter.filter(
        _record("celery.app.trace", logging.ERROR, "Task %(name)s raised", {"name": OUTBOX})
    )
    assert log_filter.filter(_record("costsim.tasks", logging.INFO, "Alert outbox: 1 sent"))
