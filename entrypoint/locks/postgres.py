"""PostgreSQL: a session advisory lock held by a dedicated connection.

The connection is opened only for the lock, stays in autocommit and idle (no transaction, so
no snapshot) while Django's own connection runs the migrations. The lock is only ever tried
with ``pg_try_advisory_lock``: a session parked in a blocking ``pg_advisory_lock`` would hold a
snapshot that the holder's ``CREATE INDEX CONCURRENTLY`` waits for, and the two would wait on
each other. Waiters ``LISTEN`` on a channel that the holder ``NOTIFY``s right after unlocking,
and try again on that notice or after a jittered back-off (the fallback for a holder that died).
The holder also NOTIFYs a second channel right after each migration commits
(:meth:`PostgresLock.announce`): runs that never migrate (``ENTRYPOINT_MIGRATE=wait``) LISTEN on
both and look at ``django_migrations`` again within milliseconds of the commit.

The 64-bit key is the first eight bytes of SHA-256 over ``"django-entrypoint:" + NAME``, read
as a signed big-endian integer, where NAME is ``ENTRYPOINT_LOCK_KEY`` or the database name.
Advisory locks are per database, so aliases on different databases never block each other.

Fencing: every connection a run opens carries ``django-entrypoint run=<id> ...`` as its
``application_name``, so a later holder finds the sessions of a run it found ``running`` in
``pg_stat_activity`` and ends them with ``pg_terminate_backend`` (allowed on sessions of the same
role, or with ``pg_signal_backend``). The lock connection has a ``tcp_user_timeout``: when the
server stops acknowledging (a partition), the holder's checks fail within that time, well before
the server's keepalives end the session and free the lock.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql

from entrypoint.errors import DatabaseUnavailable
from entrypoint.locks.base import Lost, Session

# Client and server keepalives: a holder whose host vanished loses its session (and so its
# lock) within about 10 + 5 * 6 = 40 seconds instead of the kernel default of two hours.
KEEPALIVE_PARAMS = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 6,
    # Milliseconds a sent packet may stay unacknowledged before the connection is dropped:
    # the holder's lock checks fail this long after a partition, a quarter of the time the
    # server's keepalives take to end the session and free the lock.
    "tcp_user_timeout": 10000,
}
# The condition on pg_locks ``l`` for one advisory key granted in this database; its two
# parameters are the key's high and low 32 bits (:func:`key_halves`).
ADVISORY_LOCK_GRANTED = """
    l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.classid::bigint = %s AND l.objid::bigint = %s
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
_SESSION_SETTINGS = (
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "6"),
    # The server's side of tcp_user_timeout: a holder that stops acknowledging (its host cut
    # off while the server was sending) loses its session after this many milliseconds, which
    # keepalives alone would leave to the kernel's retransmissions (many minutes). Twice the
    # client's, so a live holder's own checks fail first.
    ("tcp_user_timeout", "20000"),
    # A server-wide idle timeout would end the holder's idle session and free the lock
    # while a long migration still runs.
    ("idle_session_timeout", "0"),
    ("idle_in_transaction_session_timeout", "0"),
    ("statement_timeout", "0"),
)


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key derived from a lock name."""
    digest = hashlib.sha256(f"django-entrypoint:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def key_halves(key: int) -> tuple[int, int]:
    """The high and low 32 bits of an advisory key, as pg_locks shows them."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def run_pattern(run_id: str) -> str:
    """The LIKE pattern of the ``application_name`` of every connection of run ``run_id``."""
    return f"django-entrypoint run={run_id} %"


def channel_name(key: int) -> str:
    """The LISTEN/NOTIFY channel announcing releases of the lock ``key``."""
    return f"django_entrypoint_{key & 0xFFFFFFFFFFFFFFFF:016x}"


def migrated_channel(key: int) -> str:
    """The channel on which the holder of the lock ``key`` announces each committed migration
    (listened to by runs with ``ENTRYPOINT_MIGRATE=wait``)."""
    return f"{channel_name(key)}_migrated"


