"""PostgreSQL: a session advisory lock held by a dedicated connection.

The connection is opened only for the lock, stays in autocommit and idle (no transaction, so
no snapshot) while Django's own connection runs the migrations. It speaks the protocol itself
(:mod:`entrypoint.db.wire`: a replica waiting for the lock need not import psycopg), and goes
through psycopg where that client cannot connect exactly as libpq would. The lock is only ever tried
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

from entrypoint.db.advisory import key_halves, lock_key
from entrypoint.errors import DatabaseUnavailable
from entrypoint.light import TYPE_CHECKING
from entrypoint.locks.base import Lost, Session, readable

if TYPE_CHECKING:
    from typing import Any

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


class _Failed(Exception):
    """A statement on the lock connection failed; ``broken`` when the connection did too."""

    def __init__(self, reason: str, *, broken: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.broken = broken


class _Adapter:
    """What both lock connections answer alike, of the client connection they wrap."""

    conn: Any

    @property
    def closed(self) -> bool:
        return bool(self.conn.closed)

    def fileno(self) -> int:
        return int(self.conn.fileno())


class _Wire(_Adapter):
    """The lock connection through :mod:`entrypoint.db.wire` (no psycopg to import)."""

    def __init__(self, params: dict[str, Any], conn: Any = None) -> None:
        from entrypoint.db import wire

        if conn is None:
            conn = wire.Connection(params, io_timeout=None)
            conn.connect()  # raises wire.Unsupported, wire.ConnectFailed
        else:
            conn.settle(params)
        self.conn = conn

    def run(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
        from entrypoint.db import wire

        try:
            results = self.conn.run(statements, each=len(statements) > 1)
        except wire.ConnectFailed as exc:
            raise _Failed(str(exc), broken=True) from exc
        for result in results:
            if isinstance(result, wire.ServerError):
                raise _Failed(result.message, broken=False)
        return [list(r) for r in results if not isinstance(r, wire.ServerError)]

    def settings(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        from entrypoint.db import wire

        try:
            self.conn.run(statements, each=True)  # each on its own: an old server's error is fine
        except wire.ConnectFailed as exc:
            raise _Failed(str(exc), broken=True) from exc

    def notified(self, seconds: float) -> bool:
        from entrypoint.db import wire

        try:
            return bool(self.conn.wait_notify(seconds))
        except wire.ConnectFailed as exc:
            raise _Failed(str(exc), broken=True) from exc

    def close(self) -> None:
        self.conn.close()


class _Psycopg(_Adapter):
    """The lock connection through psycopg, for what only libpq does (a conninfo URL, client
    certificates, a password file, ...)."""

    def __init__(self, params: dict[str, Any]) -> None:
        import psycopg

        from entrypoint.log import route_driver_logs

        route_driver_logs()
        try:
            self.conn = psycopg.connect(**params, autocommit=True)
        except psycopg.OperationalError as exc:
            from entrypoint.db import wire
            from entrypoint.db.reasons import connect_error_reason

            raise wire.ConnectFailed(connect_error_reason(exc)) from exc

    def run(self, statements: list[tuple[str, tuple[Any, ...]]]) -> list[list[tuple[Any, ...]]]:
        import psycopg

        results = []
        for query, args in statements:
            try:
                cursor = self.conn.execute(query, args)
                results.append(list(cursor.fetchall()) if cursor.description else [])
            except psycopg.Error as exc:
                from entrypoint.db.reasons import connect_error_reason, first_line

                broken = isinstance(exc, psycopg.OperationalError) or self.conn.closed
                reason = connect_error_reason(exc) if broken else first_line(exc)
                raise _Failed(reason, broken=broken) from exc
        return results

    def settings(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        import psycopg

        for query, args in statements:
            try:
                self.conn.execute(query, args)
            except psycopg.Error:
                pass  # an older server without the setting; autocommit keeps the session usable

    def notified(self, seconds: float) -> bool:
        import psycopg

        try:
            return any(True for _ in self.conn.notifies(timeout=seconds, stop_after=1))
        except psycopg.OperationalError as exc:
            from entrypoint.db.reasons import connect_error_reason

            raise _Failed(connect_error_reason(exc), broken=True) from exc

    def close(self) -> None:
        import psycopg

        try:
            self.conn.close()
        except psycopg.Error:
            pass


def _true(value: Any) -> bool:
    """A boolean column, as psycopg (a bool) or the protocol client (text) returns it."""
    return value is True or value in ("t", "true", 1, "1")


class PostgresLock:
    """Session advisory lock on a dedicated autocommit connection (the small protocol client,
    or psycopg where that one cannot connect as libpq would)."""

    #: Whether the lock can be lost while this process lives (see :mod:`entrypoint.pipeline.fence`).
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
        self.conn: _Wire | _Psycopg | None = None
        self.held = False

    def connect(self, adopt: Any = None) -> None:
        """Open the dedicated connection and start listening for releases. ``adopt``, an open
        protocol connection to the same database (the fast path's), is taken over instead of a
        new one: named for the run, its socket and session set as a new one's would be."""
        from entrypoint.db import wire

        params = {**self.params, **KEEPALIVE_PARAMS, "application_name": self.application_name}
        params.setdefault("connect_timeout", 10)
        named: list[tuple[str, tuple[Any, ...]]] = []
        try:
            if adopt is not None:
                self.conn = _Wire(params, adopt)
                named = [
                    ("SELECT set_config('application_name', %s, false)", (self.application_name,))
                ]
            else:
                try:
                    self.conn = _Wire(params)
                except wire.Unsupported:
                    self.conn = _Psycopg(params)
        except wire.ConnectFailed as exc:
            from entrypoint.db.reasons import connect_error_reason

            reason = connect_error_reason(exc)
            msg = f"cannot open the lock connection to {self.description}: {reason}"
            raise DatabaseUnavailable(msg) from exc
        settings = [("SELECT set_config(%s, %s, false)", pair) for pair in _SESSION_SETTINGS]
        try:
            self.conn.settings(named + settings)
            for channel in self.channels:
                self._run(f'LISTEN "{channel}"')
        except _Failed as exc:
            msg = f"cannot open the lock connection to {self.description}: {exc.reason}"
            raise DatabaseUnavailable(msg) from exc

    def _connection(self) -> _Wire | _Psycopg:
        if self.conn is None:
            msg = "the lock connection is not open"
            raise RuntimeError(msg)
        return self.conn

    def _run(self, query: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._connection().run([(query, args)])[0]

    def try_acquire(self) -> bool:
        """One ``pg_try_advisory_lock``; never waits in the database."""
        try:
            rows = self._run("SELECT pg_try_advisory_lock(%s)", (self.key,))
        except _Failed as exc:
            if not exc.broken:
                raise
            raise self._lost_while_waiting(exc) from exc
        self.held = bool(rows and _true(rows[0][0]))
        return self.held

    def _lost_while_waiting(self, exc: _Failed) -> DatabaseUnavailable:
        msg = (
            f"lost the lock connection to {self.description} while waiting for the migration "
            f"lock: {exc.reason}; check that the server runs, then start again"
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
            rows = self._run(query, key_halves(self.key))
        except (_Failed, RuntimeError):
            return None
        if not rows:
            return None
        pid, app, addr, age = rows[0]
        where = f" from {addr}" if addr else ""
        name = f" {app!r}" if app else ""
        return f"backend pid {pid}{name}{where}, connected {age}s ago"

    def wait_for_release(self, seconds: float) -> None:
        """Wait for the holder's NOTIFY, at most ``seconds``."""
        if seconds <= 0:
            return
        try:
            self._connection().notified(seconds)
        except _Failed as exc:
            raise self._lost_while_waiting(exc) from exc

    def announce(self) -> None:
        """NOTIFY the listeners for migrations that one was committed (right after its commit:
        the lock connection runs in autocommit, so the notice leaves at once)."""
        if self.conn is None or self.conn.closed or not self.held:
            return
        try:
            self._run("SELECT pg_notify(%s, '')", (self.migrated,))
        except _Failed:
            pass  # the listeners poll as well; the fence notices a broken connection

    def release(self) -> None:
        """Unlock, then NOTIFY the waiters so the next one starts within milliseconds."""
        if self.conn is None or self.conn.closed:
            return
        try:
            if self.held:
                self.held = False
                self.conn.run(
                    [
                        ("SELECT pg_advisory_unlock(%s)", (self.key,)),
                        ("SELECT pg_notify(%s, '')", (self.channel,)),
                    ]
                )
        except _Failed:
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
            rows = conn.run([(query, key_halves(self.key))])[0]
        except _Failed as exc:
            msg = f"the lock connection failed: {exc.reason}"
            raise Lost(msg) from exc
        if not rows or not int(rows[0][0] or 0):
            msg = "the lock session no longer holds the advisory lock"
            raise Lost(msg)

    def quiet(self) -> bool:
        """Nothing arrived on the lock connection: ``pg_terminate_backend``, an idle timeout or
        a server shutting down send their error before closing, a proxy closes the socket."""
        conn = self.conn
        if conn is None or conn.closed:
            return False
        try:
            return not readable(conn.fileno())
        except Exception:  # a connection closed meanwhile
            return False

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        """The sessions whose application_name names run ``run_id`` (any database)."""
        query = """
            SELECT pid, application_name, coalesce(state, ''), coalesce(host(client_addr), '')
            FROM pg_stat_activity
            WHERE application_name LIKE %s AND pid <> pg_backend_pid()
            ORDER BY pid
        """
        try:
            rows = self._run(query, (run_pattern(run_id),))
        except _Failed as exc:
            msg = f"the lock connection failed: {exc.reason}"
            raise Lost(msg) from exc
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
            self._run("SELECT pg_terminate_backend(%s)", (session.ident,))
        except _Failed as exc:
            return exc.reason
        return None

    def read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One read-only query on the lock connection (autocommit: no transaction stays open);
        empty on any error."""
        try:
            return self._run(query, params)
        except (_Failed, RuntimeError):
            return []

    def close(self) -> None:
        """Close the dedicated connection (a session lock dies with it)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
