"""One query per alias, per backend (psycopg, sqlite3 read-only, mysqlclient), without Django:
the rows of ``django_migrations``, whether another replica holds the migration lock, and how
the latest run in the audit trail ended.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from entrypoint.fastpath.stored import LOOKUP
from entrypoint.fastpath.verdict import Doubt, Pending, Unreachable
from entrypoint.light import TYPE_CHECKING, NamedTuple
from entrypoint.plan.types import Node

if TYPE_CHECKING:
    from typing import Any

# libpq cannot wait less than 2 s; a database that is not up yet is the full path's business.
CONNECT_TIMEOUT = 2


_NO_MIGRATIONS = "there is no django_migrations table yet"


class Recorded(NamedTuple):
    """What one query on an alias found: the rows, whether the migration lock is taken, and how
    the latest run in the audit trail ended."""

    nodes: set[Node]
    locked: bool = False
    last_status: str | None = None
    #: The manifests recorded in the database for the start's settings key, newest first
    #: (when asked for), and whether the manifest table exists.
    manifests: tuple[str, ...] = ()
    manifest_table: bool = True


# The latest run's status rides along as one ('', status) row: no app label is empty.
_LAST_RUN = (
    "SELECT '', status FROM (SELECT status FROM entrypoint_migration_run WHERE db_alias = %s "
    "ORDER BY seq DESC LIMIT 1) last_run"
)


_NO_AUDIT = "there is no audit table yet (the database was migrated without the entrypoint)"


def _recorded(rows: Iterable[tuple[Any, ...]]) -> Recorded:
    nodes: set[Node] = set()
    locked, status = False, None
    for app, name in rows:
        if app is None:
            locked = True
        elif app == "":
            status = str(name)
        else:
            nodes.add((str(app), str(name)))
    return Recorded(nodes, locked=locked, last_status=status)


# Every row of django_migrations, the latest run's status, and one (NULL, NULL) row when a
# session holds the lock.
_POSTGRES_QUERY = f"""
    SELECT app, name FROM django_migrations
    UNION ALL
    {_LAST_RUN}
    UNION ALL
    SELECT NULL, NULL WHERE %s AND EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND classid::bigint = %s AND objid::bigint = %s
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""


def recorded_postgres(
    params: Mapping[str, Any],
    alias: str,
    lock_name: str | None,
    lookup: str | None = None,
    reader: Reader | None = None,
    *,
    keep: list[Any] | None = None,
) -> Recorded:
    """One round trip: the applied nodes, the latest run's status, and whether the migration
    lock named ``lock_name`` is held; with ``lookup`` (a settings key), the manifests recorded
    for it too. Through the protocol client of :mod:`entrypoint.db.wire`, or psycopg where that
    one cannot do what libpq would; or through ``reader``, a connection open already (the
    lock's, when this process holds the lock). With ``keep``, the protocol client's connection
    is left open there for the caller (the start's lock may take it over)."""
    from entrypoint.db import wire
    from entrypoint.db.advisory import key_halves, lock_key

    high, low = key_halves(lock_key(lock_name or ""))
    statements: list[tuple[str, tuple[Any, ...]]] = [
        (_POSTGRES_QUERY, (alias, lock_name is not None, high, low))
    ]
    if lookup is not None:
        statements.append((LOOKUP, (lookup,)))
    if reader is not None:
        return _read_through(reader, statements, lookup is not None)
    try:
        connection = wire.Connection(params)
        try:
            connection.connect()
            results = connection.run(statements)
        finally:
            if keep is not None and not connection.closed:
                keep.append(connection)
            else:
                connection.close()
    except wire.Unsupported:
        results = _with_psycopg(params, statements)
    except wire.ConnectFailed as exc:
        msg = f"the query failed ({exc})"
        raise Unreachable(msg) from exc
    first = results[0]
    if isinstance(first, wire.ServerError):
        if first.sqlstate == _UNDEFINED_TABLE:
            msg = _NO_AUDIT if "entrypoint_migration_run" in first.message else _NO_MIGRATIONS
            raise Pending(msg)
        msg = f"the query failed ({first.message})"
        raise Doubt(msg)
    texts: tuple[str, ...] = ()
    table = True
    if lookup is not None:
        found = results[1]
        if isinstance(found, wire.ServerError):
            if found.sqlstate != _UNDEFINED_TABLE:
                msg = f"the query failed ({found.message})"
                raise Doubt(msg)
            table = False
        else:
            texts = tuple(str(row[0]) for row in found)
    return _recorded(first)._replace(manifests=texts, manifest_table=table)


_UNDEFINED_TABLE = "42P01"

if TYPE_CHECKING:
    #: A read on a connection open already: rows of one query, empty when it failed.
    Reader = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


def _read_through(
    reader: Reader, statements: list[tuple[str, tuple[Any, ...]]], lookup: bool
) -> Recorded:
    """The statements through ``reader``. A failed read gives no rows, which can only make the
    answer "pending" (every node then looks unapplied, no manifest matches): the full path."""
    results = [reader(query, args) for query, args in statements]
    texts = tuple(str(row[0]) for row in results[1]) if lookup else ()
    return _recorded(results[0])._replace(manifests=texts)


