"""The one lock-holding path of a run (migrate and rollback alike): take the lock, watch it
while it is held, fence earlier runs that may still be alive, and release it whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from entrypoint import locks
from entrypoint.config import Settings
from entrypoint.db.targets import Target
from entrypoint.errors import LockLost, LockTimeout
from entrypoint.health.phases import RunPhase
from entrypoint.light import TYPE_CHECKING
from entrypoint.locks.base import Backend, Session, Waiting, acquire
from entrypoint.pipeline.report import Reporter
from entrypoint.process import FenceStop

if TYPE_CHECKING:
    from entrypoint.pipeline.fence import Watchdog


class Held:
    """The migration lock of one database, held by this run.

    Plain classes here rather than dataclasses: a replica that finds the lock held imports this
    module before it parks, and ``dataclasses`` (with ``inspect``) would be most of its cost.
    """

    __slots__ = ("alias", "deadline", "lock", "report", "waited", "watchdog")

    def __init__(
        self,
        alias: str,
        lock: Backend,
        *,
        waited: float,
        watchdog: Watchdog,
        deadline: float,
        report: Callable[..., None],
    ) -> None:
        self.alias = alias
        self.lock = lock
        #: Seconds waited for the lock.
        self.waited = waited
        self.watchdog = watchdog
        #: When (on ``clock``) ENTRYPOINT_LOCK_TIMEOUT ends: the bound for fencing an earlier
        #: run.
        self.deadline = deadline
        self.report = report

    def confirm(self) -> None:
        """Raise :class:`~entrypoint.locks.base.Lost` unless the lock is still held."""
        self.watchdog.confirm()

    def glance(self) -> None:
        """Raise :class:`~entrypoint.locks.base.Lost` when the lock connection tells of a loss
        (no round trip unless something arrived on it)."""
        self.watchdog.glance()

    def fence_old(self, run_id: str) -> list[Session]:
        """End (or wait out) every session run ``run_id`` still has; return those it had."""
        from entrypoint.pipeline.fence import end_old_run

        return end_old_run(
            self.lock, run_id, self.alias, deadline=self.deadline, report=self.report
        )


class Taken:
    """A migration lock taken before Django was set up (by a light waiter, or by a start the
    fast path sent on), for :func:`holding` to take over."""

    __slots__ = ("alias", "began", "contended", "lock", "owned", "waited")

    def __init__(
        self, alias: str, lock: Backend, waited: float, began: float, contended: bool
    ) -> None:
        self.alias = alias
        self.lock = lock
        #: Seconds waited for the lock.
        self.waited = waited
        #: When (on the holding clock) the wait began.
        self.began = began
        #: Whether another session held the lock when it was first tried.
        self.contended = contended
        #: Set when :func:`holding` took it over (and with it the release).
        self.owned = False

    def drop(self, reporter: Reporter) -> None:
        """Release and close the lock unless :func:`holding` took it over; idempotent."""
        if self.owned:
            return
        self.owned = True
        _release(self.lock, self.alias, reporter)


def take(
    lock: Backend,
    alias: str,
    settings: Settings,
    reporter: Reporter,
    *,
    connect: bool = True,
    settled: Callable[[], bool] | None = None,
) -> tuple[float, bool] | None:
    """Connect ``lock`` (unless ``connect`` is False: it is connected already) and wait for it
    (the phase says so); return the seconds waited and whether another session held it at
    first, or None when ``settled()`` said, after the holder released it, that the lock is no
    longer needed.

    Every few seconds a ``lock_waiting`` event names the holder and, from its row in the audit
    trail, its progress: the migration in progress and how much of its plan is applied.
    Raises LockTimeout (75) when the lock is not had in time; the caller closes ``lock``.
    """
    from entrypoint.audit.status import PROGRESS_QUERY, progress_of

    reporter.phase(RunPhase.WAITING_FOR_LOCK, alias)
    if connect:
        lock.connect()
    contended = False

    def on_wait(waiting: Waiting) -> None:
        nonlocal contended
        contended = True
        doing = waiting.progress.fields() if waiting.progress is not None else {}
        reporter.event(
            "lock_waiting",
            database=alias,
            holder=waiting.holder,
            waited=round(waiting.waited, 3),
            **doing,
        )
        if waiting.changed:
            reporter.notify("lock_holder_change", database=alias)

    def progress() -> object:
        return progress_of(lock.read(PROGRESS_QUERY, (alias,)))

    waited = acquire(
        lock, settings.lock_timeout, on_wait=on_wait, progress=progress, settled=settled
    )
    if waited is None:
        return None
    # ``at`` (epoch seconds) lets bench/ measure the hand-off between replicas.
    reporter.event(
        "lock_acquired", database=alias, waited=round(waited, 3), at=round(time.time(), 6)
    )
    reporter.notify("lock_wait", database=alias, seconds=waited)
    return waited, contended


def _release(lock: Backend, alias: str, reporter: Reporter) -> None:
    lock.release()
    released = time.time()
    lock.close()
    reporter.event("lock_released", level="debug", database=alias, at=round(released, 6))


@contextmanager
def holding(
    target: Target,
    settings: Settings,
    run_id: str,
    reporter: Reporter,
    *,
    taken: Taken | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Held]:
    """Hold the migration lock of ``target`` for the block, watched by a :class:`Watchdog`;
    ``taken``, a lock of the same target already held, is taken over instead of waited for.

    Raises LockTimeout (75) when the lock is not had in time, or an earlier run's session
    cannot be ended in time; LockLost (75) when the lock is lost while the block runs.
    """
    from entrypoint.pipeline.fence import OldRunAlive, Watchdog

    alias = target.alias
    if taken is not None and taken.alias == alias and not taken.owned:
        taken.owned = True
        lock, began = taken.lock, taken.began
    else:
        taken = None
        lock, began = locks.configured_lock(target, settings, run_id), clock()
    try:
        if taken is not None:
            waited = taken.waited
        else:
            got = take(lock, alias, settings, reporter)
            assert got is not None  # noqa: S101 - without ``settled`` the wait ends holding it
            waited = got[0]

        def on_lost(reason: str) -> None:
            reporter.event("lock_lost", level="error", database=alias, reason=reason)
            reporter.notify("lock_lost", database=alias)

        with Watchdog(lock, on_lost=on_lost) as watchdog:
            held = Held(
                alias,
                lock,
                waited=waited,
                watchdog=watchdog,
                deadline=began + settings.lock_timeout,
                report=reporter.event,
            )
            try:
                yield held
            except FenceStop as stop:
                raise LockLost(alias, stop.reason) from None
            except OldRunAlive as exc:
                session, why = exc.sessions[0]
                msg = (
                    f"run {exc.run_id}, recorded as running on database {alias!r}, still has a "
                    f"session on the server after {settings.lock_timeout:g}s and it could not "
                    f"be ended ({why}): {session.description}; {session.fix}, or raise "
                    "ENTRYPOINT_LOCK_TIMEOUT"
                )
                raise LockTimeout(msg) from None
    finally:
        _release(lock, alias, reporter)
