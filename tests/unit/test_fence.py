"""Fencing, driven through its seams: a fake lock that can be lost, the watchdog's real thread
and real signal to this (main) thread, and the new holder's loop with an injected clock and
sleep. No database, no process."""

from __future__ import annotations

import threading
import time

import pytest

from entrypoint.locks.base import Lost, Session
from entrypoint.pipeline.fence import OldRunAlive, Watchdog, end_old_run
from entrypoint.process import FenceStop


class LosableLock:
    """A lock whose session can be ended from outside (``lose``)."""

    description = "database 'default'"
    losable = True

    def __init__(self) -> None:
        self.lost = threading.Event()
        self.checks = 0

    def lose(self) -> None:
        self.lost.set()

    def verify(self) -> None:
        self.checks += 1
        if self.lost.is_set():
            msg = "the lock connection failed: terminating connection due to administrator command"
            raise Lost(msg)

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        return []

    def end_session(self, session: Session) -> str | None:
        return None


class FileLike(LosableLock):
    """A lock that cannot be lost while its process lives (SQLite's file lock)."""

    losable = False


def test_a_lost_lock_stops_the_main_thread_within_the_check_interval() -> None:
    """The watchdog thread finds the lock lost and raises FenceStop in the main thread, even
    while it sleeps, with the reason; on_lost hears of it once."""
    lock = LosableLock()
    heard: list[str] = []
    lost_at = time.monotonic()

    def lose_soon() -> None:
        threading.Timer(0.05, lock.lose).start()
        time.sleep(5)

    with pytest.raises(FenceStop) as raised, Watchdog(lock, interval=0.01, on_lost=heard.append):
        lose_soon()
    assert time.monotonic() - lost_at < 1.0
    assert raised.value.reason.endswith("terminating connection due to administrator command")
    assert heard == [raised.value.reason]


def test_confirm_answers_for_a_held_lock_and_raises_for_a_lost_one() -> None:
    """The engine's check before a migration and before its record: silent while the lock is
    held; Lost with the reason once it is not (and every time after)."""
    lock = LosableLock()
    watchdog = Watchdog(lock, interval=3600)
    watchdog.confirm()
    lock.lose()
    with pytest.raises(Lost, match="administrator command"):
        watchdog.confirm()
    lock.lost.clear()
    with pytest.raises(Lost):
        watchdog.confirm()  # once lost, lost: the lock may belong to another run by now
    assert watchdog.lost is not None


def test_a_lock_that_cannot_be_lost_is_not_watched() -> None:
    """No thread checks a file lock: it cannot be lost while the file stays open."""
    lock = FileLike()
    before = threading.active_count()
    with Watchdog(lock, interval=0.01):
        time.sleep(0.05)
        assert threading.active_count() == before
    assert lock.checks == 0


def test_after_the_block_a_late_loss_no_longer_interrupts() -> None:
    """Once the holding block is over (the lock about to be released), a loss found by a last
    check does not raise in the clean-up."""
    lock = LosableLock()
    with Watchdog(lock, interval=0.01):
        pass
    lock.lose()
    time.sleep(0.05)  # no FenceStop arrives


class OldSessions:
    """An earlier run's sessions: ``refuse`` of them cannot be ended by this role."""

    description = "database 'default'"
    losable = True

    def __init__(self, count: int, refuse: int = 0, gone_after: int | None = None) -> None:
        self.alive = [
            Session(100 + n, f"backend pid {100 + n}", fix="end it") for n in range(count)
        ]
        self.refuse = {s.ident for s in self.alive[:refuse]}
        self.gone_after = gone_after
        self.looks = 0

    def verify(self) -> None:
        """Held."""

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        self.looks += 1
        if self.gone_after is not None and self.looks > self.gone_after:
            self.alive = []
        return list(self.alive)

    def end_session(self, session: Session) -> str | None:
        if session.ident in self.refuse:
            return "must be a member of the role whose process is being terminated"
        self.alive.remove(session)
        return None


class Clock:
    """Moves only when slept."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_sessions_of_an_old_run_are_ended_before_it_is_reaped() -> None:
    """Every session the old run still has is ended and reported; the new holder goes on once
    none is left."""
    lock = OldSessions(2)
    events: list[tuple[str, dict[str, object]]] = []
    clock = Clock()
    ended = end_old_run(
        lock,
        "old",
        "default",
        deadline=60,
        report=lambda n, **f: events.append((n, f)),
        clock=clock,
        sleep=clock.sleep,
    )
    assert [s.ident for s in ended] == [100, 101]
    assert [name for name, _ in events] == ["old_run_session_ended", "old_run_session_ended"]
    assert lock.alive == []


def test_a_session_this_role_may_not_end_is_waited_for_and_named() -> None:
    """A refused session is waited out, reported every few seconds with the reason, and the
    new holder goes on when it ends by itself."""
    lock = OldSessions(1, refuse=1, gone_after=40)
    events: list[tuple[str, dict[str, object]]] = []
    clock = Clock()
    end_old_run(
        lock,
        "old",
        "default",
        deadline=600,
        report=lambda n, **f: events.append((n, f)),
        clock=clock,
        sleep=clock.sleep,
    )
    waits = [fields for name, fields in events if name == "old_run_waiting"]
    assert waits[0]["session"] == "backend pid 100"
    assert "member of the role" in str(waits[0]["reason"])
    assert 1 < len(waits) <= clock.now / 5 + 1


def test_a_session_that_outlives_the_deadline_raises_with_it() -> None:
    """At the deadline the refused session is handed back with why it could not be ended."""
    lock = OldSessions(1, refuse=1)
    clock = Clock()
    with pytest.raises(OldRunAlive) as raised:
        end_old_run(
            lock,
            "old",
            "default",
            deadline=3,
            report=lambda *a, **f: None,
            clock=clock,
            sleep=clock.sleep,
        )
    [(session, why)] = raised.value.sessions
    assert (session.ident, raised.value.run_id) == (100, "old")
    assert "member of the role" in why
    assert clock.now == pytest.approx(3)
