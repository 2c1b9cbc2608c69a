"""The one lock-holding path of a run (migrate and rollback alike): take the lock, watch it
while it is held, fence earlier runs that may still be alive, and release it whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from entrypoint import locks
from entrypoint.config import Settings
from entrypoint.db.targets import Target
from entrypoint.errors import LockLost, LockTimeout
from entrypoint.health.state import RunPhase
from entrypoint.locks.base import Session
from entrypoint.pipeline.fence import OldRunAlive, Watchdog, end_old_run
from entrypoint.pipeline.report import Reporter
from entrypoint.process import FenceStop


@dataclass
class Held:
    """The migration lock of one database, held by this run."""

    alias: str
    lock: locks.Backend
    #: Seconds waited for the lock.
    waited: float
    watchdog: Watchdog
    #: When (on ``clock``) ENTRYPOINT_LOCK_TIMEOUT ends: the bound for fencing an earlier run.
    deadline: float
    report: Callable[..., None]

    def confirm(self) -> None:
        """Raise :class:`~entrypoint.locks.base.Lost` unless the lock is still held."""
        self.watchdog.confirm()

    def fence_old(self, run_id: str) -> list[Session]:
        """End (or wait out) every session run ``run_id`` still has; return those it had."""
        return end_old_run(
            self.lock, run_id, self.alias, deadline=self.deadline, report=self.report
        )


@contextmanager
def holding(
    target: Target,
    settings: Settings,
    run_id: str,
    reporter: Reporter,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[Held]:
    """Hold the migration lock of ``target`` for the block, watched by a :class:`Watchdog`.

    Raises LockTimeout (75) when the lock is not had in time, or an earlier run's session
    cannot be ended in time; LockLost (75) when the lock is lost while the block runs.
    """
    alias = target.alias
    lock = locks.configured_lock(target, settings, run_id)
    reporter.phase(RunPhase.WAITING_FOR_LOCK, alias)
    began = clock()
    lock.connect()
    try:

        def on_wait(waiting: locks.Waiting) -> None:
            reporter.event(
                "lock_waiting",
                database=alias,
                holder=waiting.holder,
                waited=round(waiting.waited, 3),
            )
            if waiting.changed:
                reporter.notify("lock_holder_change", database=alias)

        waited = locks.acquire(lock, settings.lock_timeout, on_wait=on_wait)
        # ``at`` (epoch seconds) lets bench/ measure the hand-off between replicas.
        reporter.event(
            "lock_acquired", database=alias, waited=round(waited, 3), at=round(time.time(), 6)
        )
        reporter.notify("lock_wait", database=alias, seconds=waited)

        def on_lost(reason: str) -> None:
            reporter.event("lock_lost", level="error", database=alias, reason=reason)
            reporter.notify("lock_lost", database=alias)

        with Watchdog(lock, on_lost=on_lost) as watchdog:
            held = Held(
                alias, lock, waited, watchdog, began + settings.lock_timeout, reporter.event
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
        lock.release()
        released = time.time()
        lock.close()
        reporter.event("lock_released", level="debug", database=alias, at=round(released, 6))
