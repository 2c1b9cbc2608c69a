"""MySQL and MariaDB: a named lock (``GET_LOCK``) held by a dedicated connection.

The connection is opened only for the lock and stays in autocommit, idle, while Django's own
connection runs the migrations. ``GET_LOCK`` takes no table lock and, in autocommit, holds no
transaction or snapshot, so waiting for it inside the server is harmless to the holder's DDL.
Waiters therefore wait in the server, but in short slices (:data:`SLICE` seconds): a Python
signal handler only runs once the C call returns, so a slice bounds how late a SIGTERM is seen,
and the shared loop keeps its deadline and its "still waiting" reports. When the holder releases,
a waiter parked in a slice gets the lock within milliseconds.

The lock name is ``django-entrypoint:DATABASE``, or ``django-entrypoint:DATABASE:KEY`` when
``ENTRYPOINT_LOCK_KEY`` is set, where DATABASE is the alias's database name. Named locks are
server-wide, unlike PostgreSQL's per-database advisory locks, so the database name is always part
of the name. A name longer than 64 characters (the server's limit) becomes
``django-entrypoint:`` followed by the first 46 hexadecimal digits of the SHA-256 of that name.

The lock dies with its session. The session's ``wait_timeout`` is raised to the maximum so that
the server never ends an idle holder during a long migration, and TCP keepalives are set on the
connection's socket so that either side notices a vanished peer. The server notices a holder
whose host vanished through its own keepalive (MariaDB ``tcp_keepalive_time``, else the kernel's
default of two hours); the lock is freed then.

Fencing: MySQL has no per-connection name that another session can read everywhere
(``performance_schema`` is off by default on MariaDB), so each connection of a run takes a
second named lock, its marker, ``django-entrypoint:run:<id>:<alias>:<role>`` (the alias hashed
to eight hexadecimal digits, the role ``lock`` or ``django``). ``IS_USED_LOCK`` on the markers of
a run found ``running`` gives the ids of its live sessions, which a later holder ends with
``KILL CONNECTION`` (allowed on the same account's sessions, otherwise with the CONNECTION_ADMIN
or SUPER privilege).
"""

from __future__ import annotations

import hashlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from entrypoint.db.reasons import mysql_reason
from entrypoint.errors import ConfigError, DatabaseUnavailable
from entrypoint.locks.base import Lost, Session, readable

MAX_NAME = 64
PREFIX = "django-entrypoint:"
# ER_NO_SUCH_THREAD: KILL of a connection that is already gone.
_UNKNOWN_THREAD = 1094
# The longest a waiter stays inside one GET_LOCK call, so a SIGTERM is handled within it.
SLICE = 0.2
# Client keepalives on the lock connection: a silent server is noticed within about
# 10 + 5 * 6 = 40 seconds instead of the kernel default of two hours.
KEEPALIVE = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 6}
# The largest wait_timeout a Linux server accepts (one year): the lock must outlive any migration.
_SESSION_SETTINGS = (
    "SET SESSION wait_timeout = 31536000",
    # MariaDB's statement time limit, then MySQL's (SELECT only); either may be absent.
    "SET SESSION max_statement_time = 0",
    "SET SESSION max_execution_time = 0",
)


#: The roles of a run's connections that take a marker (see the module docstring).
MARKER_ROLES = ("lock", "django")
# Seconds a read or write on the lock connection may take: a partitioned holder's checks fail
# within this, long before the server's keepalive ends its session.
IO_TIMEOUT = 10


def run_marker(run_id: str, alias: str, role: str) -> str:
    """The marker lock name of one connection of run ``run_id`` on ``alias``."""
    digest = hashlib.sha256(alias.encode()).hexdigest()[:8]
    return f"{PREFIX}run:{run_id}:{digest}:{role}"


def take_marker(cursor: Any, name: str) -> None:
    """Take a marker lock on the cursor's connection (never waits; a failure is harmless)."""
    cursor.execute("SELECT GET_LOCK(%s, 0)", (name,))
    cursor.fetchall()


def lock_name(database: str, key: str | None = None) -> str:
    """The ``GET_LOCK`` name for a database and an optional ``ENTRYPOINT_LOCK_KEY``."""
    name = f"{PREFIX}{database}" if key is None else f"{PREFIX}{database}:{key}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()
    return PREFIX + digest[: MAX_NAME - len(PREFIX)]


