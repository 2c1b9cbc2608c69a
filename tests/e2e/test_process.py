"""Signal capture before the exec, with real signals sent to this process."""

from __future__ import annotations

import gc
import signal
import time
from collections.abc import Callable

import pytest

from entrypoint.process import SignalStop, capture_signals


class _SignalsWhenCollected:
    """An object whose finalizer sends SIGTERM: the stop is raised inside the finalizer."""

    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)


def _captured(body: Callable[[], None], seen: list[int] | None = None) -> None:
    with capture_signals(seen.append if seen is not None else None):
        body()


def _sleep_until_stopped(seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_sigterm_raises_a_stop_and_handlers_are_restored() -> None:
    """SIGTERM inside the block raises SignalStop(15); the old handler is back after."""
    before = signal.getsignal(signal.SIGTERM)
    seen: list[int] = []

    def body() -> None:
        signal.raise_signal(signal.SIGTERM)
        _sleep_until_stopped()

    with pytest.raises(SignalStop) as stop:
        _captured(body, seen)
    assert stop.value.signum == signal.SIGTERM
    assert seen == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_swallowed_by_a_finalizer_is_delivered_again() -> None:
    """Python drops exceptions raised in finalizers; the stop is re-sent and still ends the
    block promptly, and the signal is reported once."""
    seen: list[int] = []

    def body() -> None:
        _SignalsWhenCollected()  # collected at once: SIGTERM lands inside __del__
        gc.collect()
        _sleep_until_stopped()

    started = time.monotonic()
    with pytest.raises(SignalStop):
        _captured(body, seen)
    assert time.monotonic() - started < 1.0
    assert seen == [signal.SIGTERM]


def test_a_second_signal_does_not_interrupt_the_clean_up() -> None:
    """After the first stop, further signals are ignored until the block ends."""
    cleaned: list[bool] = []

    def body() -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
            _sleep_until_stopped()
        finally:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.05)
            cleaned.append(True)

    with pytest.raises(SignalStop):
        _captured(body)
    assert cleaned == [True]
