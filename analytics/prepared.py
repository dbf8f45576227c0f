"""Statements prepared once per database session (SQL-level PREPARE) and run by EXECUTE.

Planning some hot statements costs PostgreSQL more than running them: the reservation
statements, which read spend over the partitioned cost records, and the provenance statement
of a shadowed simulation (0.27 ms to parse and plan against 0.07 ms to execute). Each is
prepared once per database session and then executed by name.

Why SQL-level PREPARE and not psycopg's own preparation (`execute(..., prepare=True)`):
psycopg forgets every statement it prepared, and sends DEALLOCATE ALL, after any ROLLBACK,
DROP or ALTER on the connection. That would drop the statements prepared here too, and
after every rolled-back transaction the next reserve would plan its statements again.
Django opens connections with psycopg's preparation off (`prepare_threshold=None`), and the
project keeps it so.

The statements a session has prepared are tracked per connection object (a new connection
is a new session). PREPARE is not undone by a rollback, and a failed round trip may or may
not have prepared its statements, so after a failure (`session_prepared_unknown`) the
session itself is asked (`pg_prepared_statements`) before the next use.

What this needs from a deployment: a database session per connection, which direct
connections give. A pooler in transaction mode (PgBouncer) would hand a prepared name to
another client's session.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True)
class PreparedStatement:
    """A statement's PREPARE and its EXECUTE, whose parameters keep `%(name)s` placeholders."""

    name: str
    prepare: str
    execute: str


def prepared_statement(name: str, sql: str, types: Mapping[str, str]) -> PreparedStatement:
    """Prepare `sql`, whose parameters are `%(name)s` placeholders, as `name`.

    Each parameter becomes `$n` in order of first use, declared with its type from `types`
    ("unknown", left to PostgreSQL to infer from its use, when `types` has none). Run the
    EXECUTE with one of Django's cursors: they bind on the client, and PostgreSQL converts
    the literals to the declared types. Parameters sent apart from the SQL (server-side
    binding) cannot be used: EXECUTE is a utility statement, which takes none.
    """
    names: list[str] = []

    def number(match: re.Match) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    body = re.sub(r"%\((\w+)\)s", number, sql)
    declared = ", ".join(types.get(param, "unknown") for param in names)
    arguments = ", ".join(f"%({param})s" for param in names)
    return PreparedStatement(
        name=name,
        prepare=f"PREPARE {name} ({declared}) AS {body}",
        execute=f"EXECUTE {name} ({arguments})",
    )


def session_prepared(cursor) -> set[str]:
    """The names prepared in the default connection's session; the caller adds what it
    prepares. `cursor` (of that connection) asks the session when the set is unknown."""
    state = getattr(connection, "_costwise_prepared", None)
    if state is None or state[0] is not connection.connection:
        state = (connection.connection, set())
    elif state[1] is None:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        state = (connection.connection, {name for (name,) in cursor.fetchall()})
    connection._costwise_prepared = state
    return state[1]


def ensure_prepared(cursor, statement: PreparedStatement) -> None:
    """Prepare `statement` in the session of `cursor` (the default connection's) unless it
    already is: one statement the first time per session, none after."""
    prepared = session_prepared(cursor)
    if statement.name not in prepared:
        cursor.execute(statement.prepare)
        prepared.add(statement.name)


def session_prepared_unknown() -> None:
    """After a failed round trip: ask the session what it has prepared before the next use."""
    connection._costwise_prepared = (connection.connection, None)
