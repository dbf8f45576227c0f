"""Leader locks (docs/architecture.md, "Jobs and locks") with two real PostgreSQL sessions."""

import os
import signal
import subprocess
import sys

import psycopg
import pytest
from django.db import connection

from analytics.services.locks import LockId, leader_lock


def _session():
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True
    )


def _try_lock(conn, lock_id: int) -> bool:
    return conn.execute("SELECT pg_try_advisory_lock(%s)", [lock_id]).fetchone()[0]


def _eventually_free(lock_id: int) -> bool:
    """Poll from a fresh session: PostgreSQL ends a closed backend asynchronously."""
    probe = _session()
    try:
        for _ in range(100):
            if _try_lock(probe, lock_id):
                probe.execute("SELECT pg_advisory_unlock(%s)", [lock_id])
                return True
            probe.execute("SELECT pg_sleep(0.05)")
        return False
    finally:
        probe.close()


@pytest.fixture
def other():
    conn = _session()
    yield conn
    conn.close()


def test_lock_ids_are_unique_and_in_range():
    # then
    ids = [int(lock) for lock in LockId]
    assert len(ids) == len(set(ids))
    assert all(7000 <= lock_id <= 7999 for lock_id in ids)
    assert (LockId.CANARY, LockId.PROVENANCE_PRUNE) == (7001, 7003)
    assert 7002 not in ids  # the retired alert outbox lock stays unused


@pytest.mark.django_db
def test_exactly_one_of_two_sessions_is_the_leader(other):
    # when this session leads
    with leader_lock(LockId.CANARY) as leader:
        # then the other session cannot take the lock
        assert leader is True
        assert _try_lock(other, 7001) is False
        # and other locks are independent
        assert _try_lock(other, 7002) is True


@pytest.mark.django_db
def test_the_lock_is_free_again_after_release(other):
    # given
    with leader_lock(LockId.CANARY) as leader:
        assert leader is True
    # when
    acquired = _try_lock(other, 7001)
    # then
    assert acquired is True


@pytest.mark.django_db
def test_follower_does_nothing_and_does_not_release_the_leaders_lock(other):
    # given the other session leads
    assert _try_lock(other, 7001) is True
    # when
    with leader_lock(LockId.CANARY) as leader:
        assert leader is False
    # then the leader still holds it
    with leader_lock(LockId.CANARY) as leader:
        assert leader is False


@pytest.mark.django_db
def test_the_lock_is_freed_when_the_leaders_connection_closes(other):
    # given another session leads and then closes its connection
    assert _try_lock(other, 7001) is True
    other.close()
    # when
    assert _eventually_free(7001)
    with leader_lock(LockId.CANARY) as leader:
        # then
        assert leader is True


@pytest.mark.django_db
def test_the_lock_is_freed_when_the_leader_process_is_killed():
    # given a process that takes the lock and hangs
    db = connection.settings_dict
    script = (
        "import sys, time, psycopg\n"
        f"c = psycopg.connect(host={db['HOST']!r}, port={db['PORT']!r}, user={db['USER']!r}, "
        f"dbname={db['NAME']!r}, autocommit=True)\n"
        "print(c.execute('SELECT pg_try_advisory_lock(7003)').fetchone()[0], flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert child.stdout.readline().strip() == "True"
        with leader_lock(LockId.PROVENANCE_PRUNE) as leader:
            assert leader is False
        # when it is killed without releasing anything
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        # then PostgreSQL notices the closed socket and frees the lock
        assert _eventually_free(7003), "lock 7003 still held after the leader was killed"
        with leader_lock(LockId.PROVENANCE_PRUNE) as leader:
            assert leader is True
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()


@pytest.mark.django_db
def test_release_happens_even_when_the_job_raises(other):
    # when
    with pytest.raises(RuntimeError), leader_lock(LockId.CANARY) as leader:
        assert leader is True
        raise RuntimeError("job crashed")
    # then
    assert _try_lock(other, 7001) is True
