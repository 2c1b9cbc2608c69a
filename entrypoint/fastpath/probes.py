"""One query per alias, per backend (psycopg, sqlite3 read-only, mysqlclient), without Django:
the rows of ``django_migrations``, whether another replica holds the migration lock, and how
the latest run in the audit trail ended.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from entrypoint.fastpath.verdict import Doubt, Pending
from entrypoint.plan.types import Node

# libpq cannot wait less than 2 s; a database that is not up yet is the full path's business.
CONNECT_TIMEOUT = 2


_NO_MIGRATIONS = "there is no django_migrations table yet"


class Recorded(NamedTuple):
    """What one query on an alias found: the rows, whether the migration lock is taken, and how
    the latest run in the audit trail ended."""

    nodes: set[Node]
    locked: bool = False
    last_status: str | None = None


# The latest run's status rides along as one ('', status) row: no app label is empty.
_LAST_RUN = (
    "SELECT '', status FROM (SELECT status FROM entrypoint_migration_run WHERE db_alias = %s "
    "ORDER BY seq DESC LIMIT 1) last_run"
)


_NO_AUDIT = "there is no audit table yet (the database was migrated without the entrypoint)"


def _recorded(rows: Iterable[tuple[Any, Any]]) -> Recorded:
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


def recorded_postgres(params: Mapping[str, Any], alias: str, lock_name: str | None) -> Recorded:
    """One query: the applied nodes, the latest run's status, and whether the migration lock
    named ``lock_name`` is held."""
    import psycopg

    from entrypoint.locks.postgres import lock_key

    unsigned = lock_key(lock_name or "") & 0xFFFFFFFFFFFFFFFF
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            rows = conn.execute(
                _POSTGRES_QUERY,
                (alias, lock_name is not None, unsigned >> 32, unsigned & 0xFFFFFFFF),
            ).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
        raise Pending(msg) from exc
    except psycopg.Error as exc:
        from entrypoint.db.reasons import connect_error_reason

        msg = f"the query failed ({connect_error_reason(exc)})"
        raise Doubt(msg) from exc
    return _recorded(rows)


def recorded_sqlite(entry: Mapping[str, Any], alias: str, lock: bool) -> Recorded:
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
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=1.0)
        try:
            sql = f"SELECT app, name FROM django_migrations UNION ALL {_LAST_RUN}"
            rows = conn.execute(sql.replace("%s", "?"), (alias,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
            raise Pending(msg) from exc
        msg = f"the query failed ({type(exc).__name__}: {exc})"
        raise Doubt(msg) from exc
    found = _recorded(rows)
    return found._replace(locked=locked)


# Every row of django_migrations, the latest run's status, and one (NULL, NULL) row when a
# session holds the lock.
_MYSQL_QUERY = f"""
    SELECT app, name FROM django_migrations
    UNION ALL
    {_LAST_RUN}
    UNION ALL
    SELECT NULL, NULL FROM DUAL WHERE %s AND IS_USED_LOCK(%s) IS NOT NULL
"""


def recorded_mysql(params: Mapping[str, Any], alias: str, lock_name: str | None) -> Recorded:
    """One query: the applied nodes, the latest run's status, and whether the ``GET_LOCK`` lock
    ``lock_name`` is taken."""
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
        finally:
            conn.close()
    except MySQLdb.Error as exc:
        code = exc.args[0] if exc.args else None
        if code == 1146:  # ER_NO_SUCH_TABLE
            msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
            raise Pending(msg) from exc
        reason = exc.args[1] if len(exc.args) > 1 else type(exc).__name__
        msg = f"the query failed ({reason})"
        raise Doubt(msg) from exc
    return _recorded(rows)


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
