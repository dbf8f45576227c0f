"""PostgreSQL advisory locks that make singleton jobs leader-only (SPEC.md §6.1).

A job that does not get its lock does nothing and reports `skipped`; nothing here waits.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

from django.db import connections


class LockId(IntEnum):
    """Every lock id of the project; unique and within 7000-7999."""

    CANARY = 7001
    ALERT_OUTBOX = 7002
    PROVENANCE_PRUNE = 7003
    # analytics issues the same statements itself (it must not import costsim);
    # listed here so the registry stays complete.
    ANALYTICS_DAILY = 7004
    # Transaction-level and waiting: serialises backfill batches so two imports running
    # side by side cannot both insert the same (tenant, input_hash).
    PROVENANCE_BACKFILL = 7005


@contextmanager
def leader_lock(lock_id: LockId, *, using: str = "default") -> Iterator[bool]:
    """Yield True when this process holds the session lock `lock_id`, else False.

    The lock is taken and released on the same connection (a session-level advisory
    lock belongs to the connection that took it); if the process dies, PostgreSQL drops
    it together with the connection.
    """
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [int(lock_id)])
        acquired = bool(cursor.fetchone()[0])
    try:
        yield acquired
    finally:
        if acquired:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [int(lock_id)])
