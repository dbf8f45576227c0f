"""Detection running side by side on separate connections."""

import threading

import pytest
import time_machine
from django.db import connection

from feedback.models import PatternFeedback
from feedback.services.patterns import patterns_detect
from tests.factories import RunRecordFactory, TenantFactory, utc


def run_side_by_side(work, count=2):
    """Run `work()` in `count` threads released at once; return (results, errors)."""
    barrier = threading.Barrier(count)
    results, errors = [], []

    def target():
        try:
            barrier.wait(timeout=10)
            results.append(work())
        except Exception as exc:  # reported through `errors`
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results, errors


@pytest.mark.django_db(transaction=True)
@time_machine.travel(utc(2026, 3, 2, 12, 20), tick=False)
def test_two_detections_at_once_leave_one_row_per_pattern():
    # given
    tenant = TenantFactory(slug="race")
    for index in range(3):
        RunRecordFactory(tenant=tenant, status="failed", error=f"HTTP 503 (attempt {index})")
    # when
    results, errors = run_side_by_side(lambda: patterns_detect(tenant=tenant))
    # then: the second upsert waited for the first and updated its row
    assert errors == []
    assert PatternFeedback.objects.count() == 1
    assert sorted(result["feedback_created"] for result in results) == [0, 1]
    assert sorted(result["feedback_updated"] for result in results) == [0, 1]