class PostgresLock:
    """Session advisory lock on a dedicated autocommit connection."""

    #: Whether the lock can be lost while this process lives (see :mod:`entrypoint.fence`).
    losable = True

    def __init__(
        self,
        params: dict[str, Any],
        key_name: str,
        application_name: str,
        description: str,
        *,
        hear_migrations: bool = False,
    ) -> None:
        self.params = params
        self.key_name = key_name
        self.key = lock_key(key_name)
        self.channel = channel_name(self.key)
        self.migrated = migrated_channel(self.key)
        # A listener (wait mode) hears committed migrations too; a lock waiter only releases.
        self.channels = (self.channel, self.migrated) if hear_migrations else (self.channel,)
        self.application_name = application_name[:63]
        self.description = description
        self.conn: psycopg.Connection[Any] | None = None
        self.held = False

    def connect(self) -> None:
        """Open the dedicated connection and start listening for releases."""
        params = {**self.params, **KEEPALIVE_PARAMS, "application_name": self.application_name}
        params.setdefault("connect_timeout", 10)
        try:
            self.conn = psycopg.connect(**params, autocommit=True)
        except psycopg.OperationalError as exc:
            from entrypoint.db.reasons import connect_error_reason

            reason = connect_error_reason(exc)
            msg = f"cannot open the lock connection to {self.description}: {reason}"
            raise DatabaseUnavailable(msg) from exc
        for name, value in _SESSION_SETTINGS:
            try:
                self.conn.execute("SELECT set_config(%s, %s, false)", (name, value))
            except psycopg.Error:
                pass  # an older server without the setting; autocommit keeps the session usable
        for channel in self.channels:
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))

    def _connection(self) -> psycopg.Connection[Any]:
        if self.conn is None:
            msg = "the lock connection is not open"
            raise RuntimeError(msg)
        return self.conn

    def try_acquire(self) -> bool:
        """One ``pg_try_advisory_lock``; never waits in the database."""
        try:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                .fetchone()
            )
        except psycopg.OperationalError as exc:
            raise self._lost_while_waiting(exc) from exc
        self.held = bool(row and row[0])
        return self.held

    def _lost_while_waiting(self, exc: BaseException) -> DatabaseUnavailable:
        from entrypoint.db.reasons import connect_error_reason

        msg = (
            f"lost the lock connection to {self.description} while waiting for the migration "
            f"lock: {connect_error_reason(exc)}; check that the server runs, then start again"
        )
        return DatabaseUnavailable(msg)

    def holder(self) -> str | None:
        """Who holds the lock, from pg_locks and pg_stat_activity."""
        query = f"""
            SELECT a.pid, a.application_name, host(a.client_addr),
                   round(extract(epoch FROM now() - a.backend_start))::bigint
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            WHERE {ADVISORY_LOCK_GRANTED}
        """
        try:
            row = self._connection().execute(query, key_halves(self.key)).fetchone()
        except psycopg.Error:
            return None
        if row is None:
            return None
        pid, app, addr, age = row
        where = f" from {addr}" if addr else ""
        name = f" {app!r}" if app else ""
        return f"backend pid {pid}{name}{where}, connected {age}s ago"

    def wait_for_release(self, seconds: float) -> None:
        """Wait for the holder's NOTIFY, at most ``seconds``."""
        if seconds <= 0:
            return
        try:
            for _notice in self._connection().notifies(timeout=seconds, stop_after=1):
                return
        except psycopg.OperationalError as exc:
            raise self._lost_while_waiting(exc) from exc

    def announce(self) -> None:
        """NOTIFY the listeners for migrations that one was committed (right after its commit:
        the lock connection runs in autocommit, so the notice leaves at once)."""
        if self.conn is None or self.conn.closed or not self.held:
            return
        try:
            self.conn.execute("SELECT pg_notify(%s, '')", (self.migrated,))
        except psycopg.Error:
            pass  # the listeners poll as well; the fence notices a broken connection

    def release(self) -> None:
        """Unlock, then NOTIFY the waiters so the next one starts within milliseconds."""
        if self.conn is None or self.conn.closed:
            return
        try:
            if self.held:
                self.conn.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
                self.held = False
                self.conn.execute("SELECT pg_notify(%s, '')", (self.channel,))
        except psycopg.Error:
            pass  # closing the session below releases a session lock all the same

    def verify(self) -> None:
        """Raise Lost unless this session still holds the advisory lock (one pg_locks query)."""
        conn = self.conn
        if conn is None or conn.closed:
            msg = "the lock connection is closed"
            raise Lost(msg)
        query = (
            f"SELECT count(*) FROM pg_locks l WHERE {ADVISORY_LOCK_GRANTED} "
            "AND l.pid = pg_backend_pid()"
        )
        try:
            row = conn.execute(query, key_halves(self.key)).fetchone()
        except psycopg.Error as exc:
            from entrypoint.db.reasons import connect_error_reason

            msg = f"the lock connection failed: {connect_error_reason(exc)}"
            raise Lost(msg) from exc
        if not row or not row[0]:
            msg = "the lock session no longer holds the advisory lock"
            raise Lost(msg)

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        """The sessions whose application_name names run ``run_id`` (any database)."""
        query = """
            SELECT pid, application_name, coalesce(state, ''), coalesce(host(client_addr), '')
            FROM pg_stat_activity
            WHERE application_name LIKE %s AND pid <> pg_backend_pid()
            ORDER BY pid
        """
        rows = self._connection().execute(query, (run_pattern(run_id),)).fetchall()
        sessions = []
        for pid, app, state, addr in rows:
            # Another role's session shows no state without pg_read_all_stats.
            where = (f" from {addr}" if addr else "") + (f" ({state})" if state else "")
            sessions.append(
                Session(
                    int(pid),
                    f"backend pid {pid} {app!r}{where}",
                    fix=(
                        f"end it with SELECT pg_terminate_backend({pid}) as its role or a "
                        "superuser, or GRANT pg_signal_backend to the migrating role"
                    ),
                )
            )
        return sessions

    def end_session(self, session: Session) -> str | None:
        """``pg_terminate_backend``: allowed on the same role's sessions or with
        pg_signal_backend; otherwise the reason is returned."""
        try:
            self._connection().execute("SELECT pg_terminate_backend(%s)", (session.ident,))
        except psycopg.Error as exc:
            from entrypoint.db.reasons import first_line

            return first_line(exc)
        return None

    def close(self) -> None:
        """Close the dedicated connection (a session lock dies with it)."""
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg.Error:
                pass
            self.conn = None
