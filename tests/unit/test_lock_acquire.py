"""The lock's shared acquire loop, driven through its seams: a fake backend, an injected clock
and jitter; no database, no real sleeping."""

from __future__ import annotations

import itertools

import pytest

from entrypoint.errors import LockTimeout
from entrypoint.locks.base import FIRST_RETRY, MAX_RETRY, Session, Waiting, acquire


class FakeBackend:
    """A lock that is free after ``busy`` tries; waiting moves the fake clock."""

    description = "database 'default' (postgresql://db/app)"
    losable = True

    def __init__(self, busy: int, holder: str | None = "backend pid 42") -> None:
        self.busy = busy
        self.tries = 0
        self.now = 0.0
        self.waits: list[float] = []
        self._holder = holder

    def clock(self) -> float:
        return self.now

    def connect(self) -> None:
        """Nothing to open."""

    def try_acquire(self) -> bool:
        self.tries += 1
        return self.tries > self.busy

    def holder(self) -> str | None:
        return self._holder

    def wait_for_release(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def release(self) -> None:
        """Nothing to release."""

    def close(self) -> None:
        """Nothing to close."""

    def verify(self) -> None:
        """Always held."""

    def run_sessions(self, run_id: str, alias: str) -> list[Session]:
        return []

    def end_session(self, session: Session) -> str | None:
        return None


def upper(low: float, high: float) -> float:
    """Jitter that always picks the top of the range."""
    return high


def test_a_free_lock_is_taken_at_once_without_waiting() -> None:
    """No wait, no report, zero seconds."""
    backend = FakeBackend(busy=0)
    reports: list[Waiting] = []
    assert acquire(backend, 900, clock=backend.clock, jitter=upper, on_wait=reports.append) == 0
    assert (backend.waits, reports) == ([], [])


def test_the_back_off_doubles_up_to_a_second_with_jitter() -> None:
    """Each wait for the release is jittered within the current delay, which doubles from
    FIRST_RETRY up to MAX_RETRY."""
    backend = FakeBackend(busy=7)
    waited = acquire(backend, 900, clock=backend.clock, jitter=upper)
    assert backend.waits == [FIRST_RETRY * 2**n for n in range(5)] + [MAX_RETRY, MAX_RETRY]
    assert waited == pytest.approx(sum(backend.waits))


def test_the_holder_is_reported_at_once_then_every_few_seconds() -> None:
    """A waiter says who holds the lock when it starts waiting and every report_every seconds,
    noting when the holder changed."""
    backend = FakeBackend(busy=20)
    reports: list[Waiting] = []
    acquire(
        backend, 900, clock=backend.clock, jitter=upper, on_wait=reports.append, report_every=3.0
    )
    assert reports[0] == Waiting(holder="backend pid 42", waited=0.0, changed=False)
    gaps = [b.waited - a.waited for a, b in itertools.pairwise(reports)]
    assert all(gap >= 3.0 for gap in gaps)
    assert len(reports) == 1 + int(backend.now // 3.0)


def test_the_deadline_names_the_holder() -> None:
    """Past ENTRYPOINT_LOCK_TIMEOUT the wait ends with 75 naming the last holder seen."""
    backend = FakeBackend(busy=10_000)
    with pytest.raises(LockTimeout) as raised:
        acquire(backend, 5, clock=backend.clock, jitter=upper)
    assert str(raised.value) == (
        "the migration lock on database 'default' (postgresql://db/app) is still held by "
        "backend pid 42 after 5s; let that run finish, or raise ENTRYPOINT_LOCK_TIMEOUT"
    )
    assert raised.value.exit_code == 75
    assert backend.now == pytest.approx(5)


def test_an_unknown_holder_is_worded_as_another_session() -> None:
    """When the holder cannot be told, the message says so."""
    backend = FakeBackend(busy=10_000, holder=None)
    with pytest.raises(LockTimeout, match="is still held by another session after 1s"):
        acquire(backend, 1, clock=backend.clock, jitter=upper)


def test_a_wait_ends_without_the_lock_once_it_is_no_longer_needed() -> None:
    """``settled`` is asked after each wait for the release while the lock is not held; once it
    says the work is done (the holder migrated everything), the wait ends without taking the
    lock and without another try."""
    backend = FakeBackend(busy=10)
    backend.held = False  # type: ignore[attr-defined]
    asked: list[float] = []

    def settled() -> bool:
        asked.append(backend.now)
        return len(asked) == 2

    result = acquire(backend, 60, clock=backend.clock, jitter=upper, settled=settled)
    assert result is None
    assert backend.tries == 2
    assert len(asked) == 2


def test_a_wait_that_is_still_needed_goes_on_to_take_the_lock() -> None:
    """Work is left when the holder releases: the next try takes the lock as usual."""
    backend = FakeBackend(busy=2)
    backend.held = False  # type: ignore[attr-defined]
    waited = acquire(backend, 60, clock=backend.clock, jitter=upper, settled=lambda: False)
    assert waited is not None
    assert backend.tries == 3
