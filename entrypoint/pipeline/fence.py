"""Fencing: a holder that loses the migration lock stops, and a new holder never migrates beside
an earlier run that still has a session on the server.

A session lock (a PostgreSQL advisory lock, a MySQL ``GET_LOCK``) lives as long as its
connection, and a connection can end while its process lives on: an idle-session reaper, a DBA's
``pg_terminate_backend``, a proxy restart, a network blip on that one socket. Two things keep the
promise of exactly-once then:

* the holder's :class:`Watchdog` checks the lock every :data:`CHECK_EVERY` seconds from a thread
  and, when it is lost, sends :data:`~entrypoint.process.FENCE_SIGNAL` to the main thread, whose
  handler raises :class:`~entrypoint.process.FenceStop` there: the statement in flight is
  cancelled as SIGTERM cancels it, the atomic migration rolls back, and no further migration
  starts. The engine also calls :meth:`Watchdog.confirm` before each migration starts and before
  each is recorded in ``django_migrations`` (inside its transaction when it has one), and
  :meth:`Watchdog.glance` before each statement: a look at the lock connection that costs no
  round trip (the end of a session, a dropped connection, arrive there before anything else
  can tell) and checks in full when anything arrived;
* a new holder that finds a run ``running`` ends that run's sessions on the server
  (:func:`end_old_run`), or waits until they are gone, before it reaps the row and migrates.

The SQLite file lock cannot be lost while its process lives, and with ``ENTRYPOINT_LOCK=off``
there is nothing to check: both backends answer every check at once.
"""

from __future__ import annotations

import contextvars
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from entrypoint.locks.base import Backend, Lost, Session
from entrypoint.process import FENCE_SIGNAL, FenceStop

#: Seconds between two checks of the lock by the watchdog: a loss is noticed within this (plus
#: one query), and within the connection's I/O timeout when the server stops answering.
CHECK_EVERY = 0.2
# How often a new holder looks again for an earlier run's sessions it could not end.
_POLL_FIRST = 0.05
_POLL_MAX = 1.0
_REPORT_EVERY = 5.0


class Watchdog:
    """Checks from a thread that this process still holds ``lock``; stops the main thread when
    it does not.

    Use as a context manager in the main thread right after the lock is taken. The lock
    backend's connection is shared between the watchdog thread and :meth:`confirm` (called by
    the engine in the main thread), one at a time.
    """

    def __init__(
        self,
        lock: Backend,
        *,
        interval: float = CHECK_EVERY,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.lock = lock
        self.interval = interval
        self.on_lost = on_lost
        #: Why the lock was lost, once it was.
        self.lost: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._armed = False
        self._raised = False
        self._previous: Any = None

    def __enter__(self) -> Watchdog:
        """Start watching (in the main thread)."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop watching; a late loss no longer interrupts the clean-up."""
        self.stop()

    def start(self) -> None:
        """Install the stop handler and start the watchdog thread (none for a lock that
        cannot be lost)."""
        if not self.lock.losable:
            return
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            self._previous = signal.signal(FENCE_SIGNAL, self._on_signal)
        self._armed = in_main
        # The thread logs with the run's context (structlog keeps it in context variables).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._watch,), name="entrypoint-fence", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and put the signal's previous disposition back."""
        self._armed = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
            self._thread = None
        if self._previous is not None:
            signal.signal(FENCE_SIGNAL, self._previous)
            self._previous = None

    def confirm(self) -> None:
        """Raise :class:`Lost` unless the lock is still held (one query on its connection)."""
        if self.lost is not None:
            raise Lost(self.lost)
        with self._mutex:
            try:
                self.lock.verify()
            except Lost as exc:
                self._lose(str(exc))
                raise

    def glance(self) -> None:
        """Raise :class:`Lost` when the lock is known lost; otherwise look at the lock
        connection without a round trip and, only when something arrived there (a session the
        server ended says so on it, a dropped connection reads as closed), check in full."""
        if self.lost is not None:
            raise Lost(self.lost)
        if self.lock.quiet():
            return
        self.confirm()

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.confirm()
            except Lost:
                self._deliver()
                return
            except Exception as exc:  # a defect in a check must not pass for a held lock
                self._lose(f"the lock check failed: {type(exc).__name__}: {exc}")
                self._deliver()
                return

    def _lose(self, reason: str) -> None:
        if self.lost is None:
            self.lost = reason
            if self.on_lost is not None:
                self.on_lost(reason)

    def _deliver(self) -> None:
        if self._armed:
            signal.pthread_kill(threading.main_thread().ident or 0, FENCE_SIGNAL)

    def _again(self) -> None:
        # A finalizer swallowed the stop: raise it once more at the next chance.
        self._raised = False
        self._deliver()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._raised or self.lost is None or not self._armed:
            return
        self._raised = True
        raise FenceStop(self.lost, self._again)


def end_old_run(
    lock: Backend,
    run_id: str,
    alias: str,
    *,
    deadline: float,
    report: Callable[..., None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Session]:
    """Make sure run ``run_id`` has no session left on the server of ``alias``; return the
    sessions it had.

    Each session found is ended; one that cannot be (another role's, without the privilege) is
    waited for, named in an ``old_run_waiting`` event every few seconds. Raises
    :class:`OldRunAlive` when one is still there at ``deadline``.
    """
    found: dict[int, Session] = {}
    delay = _POLL_FIRST
    last_report: float | None = None
    while True:
        sessions = lock.run_sessions(run_id, alias)
        if not sessions:
            return list(found.values())
        refused: list[tuple[Session, str]] = []
        for session in sessions:
            if session.ident not in found:
                found[session.ident] = session
            why = lock.end_session(session)
            if why is None:
                report(
                    "old_run_session_ended",
                    level="warning",
                    database=alias,
                    old_run=run_id,
                    session=session.description,
                )
            else:
                refused.append((session, why))
        now = clock()
        if refused and (last_report is None or now - last_report >= _REPORT_EVERY):
            last_report = now
            session, why = refused[0]
            report(
                "old_run_waiting",
                level="warning",
                database=alias,
                old_run=run_id,
                session=session.description,
                reason=why,
            )
        if now >= deadline:
            raise OldRunAlive(run_id, alias, refused or [(s, "it did not end") for s in sessions])
        sleep(min(delay, max(deadline - now, 0.0)))
        delay = min(delay * 2, _POLL_MAX)


class OldRunAlive(Exception):
    """An earlier run still has sessions on the server and they could not be ended in time;
    ``sessions`` pairs each with why it could not be ended."""

    def __init__(self, run_id: str, alias: str, sessions: list[tuple[Session, str]]) -> None:
        super().__init__(run_id)
        self.run_id = run_id
        self.alias = alias
        self.sessions = sessions
