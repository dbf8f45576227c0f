"""Detection selectors: grouping and ranking happen in SQL, and agree with the Python rules."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine

from analytics.models import RunStatus
from feedback.selectors import failure_groups, worker_cost_windows
from feedback.services.signatures import error_signature
from tests.factories import RunRecordFactory, utc

pytestmark = pytest.mark.django_db

NOW = utc(2026, 3, 2, 12)

# ASCII rows are signed inside PostgreSQL, the others by the Python reference; every one
# must come out exactly as error_signature() says.
ERRORS = [
    "Timeout after 30s calling job 3F2504E0-4F89-11D3-9A0C-0305E82C3301 at 2026-03-02T10:15:00",
    "HTTP 503 from upstream (attempt 2)",
    "   ",
    "",
    "\t\x0b\x0c\r\n\x1c\x1d\x1e\x1f",
    "  Padded ERROR 42\x1f",
    "abc123 def 7 code_42 v1.2.3 -7 007 port:8080/x",
    "at 2026-03-02 10:15:00 and 2026-03-02t10:15:00 and 2026-03-02X10:15:00",
    "job 12345678-1234-1234-1234-123456789012 / ABCDEF00-0000-0000-0000-00000000000F",
    "İSTANBUL node 5 down",
    "ÉCHEC de la tâche 42",
    "\u00a0non-breaking padded 9\u00a0",
    "\u3000\u3000",
    "Arabic digit \u0663 and 12",
    "emoji 🔥 3 times",
    "Straße 10",
    "ΣΟΦΟΣ 1",
]


@time_machine.travel(NOW, tick=False)
def test_sql_signatures_match_python_reference(tenant):
    # given: one failed run per error text
    run_errors = {}
    for index, error in enumerate(ERRORS):
        run = RunRecordFactory(
            tenant=tenant,
            status=RunStatus.FAILED,
            error=error,
            created_at=NOW - timedelta(minutes=index),
        )
        run_errors[run.run_id] = error
    # when
    groups = failure_groups(tenant=tenant, since=NOW - timedelta(hours=1), threshold=1)
    # then
    signed = {run_id: group.signature for group in groups for run_id in group.run_ids}
    assert signed == {run_id: error_signature(error) for run_id, error in run_errors.items()}


@time_machine.travel(NOW, tick=False)
def test_group_members_are_newest_first_with_run_id_tie_break(tenant):
    # given
    same_time = NOW - timedelta(minutes=5)
    RunRecordFactory(
        tenant=tenant,
        run_id="b",
        status="failed",
        error="boom 1",
        created_at=same_time,
        worker_id="w-2",
    )
    RunRecordFactory(
        tenant=tenant,
        run_id="a",
        status="failed",
        error="boom 2",
        created_at=same_time,
        worker_id="w-1",
    )
    RunRecordFactory(
        tenant=tenant,
        run_id="c",
        status="crashed",
        error="BOOM 3",
        created_at=NOW - timedelta(minutes=1),
        worker_id="w-3",
    )
    # when
    [group] = failure_groups(tenant=tenant, since=NOW - timedelta(hours=1), threshold=3)
    # then
    assert group.run_ids == ["c", "a", "b"]
    assert group.newest_worker_id == "w-3"
    assert group.worker_ids == ["w-1", "w-2", "w-3"]
    assert group.sample_error == "BOOM 3"


@time_machine.travel(NOW, tick=False)
def test_failure_groups_ignore_completed_runs_null_errors_and_old_runs(tenant):
    # given
    since = NOW - timedelta(hours=24)
    RunRecordFactory(
        tenant=tenant, status="failed", error="boom", created_at=since
    )  # on the boundary
    RunRecordFactory(
        tenant=tenant, status="failed", error="boom", created_at=since - timedelta(microseconds=1)
    )
    RunRecordFactory(tenant=tenant, status="completed", error="boom", created_at=NOW)
    RunRecordFactory(tenant=tenant, status="failed", error=None, created_at=NOW)
    RunRecordFactory(tenant=tenant, status="running", error="boom", created_at=NOW)
    # when
    groups = failure_groups(tenant=tenant, since=since, threshold=1)
    # then
    assert [group.count for group in groups] == [1]


def test_sample_error_is_cut_to_500_characters(tenant):
    RunRecordFactory(tenant=tenant, status="failed", error="x" * 2000)
    [group] = failure_groups(tenant=tenant, since=utc(2000, 1, 1), threshold=1)
    assert group.sample_error == "x" * 500


def test_cost_window_takes_newest_fifty_by_completion_time(tenant):
    # given: 51 paid runs; the oldest costs a fortune and must fall outside the window
    start = utc(2026, 3, 1)
    for index in range(51):
        RunRecordFactory(
            tenant=tenant,
            worker_id="w",
            cost_cents=Decimal("1000") if index == 0 else Decimal("10"),
            created_at=start + timedelta(minutes=index),
        )
    # a run created first but completed last is the newest
    newest = RunRecordFactory(
        tenant=tenant,
        worker_id="w",
        cost_cents=Decimal("30.5"),
        created_at=start - timedelta(days=1),
        completed_at=start + timedelta(hours=5),
    )
    # noise that must be ignored: unpaid, unfinished, another worker below the minimum
    RunRecordFactory(
        tenant=tenant, worker_id="w", cost_cents=Decimal("0"), created_at=start + timedelta(hours=6)
    )
    RunRecordFactory(tenant=tenant, worker_id="w", status="failed", cost_cents=Decimal("99"))
    RunRecordFactory(tenant=tenant, worker_id="few", cost_cents=Decimal("5"))
    # when
    [window] = worker_cost_windows(tenant=tenant, min_runs=5)
    # then
    assert window.worker_id == "w"
    assert window.run_count == 50
    assert window.newest_run_id == newest.run_id
    assert window.recent_cost_cents == Decimal("30.5")
    assert window.others_cost_sum_cents == Decimal("490")  # 49 runs of 10; the 1000 fell out


def test_selectors_never_cross_tenants(tenant, other_tenant):
    for _ in range(3):
        RunRecordFactory(tenant=other_tenant, status="failed", error="boom")
    for _ in range(5):
        RunRecordFactory(tenant=other_tenant, cost_cents=Decimal("10"))
    assert failure_groups(tenant=tenant, since=utc(2000, 1, 1), threshold=1) == []
    assert worker_cost_windows(tenant=tenant, min_runs=1) == []
