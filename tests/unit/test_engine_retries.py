"""The DDL lock timeout retries, driven through their seam: an injected sleep; no database."""

from __future__ import annotations

import pytest

from entrypoint.engine import events
from entrypoint.engine.apply import RETRY_MAX_DELAY, Progress, with_retries
from entrypoint.errors import MigrationFailed


def attempts(failures: list[MigrationFailed], state: Progress) -> object:
    """An apply that raises each of ``failures`` in turn, then succeeds."""
    left = list(failures)

    def attempt() -> None:
        if left:
            state.failed = ("shop", "0002_index")
            raise left.pop(0)

    return attempt


def timeout() -> MigrationFailed:
    """A migration that hit the DDL lock timeout."""
    return MigrationFailed("migration shop.0002_index failed: lock timeout", lock_timeout=True)


def test_a_lock_timeout_that_left_nothing_is_retried_with_back_off() -> None:
    """Three timeouts, then success: slept 0.5, 1, 2 s, each retry reported first."""
    state = Progress()
    slept: list[float] = []
    seen: list[events.Event] = []
    with_retries(
        attempts([timeout()] * 3, state),
        "default",
        state,
        seen.append,
        retries=5,
        sleep=slept.append,
    )
    assert slept == [0.5, 1.0, 2.0]
    assert seen == [
        events.Retried("default", "shop", "0002_index", attempt=n, retries=5, delay=d)
        for n, d in ((1, 0.5), (2, 1.0), (3, 2.0))
    ]


def test_the_back_off_is_capped() -> None:
    """Delays double but never pass RETRY_MAX_DELAY."""
    state = Progress()
    slept: list[float] = []
    with_retries(
        attempts([timeout()] * 8, state),
        "default",
        state,
        lambda e: None,
        retries=8,
        sleep=slept.append,
    )
    assert max(slept) == RETRY_MAX_DELAY
    assert slept[-3:] == [RETRY_MAX_DELAY] * 3


def test_retries_run_out_and_the_last_failure_is_raised() -> None:
    """After ``retries`` retries the failure stands."""
    state = Progress()
    slept: list[float] = []
    with pytest.raises(MigrationFailed, match="lock timeout"):
        with_retries(
            attempts([timeout()] * 5, state),
            "default",
            state,
            lambda e: None,
            retries=2,
            sleep=slept.append,
        )
    assert slept == [0.5, 1.0]


def test_a_failure_that_may_have_left_something_is_not_retried() -> None:
    """A timeout after a non-atomic migration changed something, or any other failure, is
    raised at once."""
    state = Progress()
    state.failed_atomic = False
    slept: list[float] = []
    with pytest.raises(MigrationFailed):
        with_retries(
            attempts([timeout()], state),
            "default",
            state,
            lambda e: None,
            retries=3,
            sleep=slept.append,
        )
    other = Progress()
    with pytest.raises(MigrationFailed):
        with_retries(
            attempts([MigrationFailed("syntax error")], other),
            "default",
            other,
            lambda e: None,
            retries=3,
            sleep=slept.append,
        )
    assert slept == []
