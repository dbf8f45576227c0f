"""Which database a read goes to: the primary, or the optional read replica.

With `DATABASE_REPLICA_URL` set, the settings add a `replica` database alias. Reads that can
live with a replica's lag (statistics, exports, the overview) run inside `replica_reads()`;
everything else, and every write, stays on the primary. Inside a transaction on the primary
reads stay there too, so a request that has just written sees what it wrote.

The ORM follows `ReplicaRouter`; raw SQL asks `read_connection()` for its connection.
"""

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

REPLICA_DB_ALIAS = "replica"

_replica_wanted: ContextVar[bool] = ContextVar("costwise_replica_reads", default=False)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Send the reads made inside the block to the replica, when one is configured."""
    token = _replica_wanted.set(True)
    try:
        yield
    finally:
        _replica_wanted.reset(token)


def replica_stream(lines: Iterable) -> Iterator:
    """Yield from `lines` with its reads on the replica.

    A streamed response is produced after the view has returned, outside any block the view
    opened; the generator opens its own around the iteration.
    """
    with replica_reads():
        yield from lines


def read_alias() -> str:
    """The alias a read made now should use."""
    if (
        _replica_wanted.get()
        and REPLICA_DB_ALIAS in connections.settings
        and not connections[DEFAULT_DB_ALIAS].in_atomic_block
    ):
        return REPLICA_DB_ALIAS
    return DEFAULT_DB_ALIAS


def read_connection() -> BaseDatabaseWrapper:
    """The connection raw SQL of a read should use (see `read_alias`)."""
    return connections[read_alias()]


class ReplicaRouter:
    """Reads inside `replica_reads()` go to the replica; writes and migrations to the primary."""

    def db_for_read(self, model, **hints) -> str:
        return read_alias()

    def db_for_write(self, model, **hints) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool:
        # Both aliases hold the same data: objects read from either may be related.
        return True

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        return db == DEFAULT_DB_ALIAS
