"""The lock registry: every advisory lock id in code is in `LockId` and in the documented table."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from analytics.services import incidents, jobs, snapshots
from analytics.services.locks import LockId, leader_lock

ROOT = Path(settings.BASE_DIR)
# A literal id handed to any of PostgreSQL's advisory lock functions.
LITERAL_LOCK = re.compile(r"pg_(?:try_)?advisory_(?:xact_)?lock(?:_shared)?\(\s*(\d+)")


def documented_ids() -> set[int]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Jobs and locks", 1)[1].split("\n## ", 1)[0]
    ids = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and (match := re.fullmatch(r"(?:class )?(7\d{3})\b.*", cells[0])):
            ids.add(int(match.group(1)))
    return ids


def test_every_registered_lock_is_documented_and_nothing_else():
    assert documented_ids() == {int(lock) for lock in LockId}


def test_lock_ids_are_unique_and_in_range():
    ids = [int(lock) for lock in LockId]
    assert len(ids) == len(set(ids))
    assert all(7000 <= lock_id <= 7999 for lock_id in ids)


def test_modules_take_their_ids_from_the_registry():
    assert incidents.DETECTION_LOCK_CLASS == LockId.DETECTION
    assert snapshots.BASELINE_LOCK_CLASS == LockId.BASELINE
    assert jobs.DAILY_LOCK_ID == LockId.SNAPSHOTS_DAILY


def test_no_code_takes_a_lock_id_outside_the_registry():
    registered = {int(lock) for lock in LockId}
    found = {}
    for app in ("analytics", "costsim", "feedback", "predictions", "notifications", "config"):
        for path in (ROOT / app).rglob("*.py"):
            for match in LITERAL_LOCK.finditer(path.read_text()):
                found.setdefault(int(match.group(1)), []).append(str(path.relative_to(ROOT)))
    assert {lock_id: paths for lock_id, paths in found.items() if lock_id not in registered} == {}


@pytest.mark.django_db
def test_a_keyed_leader_lock_excludes_only_its_own_key(other_session):
    # when this session leads job key 1 of class 7006
    with leader_lock(LockId.JOB_DISPATCH, key=1) as leader:
        # then another session cannot take that key, but can take another key or the
        # one-key lock of the same number
        assert leader is True
        take = "SELECT pg_try_advisory_lock(%s::int4, %s::int4)"
        assert other_session.execute(take, [7006, 1]).fetchone()[0] is False
        assert other_session.execute(take, [7006, 2]).fetchone()[0] is True
        assert other_session.execute("SELECT pg_try_advisory_lock(7006)").fetchone()[0] is True


@pytest.mark.django_db
def test_shared_holders_coexist_and_exclude_an_exclusive_one(other_session):
    # given another session holds 7004 shared
    assert other_session.execute("SELECT pg_try_advisory_lock_shared(7004)").fetchone()[0] is True
    # when / then this session can share it but not take it exclusively
    with leader_lock(LockId.SNAPSHOTS_DAILY, shared=True) as shared:
        assert shared is True
    with leader_lock(LockId.SNAPSHOTS_DAILY) as exclusive:
        assert exclusive is False
    # and once shared holders are gone, the exclusive lock is free again
    other_session.execute("SELECT pg_advisory_unlock_shared(7004)")
    with leader_lock(LockId.SNAPSHOTS_DAILY) as exclusive:
        assert exclusive is True