def connect(params: dict[str, Any]) -> Any:
    """``MySQLdb.connect(**params)`` in a helper thread, waited for by the caller.

    The C client blocks for up to ``connect_timeout`` on a host that drops packets, and a signal
    handler runs only once that call returns; waiting on a thread instead lets SIGTERM through
    at once (the thread is left to end on its own).
    """
    import MySQLdb

    outcome: list[Any] = []

    def attempt() -> None:
        try:
            outcome.append(MySQLdb.connect(**params))
        except BaseException as exc:  # handed to the caller below
            outcome.append(exc)

    worker = threading.Thread(target=attempt, name="entrypoint-mysql-connect", daemon=True)
    worker.start()
    worker.join()  # interruptible: SignalStop is raised here in the main thread
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result


def set_keepalive(fd: int) -> None:
    """Turn on TCP keepalives with short timings on a connected socket; no-op on a Unix socket."""
    sock = socket.socket(fileno=fd)
    try:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in KEEPALIVE.items():
            if hasattr(socket, option):  # Linux names; other systems keep their defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    finally:
        sock.detach()  # the descriptor belongs to the client library


class MySQLLock:
    """``GET_LOCK`` on a dedicated autocommit connection."""

    #: Whether the lock can be lost while this process lives (see :mod:`entrypoint.pipeline.fence`).
    losable = True

    def __init__(
        self,
        params: dict[str, Any],
        name: str,
        description: str,
        *,
        marker: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.name = name
        self.description = description
        self.marker = marker
        self.clock = clock
        self.conn: Any = None
        self.held = False

    def connect(self) -> None:
        """Open the dedicated connection, with keepalives and no idle or statement timeout."""
        try:
            import MySQLdb
        except ImportError as exc:
            msg = (
                f"{self.description} needs the MySQL driver; install it with "
                "pip install 'django-entrypoint[mysql]'"
            )
            raise ConfigError(msg) from exc
        params = dict(self.params)
        params.setdefault("connect_timeout", 10)
        params.setdefault("read_timeout", IO_TIMEOUT)
        params.setdefault("write_timeout", IO_TIMEOUT)
        params.pop("autocommit", None)
        try:
            self.conn = connect(params)
        except MySQLdb.Error as exc:
            msg = f"cannot open the lock connection to {self.description}: {mysql_reason(exc)}"
            raise DatabaseUnavailable(msg) from exc
        self.conn.autocommit(True)
        set_keepalive(self.conn.fileno())
        for statement in _SESSION_SETTINGS:
            try:
                self._query(statement)
            except MySQLdb.Error:
                pass  # a server without the variable; autocommit keeps the session usable
        if self.marker is not None:
            self._query("SELECT GET_LOCK(%s, 0)", (self.marker,))

    def _query(self, statement: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        if self.conn is None:
            msg = "the lock connection is not open"
            raise RuntimeError(msg)
        cursor = self.conn.cursor()
        try:
            cursor.execute(statement, args or None)
            row: tuple[Any, ...] | None = cursor.fetchone()
        except Exception:
            cursor.close()
            raise
        except BaseException:
            # A signal between a query and its result leaves the protocol out of step: drop the
            # session (the server frees whatever lock it held) instead of reading on.
            self.close()
            raise
        cursor.close()
        return row

    def _get_lock(self, seconds: float) -> bool:
        import MySQLdb

        try:
            row = self._query("SELECT GET_LOCK(%s, %s)", (self.name, round(seconds, 3)))
        except MySQLdb.OperationalError as exc:
            msg = (
                f"lost the lock connection to {self.description} while waiting for the "
                f"migration lock: {mysql_reason(exc)}; check that the server runs, then start again"
            )
            raise DatabaseUnavailable(msg) from exc
        # 1: taken; 0: timed out; NULL: an error such as the session being killed.
        self.held = bool(row and row[0] == 1)
        return self.held

    def try_acquire(self) -> bool:
        """Take the lock if it is free (``GET_LOCK`` with no wait).

        True at once when a slice of :meth:`wait_for_release` already took it: named locks
        count, and a second ``GET_LOCK`` would need a second ``RELEASE_LOCK``.
        """
        if self.held:
            return True
        return self._get_lock(0)

    def holder(self) -> str | None:
        """Who holds the lock: its connection id, account, client address and idle time."""
        import MySQLdb

        try:
            used = self._query("SELECT IS_USED_LOCK(%s)", (self.name,))
            if not used or used[0] is None:
                return None
            ident = int(used[0])
            row = self._query(
                "SELECT USER, HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = %s",
                (ident,),
            )
        except MySQLdb.Error:
            return None
        if row is None:
            return f"connection {ident}"
        user, host, idle = row
        text = f"connection {ident} {user}@{host}" if host else f"connection {ident} {user}"
        pid = self._client_pid(ident)
        if pid:
            text += f" (client pid {pid})"
        return f"{text}, idle {idle}s"

    def _client_pid(self, ident: int) -> str | None:
        """The holder's process id, where performance_schema records connection attributes."""
        import MySQLdb

        try:
            row = self._query(
                "SELECT ATTR_VALUE FROM performance_schema.session_connect_attrs "
                "WHERE PROCESSLIST_ID = %s AND ATTR_NAME = '_pid'",
                (ident,),
            )
        except MySQLdb.Error:
            return None  # performance_schema is off (MariaDB's default) or not readable
        return str(row[0]) if row and row[0] else None

    def wait_for_release(self, seconds: float) -> None:
        """Wait in the server for the lock, in slices of at most :data:`SLICE` seconds.

        Returns as soon as a slice takes the lock (:meth:`try_acquire` then answers True), or
        after ``seconds``.
        """
        end = self.clock() + seconds
        while not self.held:
            left = end - self.clock()
            if left <= 0:
                return
            self._get_lock(min(left, SLICE))

    def announce(self) -> None:
        """MySQL/MariaDB have no notices: waiters poll."""

    def release(self) -> None:
        """``RELEASE_LOCK``; a waiter parked in ``GET_LOCK`` gets the lock at once."""
        if self.conn is None or not self.held:
            return
        import MySQLdb

        try:
            self._query("SELECT RELEASE_LOCK(%s)", (self.name,))
        except MySQLdb.Error:
            pass  # closing the session below releases the lock all the same
        self.held = False

    def verify(self) -> None:
        """Raise Lost unless this session still holds the lock (``IS_USED_LOCK``)."""
        import MySQLdb

        if self.conn is None:
            msg = "the lock connection is closed"
            raise Lost(msg)
        try:
            row = self._query("SELECT IS_USED_LOCK(%s) = CONNECTION_ID()", (self.name,))
        except MySQLdb.Error as exc:
            msg = f"the lock connection failed: {mysql_reason(exc)}"
            raise Lost(msg) from exc
        if not row or row[0] != 1:
            msg = "the lock session no longer holds the named lock"
            raise Lost(msg)

    def quiet(self) -> bool:
        """Nothing arrived on the lock connection (``KILL CONNECTION`` closes it)."""
        if self.conn is None:
            return False
        try:
            fd = int(self.conn.fileno())
        except Exception:  # a closed or broken client
            return False
        return not readable(fd)

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        """The live sessions of run ``run_id`` on this server, found by their markers."""
        names = [run_marker(run_id, alias, role) for role in MARKER_ROLES]
        marks = ", ".join("IS_USED_LOCK(%s)" for _ in names)
        row = self._query(f"SELECT {marks}", tuple(names))
        sessions = []
        for role, ident in zip(MARKER_ROLES, row or (), strict=False):
            if ident is None:
                continue
            described = self._describe(int(ident))
            sessions.append(
                Session(
                    int(ident),
                    f"{described} (the run's {role} connection)",
                    fix=(
                        f"end it with KILL CONNECTION {int(ident)} as its account or one with "
                        "the CONNECTION_ADMIN (MySQL) or CONNECTION ADMIN (MariaDB) privilege"
                    ),
                )
            )
        return sessions

    def _describe(self, ident: int) -> str:
        import MySQLdb

        try:
            row = self._query(
                "SELECT USER, HOST, COMMAND, TIME FROM information_schema.PROCESSLIST "
                "WHERE ID = %s",
                (ident,),
            )
        except MySQLdb.Error:
            row = None
        if row is None:
            return f"connection {ident}"
        user, host, command, seconds = row
        return f"connection {ident} {user}@{host}, {command} for {seconds}s"

    def end_session(self, session: Session) -> str | None:
        """``KILL CONNECTION``; the reason when the account may not (another account's)."""
        import MySQLdb

        try:
            self._query(f"KILL CONNECTION {int(session.ident)}")
        except MySQLdb.Error as exc:
            if exc.args and exc.args[0] == _UNKNOWN_THREAD:
                return None  # it ended meanwhile
            return mysql_reason(exc)
        return None

    def read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One read-only query on the lock connection; empty on any error."""
        import MySQLdb

        if self.conn is None:
            return []
        cursor = self.conn.cursor()
        try:
            cursor.execute(query, params or None)
            return list(cursor.fetchall())
        except MySQLdb.Error:
            return []
        finally:
            cursor.close()

    def close(self) -> None:
        """Close the dedicated connection (the lock dies with the session)."""
        if self.conn is None:
            return
        conn, self.conn, self.held = self.conn, None, False
        try:
            conn.close()
        except Exception:  # noqa: S110 - a broken connection is closed all the same
            pass
