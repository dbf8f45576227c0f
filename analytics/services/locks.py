"""Every PostgreSQL advisory lock of the project, and the one helper that takes a leader lock.

`LockId` is the registry: no module picks a number of its own, and the table in
`docs/architecture.md` ("Jobs and locks") lists the same ids (a test compares them).

Three kinds of lock share the 7000-7999 range:

- leader locks: a session lock tried with `pg_try_advisory_lock(id)` through `leader_lock`;
  a job that does not get it does nothing and reports `skipped`. Nothing waits.
- waiting locks: `pg_advisory_xact_lock(id)`, held until the transaction ends.
- lock classes: `pg_advisory_xact_lock(class, key)` or `pg_try_advisory_lock(class, key)`
  with a second int4 key (a tenant id, a job). PostgreSQL keeps one-key and two-key locks in
  separate spaces, so a class never collides with a one-key id of the same number.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

from django.db import connections


class LockId(IntEnum):
    """Every advisory lock id of the project; unique and within 7000-7999."""

    # Leader locks (session, tried).
    CANARY = 7001
    # 7002 guarded CostSim's own alert outbox, now gone (alerts use the notifications
    # outbox, which needs no lock); the id is not reused.
    PROVENANCE_PRUNE = 7003
    # The inline daily snapshot job and multi-period snapshot backfills.
    SNAPSHOTS_DAILY = 7004
    # Waiting, transaction-scoped: serialises provenance backfill batches so two imports
    # running side by side cannot both insert the same (tenant, input_hash).
    PROVENANCE_BACKFILL = 7005
    # Class, key = a stable number of the job's name (`job_runs.job_lock_key`), tried: one
    # dispatcher per fanned-out job at a time; different jobs never wait for each other.
    JOB_DISPATCH = 7006
    # Waiting, transaction-scoped: one change at a time to the month partitions of
    # analytics_costrecord (create, move rows out of DEFAULT, detach).
    PARTITIONS = 7007
    # Leader lock: one raw-record retention run at a time.
    RETENTION = 7008
    # Class, key = tenant id, waiting: one tenant's detection run (rules, anomalies,
    # incidents), dry runs included.
    DETECTION = 7010
    # Class, key = tenant id, waiting: one tenant's baseline writes.
    BASELINE = 7104
    # Class, key = tenant id, waiting: one tenant's reprice chunk (two reprices of a tenant
    # run one after the other).
    REPRICE = 7020
    # Class, key = a hash of tenant id and trace id, waiting: OTLP exports touching the same
    # trace decide which model calls to price one after the other.
    OTLP_TRACE = 7030


@contextmanager
def leader_lock(
    lock_id: LockId, *, key: int | None = None, shared: bool = False, using: str = "default"
) -> Iterator[bool]:
    """Yield True when this session holds the lock `lock_id` (or `(lock_id, key)`), else False.

    Never waits. `shared` takes the lock in share mode: any number of shared holders, none
    while someone holds it exclusively (the default mode). The lock is taken and released on
    the same connection (a session-level advisory lock belongs to the connection that took
    it); if the process dies, PostgreSQL drops it together with the connection. A follower
    releases nothing.
    """
    args = [int(lock_id)] if key is None else [int(lock_id), key % 2**31]
    placeholders = "%s" if key is None else "%s::int4, %s::int4"
    mode = "_shared" if shared else ""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_lock{mode}({placeholders})", args)
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT pg_advisory_unlock{mode}({placeholders})", args)
