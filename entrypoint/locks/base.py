"""The interface every migration lock implements, and the waiting loop they share.

A lock backend answers three questions: can I take the lock now (:meth:`Backend.try_acquire`,
never blocking in the database), who holds it (:meth:`Backend.holder`), and how do I wait for
its release (:meth:`Backend.wait_for_release`, which returns early when the holder signals the
release, or after the given time as the fallback for a holder that died). The loop in
:func:`acquire` adds the deadline, the jittered back-off and the periodic "still waiting" report.

The holder also announces each committed migration (:meth:`Backend.announce`) to the runs that
never migrate but wait for the migrations (``ENTRYPOINT_MIGRATE=wait``): they listen with a
backend of their own that never takes the lock (:func:`entrypoint.locks.listener`).

For fencing (:mod:`entrypoint.pipeline.fence`) a backend also answers whether this process
still holds the lock (:meth:`Backend.verify`), which sessions an earlier run still has on the
server (:meth:`Backend.run_sessions`), and ends one of them (:meth:`Backend.end_session`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from entrypoint.errors import LockTimeout
from entrypoint.light import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from typing import Any

FIRST_RETRY = 0.05
MAX_RETRY = 1.0
REPORT_EVERY = 5.0


def uniform(low: float, high: float) -> float:
    """A point drawn evenly from ``[low, high]``, for spreading retries (waiters that would
    otherwise wake together); from ``os.urandom``, which a waiter has loaded already, where
    ``random`` would be one more module to import before it parks."""
    return low + (high - low) * int.from_bytes(os.urandom(2), "big") / 0xFFFF


class Lost(Exception):
    """The lock this process took is no longer held; the text says why, when known."""


class Session(NamedTuple):
    """A server session of an earlier run: its server-side id, how to name it to people, and
    how a person ends it when this process may not."""

    ident: int
    description: str
    fix: str = ""


class Backend(Protocol):
    """A migration lock on one database."""

    description: str
    #: Whether the lock can be lost while this process lives (a session lock can; a file lock
    #: held open cannot): only then does a holder watch it.
    losable: bool
    #: Whether this process holds the lock now (a wait that takes it as it goes sets it).
    held: bool

    def connect(self) -> None:
        """Open whatever the lock needs (a dedicated connection, a lock file)."""

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never wait for it."""

    def holder(self) -> str | None:
        """Describe who holds the lock, or None when that cannot be told."""

    def wait_for_release(self, seconds: float) -> None:
        """Return when the holder announced a release, or after ``seconds``."""

    def announce(self) -> None:
        """Tell the runs waiting for migrations (``ENTRYPOINT_MIGRATE=wait``) that one was just
        committed, where the backend can (a PostgreSQL NOTIFY); never raises."""

    def release(self) -> None:
        """Release the lock and tell waiters; never raises."""

    def close(self) -> None:
        """Close what :meth:`connect` opened; never raises."""

    def verify(self) -> None:
        """Raise :class:`Lost` unless this process still holds the lock (a cheap query)."""

    def quiet(self) -> bool:
        """Whether nothing arrived on the lock connection (no round trip): a session the server
        ended, or a connection that dropped, makes it readable before any query could tell."""

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        """The sessions that run ``run_id`` still has on the server of ``alias``."""

    def end_session(self, session: Session) -> str | None:
        """End ``session``; None when it was ended, else why it could not be (privilege)."""

    def read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of one read-only query on the database the lock is on (through the lock's own
        connection where it has one); empty when it cannot be read."""


class Waiting(NamedTuple):
    """A report while waiting: who holds the lock, for how long we have waited, and what the
    holder is doing, when that can be told (``progress``)."""

    holder: str | None
    waited: float
    changed: bool
    progress: Any = None


def readable(fd: int) -> bool:
    """Whether a socket has something to read (or has been closed), without waiting."""
    import select

    try:
        ready, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(ready)


def acquire(
    backend: Backend,
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    jitter: Callable[[float, float], float] = uniform,
    on_wait: Callable[[Waiting], None] | None = None,
    report_every: float = REPORT_EVERY,
    progress: Callable[[], Any] | None = None,
    settled: Callable[[], bool] | None = None,
) -> float | None:
    """Take the lock before ``timeout`` seconds pass; return the seconds waited.

    Each report (:class:`Waiting`, every ``report_every`` seconds from the first failed try)
    names the holder and carries what ``progress()`` says of its work. ``settled``, asked each
    time the holder may have released the lock while this process does not hold it, says when
    the lock is no longer needed (the holder did the work): the wait then ends without it and
    None is returned, so that every waiter can see so at once instead of taking the lock in
    turn. Raises LockTimeout (exit 75) naming the last known holder.
    """
    start = clock()
    deadline = start + timeout
    delay = FIRST_RETRY
    last_report = None
    last_holder: str | None = None
    while True:
        if backend.try_acquire():
            return clock() - start
        now = clock()
        if last_report is None or now - last_report >= report_every or now >= deadline:
            holder = backend.holder()
            changed = last_report is not None and holder != last_holder
            last_report, last_holder = now, holder
            if on_wait is not None:
                doing = progress() if progress is not None else None
                on_wait(Waiting(holder=holder, waited=now - start, changed=changed, progress=doing))
        if now >= deadline:
            held_by = f"held by {last_holder}" if last_holder else "held by another session"
            msg = (
                f"the migration lock on {backend.description} is still {held_by} after "
                f"{timeout:g}s; let that run finish, or raise ENTRYPOINT_LOCK_TIMEOUT"
            )
            raise LockTimeout(msg)
        backend.wait_for_release(min(jitter(delay / 2, delay), max(deadline - now, 0.0)))
        if settled is not None and not backend.held and settled():
            return None
        delay = min(delay * 2, MAX_RETRY)