def _with_psycopg(
    params: Mapping[str, Any], statements: list[tuple[str, tuple[Any, ...]]]
) -> list[Any]:
    """The statements through psycopg, their results as :meth:`wire.Connection.run` gives
    them."""
    import psycopg

    from entrypoint.db import wire
    from entrypoint.log import route_driver_logs

    route_driver_logs()
    results: list[Any] = []
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            for query, args in statements:
                try:
                    results.append(conn.execute(query, args).fetchall())
                except psycopg.errors.UndefinedTable as exc:
                    results.append(wire.ServerError(_UNDEFINED_TABLE, str(exc)))
    except psycopg.Error as exc:
        from entrypoint.db.reasons import connect_error_reason

        msg = f"the query failed ({connect_error_reason(exc)})"
        raise Unreachable(msg) from exc
    return results


def recorded_sqlite(
    entry: Mapping[str, Any], alias: str, lock: bool, lookup: str | None = None
) -> Recorded:
    """One query on the SQLite file (read-only), and whether its lock file is locked."""
    import sqlite3
    from urllib.parse import quote

    name = entry.get("NAME")
    options = entry.get("OPTIONS") or {}
    if not name or str(name) == ":memory:" or str(name).startswith("file:") or options.get("uri"):
        msg = "an in-memory or URI SQLite database has no fast path"
        raise Doubt(msg)
    path = os.path.abspath(str(name))
    if not os.path.exists(path):
        msg = "the SQLite file does not exist yet"
        raise Pending(msg)
    locked = lock and _flocked(path)
    texts: tuple[str, ...] = ()
    table = True
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=1.0)
        try:
            sql = f"SELECT app, name FROM django_migrations UNION ALL {_LAST_RUN}"
            rows = conn.execute(sql.replace("%s", "?"), (alias,)).fetchall()
            if lookup is not None:
                try:
                    found = conn.execute(LOOKUP.replace("%s", "?"), (lookup,)).fetchall()
                    texts = tuple(str(r[0]) for r in found)
                except sqlite3.OperationalError:
                    table = False
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
            raise Pending(msg) from exc
        msg = f"the query failed ({type(exc).__name__}: {exc})"
        raise Doubt(msg) from exc
    return _recorded(rows)._replace(locked=locked, manifests=texts, manifest_table=table)


# Every row of django_migrations, the latest run's status, and one (NULL, NULL) row when a
# session holds the lock.
_MYSQL_QUERY = f"""
    SELECT app, name FROM django_migrations
    UNION ALL
    {_LAST_RUN}
    UNION ALL
    SELECT NULL, NULL FROM DUAL WHERE %s AND IS_USED_LOCK(%s) IS NOT NULL
"""


def recorded_mysql(
    params: Mapping[str, Any],
    alias: str,
    lock_name: str | None,
    lookup: str | None = None,
    reader: Reader | None = None,
) -> Recorded:
    """One query: the applied nodes, the latest run's status, and whether the ``GET_LOCK`` lock
    ``lock_name`` is taken; with ``lookup`` (a settings key), a second one for the manifests
    recorded for it; through ``reader`` when a connection is open already."""
    if reader is not None:
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (_MYSQL_QUERY, (alias, lock_name is not None, lock_name or ""))
        ]
        if lookup is not None:
            statements.append((LOOKUP, (lookup,)))
        return _read_through(reader, statements, lookup is not None)
    try:
        import MySQLdb
    except ImportError as exc:
        msg = "mysqlclient is not installed"
        raise Doubt(msg) from exc
    try:
        conn = MySQLdb.connect(**params)
        try:
            cursor = conn.cursor()
            cursor.execute(_MYSQL_QUERY, (alias, lock_name is not None, lock_name or ""))
            rows = cursor.fetchall()
            texts: tuple[str, ...] = ()
            table = True
            if lookup is not None:
                try:
                    cursor.execute(LOOKUP, (lookup,))
                    texts = tuple(str(r[0]) for r in cursor.fetchall())
                except MySQLdb.Error as exc:
                    if not exc.args or exc.args[0] != 1146:  # ER_NO_SUCH_TABLE
                        raise
                    table = False
        finally:
            conn.close()
    except MySQLdb.Error as exc:
        code = exc.args[0] if exc.args else None
        if code == 1146:  # ER_NO_SUCH_TABLE
            msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
            raise Pending(msg) from exc
        reason = exc.args[1] if len(exc.args) > 1 else type(exc).__name__
        msg = f"the query failed ({reason})"
        raise Unreachable(msg) from exc
    return _recorded(rows)._replace(manifests=texts, manifest_table=table)


def _flocked(database_path: str) -> bool:
    import fcntl

    from entrypoint.locks.sqlite import lock_path

    try:
        fd = os.open(lock_path(database_path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken just now
    return False
