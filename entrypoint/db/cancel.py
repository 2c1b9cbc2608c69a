"""Cancelling the statement in flight on MySQL/MariaDB when SIGTERM or SIGINT arrives, or the
fence finds the migration lock lost.

psycopg waits for results in Python, so a signal reaches it at once and it cancels the
statement itself. mysqlclient blocks inside the C client instead, and Python runs a signal
handler only after that call returns: a SIGTERM during a long ``ALTER TABLE`` would wait for the
whole statement. While migrating on MySQL, the C-level signal handler therefore also writes the
signal number to a socket (:func:`signal.set_wakeup_fd`); a watcher thread reading it opens a
short connection of its own and sends ``KILL QUERY`` for the migration connection. The server
stops the statement and rolls it back, the blocked call returns, and the main thread's handler
raises as on PostgreSQL.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from entrypoint.process import FENCE_SIGNAL, HANDLED

# SIGTERM and SIGINT, and the fence's signal: a lost lock cancels the statement as they do.
_STOPPING = frozenset({*(int(sig) for sig in HANDLED), FENCE_SIGNAL})


@contextmanager
def cancel_on_signal(alias: str) -> Iterator[None]:
    """Inside the block, SIGTERM/SIGINT also cancels the statement running on ``alias``.

    A no-op for backends whose driver handles signals itself, and outside the main thread
    (where no wakeup descriptor can be set).
    """
    from django.db import connections
    from django.db.backends.signals import connection_created

    wrapper = connections[alias]
    if wrapper.vendor != "mysql" or threading.current_thread() is not threading.main_thread():
        yield
        return
    from entrypoint.db.params import mysql_params

    # mysqlclient refuses a connection object used from two threads, so the server-side id of
    # the migration connection is read here, and again whenever Django reconnects.
    target = _Target()
    wrapper.ensure_connection()
    target.ident = int(wrapper.connection.thread_id())

    def on_connect(sender: Any, connection: Any, **_kwargs: Any) -> None:
        if connection.alias == alias:
            target.ident = int(connection.connection.thread_id())

    connection_created.connect(on_connect, weak=False)
    params = mysql_params(alias)
    reader, writer = socket.socketpair()
    writer.setblocking(False)  # the C signal handler must never block
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    watcher = threading.Thread(
        target=_watch, args=(reader, target, params), name="entrypoint-cancel", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        connection_created.disconnect(on_connect)
        writer.close()  # the watcher reads end-of-file and ends
        watcher.join(timeout=5)
        reader.close()


class _Target:
    """The server-side id of the connection whose statement a signal cancels."""

    ident: int | None = None


def _watch(reader: socket.socket, target: _Target, params: dict[str, Any]) -> None:
    """Wait for a stopping signal's byte; then cancel the migration connection's statement."""
    while True:
        try:
            data = reader.recv(64)
        except OSError:
            return
        if not data:
            return
        if _STOPPING.intersection(data):
            if target.ident is not None:
                kill_query(target.ident, params)
            return


def kill_query(ident: int, params: dict[str, Any]) -> bool:
    """``KILL QUERY`` the statement that connection ``ident`` is running, if any.

    Returns True when a statement was cancelled. An idle connection is left alone, so the
    rollback and the audit update that follow the signal are not cancelled in its place.
    """
    import MySQLdb

    try:
        conn = MySQLdb.connect(**{**params, "connect_timeout": 5})
    except Exception:  # the run ends anyway; the statement then ends with the session
        return False
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT COMMAND FROM information_schema.PROCESSLIST WHERE ID = %s", (ident,))
        row = cursor.fetchone()
        if row is None or row[0] != "Query":
            return False
        cursor.execute(f"KILL QUERY {ident}")
        return True
    except MySQLdb.Error:
        return False
    finally:
        conn.close()
