"""The interrupted-run gate: a non-atomic migration that an interrupted run left half done stops
the next runs, with the invalid indexes it left behind, until one run accepts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from entrypoint.audit.rows import RunRow, Status
from entrypoint.audit.table import TABLE
from entrypoint.engine.events import Report
from entrypoint.errors import MigrationFailed
from entrypoint.plan.types import dotted


@dataclass(frozen=True)
class InvalidIndex:
    """An index PostgreSQL marks invalid, as an interrupted CREATE INDEX CONCURRENTLY leaves."""

    schema: str
    name: str
    table: str
    drop: str


def invalid_indexes(alias: str) -> list[InvalidIndex]:
    """Invalid indexes on ``alias`` with the statement that drops each (PostgreSQL only)."""
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "postgresql":
        return []
    query = """
        SELECT n.nspname, c.relname, t.relname
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT i.indisvalid
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%%'
        ORDER BY n.nspname, c.relname
    """
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(query)
        rows = cursor.fetchall()
    return [
        InvalidIndex(schema, name, table, f"DROP INDEX CONCURRENTLY {quote(schema)}.{quote(name)}")
        for schema, name, table in rows
    ]


def check_interrupted(
    alias: str, interrupted: Sequence[RunRow], run_id: str, *, accept: bool, report: Report
) -> None:
    """Stop before re-running a non-atomic migration that an interrupted run left half done.

    An interrupted run whose non-atomic migration is now recorded as applied needs nothing
    more. Otherwise this raises MigrationFailed (exit 70) naming what may be half-applied, the
    invalid indexes left behind (PostgreSQL) and how to go on, unless ``accept`` is set, in
    which case the run is marked as gone past and the migration runs again.
    """
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    if not interrupted:
        return
    applied = set(MigrationRecorder(connections[alias]).applied_migrations())
    blocking = [
        (row, row.current_migration)
        for row in interrupted
        if row.current_migration is not None and row.current_migration not in applied
    ]
    if blocking and not accept:
        row, node = blocking[-1]
        indexes = invalid_indexes(alias)
        left = ""
        if indexes:
            drops = "; ".join(index.drop for index in indexes)
            left = f"; invalid indexes are left behind, drop each first: {drops}"
        ended = "failed" if row.status is Status.FAILED else "was interrupted"
        msg = (
            f"run {row.id} {ended} while applying {dotted(node)} on database "
            f"{alias!r}; that migration is not atomic and may be partly applied{left}; check "
            "the database, then rerun once with ENTRYPOINT_ACCEPT_INTERRUPTED=1 (or "
            "--accept-interrupted) to apply it again"
        )
        raise MigrationFailed(msg)
    with connections[alias].cursor() as cursor:
        for row in interrupted:
            cursor.execute(
                f"UPDATE {TABLE} SET resolved_by = %s WHERE id = %s AND db_alias = %s",
                [run_id, row.id, alias],
            )
    if blocking:
        statements = [index.drop for index in invalid_indexes(alias)]
        for row, node in blocking:
            report(
                "interrupted_run_accepted",
                level="warning",
                database=alias,
                interrupted_run=row.id,
                migration=dotted(node),
                invalid_indexes=statements,
            )
