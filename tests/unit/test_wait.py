"""The database wait, driven through its seams: an injected check, sleep and clock; no
database, no process, no real sleeping."""

from __future__ import annotations

import pytest

from entrypoint.db.targets import Target
from entrypoint.db.wait import Attempt, PermanentError, TransientError, wait_for
from entrypoint.errors import DatabaseUnavailable

DB = Target(
    "default", "postgresql", "django.db.backends.postgresql", "app", "postgresql://app@db:5432/app"
)


class FakeClock:
    """A clock that moves only when the wait sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(times: int, error: type[Exception] = TransientError) -> object:
    """A check that fails ``times`` times, then succeeds; it counts its calls."""

    class Check:
        calls = 0

        def __call__(self, target: Target, remaining: float) -> None:
            Check.calls += 1
            if Check.calls <= times:
                raise error("connection refused")

    return Check()


def test_a_transient_failure_is_retried_with_growing_delays_capped_at_half_a_second() -> None:
    """Refusals are retried with exponential back-off from 50 ms, never more than 0.5 s apart,
    and the wait returns the seconds it took."""
    clock = FakeClock()
    check = failing(6)
    retries: list[Attempt] = []
    waited = wait_for(
        [DB], 60, check=check, sleep=clock.sleep, clock=clock, on_retry=retries.append
    )
    assert clock.slept == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert waited == {"default": pytest.approx(sum(clock.slept))}
    assert [a.number for a in retries] == [1, 2, 3, 4, 5, 6]
    assert retries[0].error == "connection refused"


def test_a_permanent_failure_ends_the_wait_at_once() -> None:
    """A wrong password is not waited for: one attempt, no sleep, exit 69 naming the database."""
    clock = FakeClock()
    with pytest.raises(DatabaseUnavailable) as raised:
        wait_for([DB], 60, check=failing(1, PermanentError), sleep=clock.sleep, clock=clock)
    assert clock.slept == []
    assert str(raised.value) == (
        "database 'default' (postgresql://app@db:5432/app): connection refused"
    )
    assert raised.value.exit_code == 69


def test_the_deadline_ends_the_wait_with_the_attempts_counted() -> None:
    """A database that never comes is given up on when the next attempt would start past the
    deadline; the message says how long, how many attempts and what to check."""
    clock = FakeClock()
    with pytest.raises(DatabaseUnavailable) as raised:
        wait_for([DB], 2, check=failing(10_000), sleep=clock.sleep, clock=clock)
    assert sum(clock.slept) <= 2
    attempts = len(clock.slept) + 1
    assert str(raised.value) == (
        f"database 'default' (postgresql://app@db:5432/app) was not reachable within 2s "
        f"({attempts} attempts): connection refused; check that the server runs and HOST/PORT "
        "in settings.DATABASES['default'], or raise ENTRYPOINT_WAIT_TIMEOUT"
    )


def test_one_deadline_covers_every_database() -> None:
    """Two databases share the one deadline: time spent on the first is not given again to
    the second."""
    clock = FakeClock()
    other = Target("other", "postgresql", "django.db.backends.postgresql", "o", "postgresql://o")
    calls: list[str] = []

    def check(target: Target, remaining: float) -> None:
        calls.append(f"{target.alias} {remaining:g}")
        if target.alias == "default" and len(calls) < 3:
            raise TransientError("not yet")

    waited = wait_for([DB, other], 10, check=check, sleep=clock.sleep, clock=clock)
    assert calls == ["default 10", "default 9.95", "default 9.85", "other 9.85"]
    assert waited == {"default": pytest.approx(0.15), "other": 0.0}
