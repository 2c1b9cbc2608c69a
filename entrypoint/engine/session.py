"""The settings a migration's statements run with, scoped so that none outlives the migration.

Behind a transaction pooler (PgBouncer in transaction mode) the server connection under Django's
connection changes between transactions and goes back to a pool the application shares: a
session ``SET`` there would govern the application's own queries afterwards, and is not even
sure to reach the migration's next transaction. So on PostgreSQL:

* an atomic migration gets its settings with ``set_config(..., true)`` (``SET LOCAL``) as the
  first statement of its own transaction: they end with it, whatever the connection;
* a non-atomic migration has no transaction to scope them to: on a direct connection they are
  set for the session before its first statement and reset right after it; behind a pooler
  (:func:`intermediary`) it runs without them, which is said once at the start of the run.

The settings are ``client_connection_check_interval`` (PostgreSQL 14+: a replica killed inside
a statement does not leave it running on, holding a snapshot a later ``CREATE INDEX
CONCURRENTLY`` would wait for) and, with ``ENTRYPOINT_DDL_LOCK_TIMEOUT``, ``lock_timeout``. On
MySQL/MariaDB ``lock_wait_timeout`` (whole seconds, rounded up) is set for the session while the
run migrates and put back to the server's default when it is done.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from entrypoint.audit.table import TABLE as AUDIT_TABLE

# PostgreSQL 14+ checks, during a long statement, whether the client is still there.
CLIENT_CHECK_INTERVAL_MS = 2000


def postgres_settings(ddl_lock_timeout: float | None) -> list[tuple[str, str]]:
    """The PostgreSQL settings of a migration's statements."""
    settings = [("client_connection_check_interval", str(CLIENT_CHECK_INTERVAL_MS))]
    if ddl_lock_timeout:
        settings.append(("lock_timeout", f"{int(ddl_lock_timeout * 1000)}ms"))
    return settings


class Scoped:
    """An ``execute_wrapper`` that gives each migration's statements their settings, scoped to
    the migration (see the module docstring). :meth:`migration_starts` and
    :meth:`migration_ends` are called by the engine around each migration."""

    def __init__(
        self, alias: str, settings: list[tuple[str, str]], *, session_allowed: bool
    ) -> None:
        self.alias = alias
        self.settings = settings
        self.session_allowed = session_allowed
        self._pending = False
        self._in_session = False

    def migration_starts(self) -> None:
        """The next statement of the migration is its first."""
        self._pending = bool(self.settings)

    def migration_ends(self) -> None:
        """Put session settings back after a non-atomic migration (never raises)."""
        self._pending = False
        if not self._in_session:
            return
        self._in_session = False
        from django.db import connections

        with suppress(Exception), connections[self.alias].cursor() as cursor:
            for name, _ in self.settings:
                cursor.execute(f"RESET {name}")

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        """Run the migration's first statement after its settings; every statement as is."""
        if self._pending and AUDIT_TABLE not in str(sql):
            self._pending = False
            from django.db import connections

            local = connections[self.alias].in_atomic_block
            if local or self.session_allowed:
                for name, value in self.settings:
                    with suppress(Exception):  # an older server without the setting
                        execute(
                            "SELECT set_config(%s, %s, %s)", [name, value, local], False, context
                        )
                self._in_session = not local
        return execute(sql, params, many, context)


@contextmanager
def mysql_session(alias: str, ddl_lock_timeout: float | None) -> Iterator[None]:
    """``lock_wait_timeout`` for the session while the block runs, then the server's default."""
    if not ddl_lock_timeout:
        yield
        return
    from django.db import connections

    seconds = max(1, math.ceil(ddl_lock_timeout))
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET SESSION lock_wait_timeout = {seconds:d}")
    except Exception:  # noqa: S110 - the server's own default then applies
        pass
    try:
        yield
    finally:
        with suppress(Exception), connection.cursor() as cursor:
            cursor.execute("SET SESSION lock_wait_timeout = DEFAULT")


def intermediary(alias: str) -> str | None:
    """Why Django's PostgreSQL connection of ``alias`` is not a direct session on the server,
    or None when it is (or cannot be told: a Unix socket, another backend).

    Two signs: the server sees this connection come from another client port than the one this
    process's socket uses (a pooler or proxy opened its own), and the backend changes between
    two transactions (a transaction pooler).
    """
    from django.db import connections

    connection = connections[alias]
    if connection.vendor != "postgresql":
        return None
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), inet_client_port()")
        first_pid, seen_port = cursor.fetchone()
        cursor.execute("SELECT pg_backend_pid()")
        (second_pid,) = cursor.fetchone()
    if first_pid != second_pid:
        return f"its server session changed between two transactions ({first_pid}, {second_pid})"
    own_port = _local_port(raw.pgconn.socket)
    if seen_port is not None and own_port is not None and int(seen_port) != own_port:
        return f"the server sees it come from port {seen_port}, while this process uses {own_port}"
    return None


def _local_port(fd: int) -> int | None:
    sock = socket.socket(fileno=fd)
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        return int(sock.getsockname()[1])
    except OSError:
        return None
    finally:
        sock.detach()  # the descriptor belongs to the driver
