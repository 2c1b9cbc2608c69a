"""Signals before the exec, and the exec itself.

Before the exec, SIGTERM and SIGINT raise :class:`SignalStop` in the main thread, and a lost
migration lock raises :class:`FenceStop` there (the fence's watchdog thread sends
:data:`FENCE_SIGNAL` to the main thread). Both derive from :class:`Stop`, a KeyboardInterrupt
on purpose: psycopg cancels the statement in flight on the server when a KeyboardInterrupt
reaches it, and Django's ``atomic`` rolls back on any exception, so an atomic migration being
applied when the stop lands is rolled back whole. Sleeps and waits end at once. The exec
restores every disposition the app server would get if started directly.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from entrypoint.errors import EX_NOEXEC, EX_NOTFOUND, ExecFailed
from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any, NoReturn

HANDLED = (signal.SIGTERM, signal.SIGINT)
#: The signal a fence's watchdog sends the main thread when the migration lock is lost: a
#: real-time signal where there are some (nothing else sends those), else SIGUSR2.
FENCE_SIGNAL: int = int(signal.SIGRTMIN) + 3 if hasattr(signal, "SIGRTMIN") else int(signal.SIGUSR2)
# Python ignores these at start-up; an exec'd program inherits "ignored", so reset them.
_PYTHON_IGNORES = tuple(
    sig for sig in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None)) if sig
)


class Stop(KeyboardInterrupt):
    """Raised in the main thread to end the run before the exec: by a signal, or by fencing."""

    signum: int

    def deliver_again(self) -> None:
        """Send the signal behind this stop once more (after a finalizer swallowed it)."""
        os.kill(os.getpid(), self.signum)


class SignalStop(Stop):
    """Raised in the main thread when SIGTERM or SIGINT arrives before the exec."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class FenceStop(Stop):
    """Raised in the main thread when the fence's watchdog found the migration lock lost."""

    def __init__(self, reason: str, again: Callable[[], None]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.signum = FENCE_SIGNAL
        self._again = again

    def deliver_again(self) -> None:
        """Raise the stop once more at the next chance (the watchdog re-arms and re-signals)."""
        self._again()


# How long after a swallowed stop the signal is delivered again (see capture_signals).
REDELIVER_AFTER = 0.02


@contextmanager
def capture_signals(on_signal: Callable[[int], None] | None = None) -> Iterator[None]:
    """Turn SIGTERM/SIGINT into SignalStop inside the block; restore the handlers after.

    Only the first signal raises; later ones are ignored so that they cannot break the
    clean-up (lock release, audit row). Python drops an exception raised while a finalizer or
    a garbage-collection callback runs (it reports it to ``sys.unraisablehook``): when that
    happens to the stop, the signal is sent again a moment later, to land in ordinary code.
    """
    stopping: list[int] = []
    reported: list[int] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stopping:
            return  # one stop is enough; a second signal must not break the clean-up
        stopping.append(signum)
        if on_signal is not None and not reported:
            reported.append(signum)
            on_signal(signum)
        raise SignalStop(signum)

    previous_hook = sys.unraisablehook

    def unraisable(info: Any) -> None:
        if isinstance(info.exc_value, Stop):
            if isinstance(info.exc_value, SignalStop):
                stopping.clear()
            import threading

            timer = threading.Timer(REDELIVER_AFTER, info.exc_value.deliver_again)
            timer.daemon = True
            timer.start()
            return
        previous_hook(info)

    previous = {sig: signal.signal(sig, handler) for sig in HANDLED}
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        sys.unraisablehook = previous_hook
        for sig, old in previous.items():
            signal.signal(sig, old)


def reset_signals() -> None:
    """Give the next program default dispositions and an empty signal mask."""
    for sig in (*HANDLED, FENCE_SIGNAL, *_PYTHON_IGNORES):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


def resolve_command(argv: Sequence[str]) -> str:
    """The program ``run`` will exec, checked before anything connects: raises ExecFailed with
    127 (not found) or 126 (not executable), the codes the exec itself would give, so a typo
    in the command fails at once instead of after the whole migration."""
    program = argv[0]
    if os.sep in program:
        path = program
        if not os.path.exists(path):
            msg = f"cannot run {program!r}: command not found; check the command after -- and PATH"
            raise ExecFailed(msg, EX_NOTFOUND)
    else:
        found = _on_path(program)
        if found is None:
            msg = f"cannot run {program!r}: command not found; check the command after -- and PATH"
            raise ExecFailed(msg, EX_NOTFOUND)
        path = found
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        msg = f"cannot run {program!r}: permission denied; make it executable (chmod +x)"
        raise ExecFailed(msg, EX_NOEXEC)
    return program


def _on_path(program: str) -> str | None:
    """The first file named ``program`` on PATH, as ``execvp`` searches it (executable or not:
    a non-executable one is what execvp reports as permission denied)."""
    found = None
    for directory in os.get_exec_path():
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate):
            if os.access(candidate, os.X_OK):
                return candidate
            found = found or candidate
    return found


def exec_command(argv: Sequence[str], before: Callable[[], None] | None = None) -> NoReturn:
    """Replace this process with ``argv``: same pid, the program's own signals and exit status.

    Raises ExecFailed with 127 (not found) or 126 (not executable) when the exec fails.
    """
    program = argv[0]
    if before is not None:
        before()
    reset_signals()
    try:
        os.execvp(program, list(argv))  # noqa: S606 - the exec is the product
    except FileNotFoundError:
        msg = f"cannot run {program!r}: command not found; check the command after -- and PATH"
        raise ExecFailed(msg, EX_NOTFOUND) from None
    except PermissionError:
        msg = f"cannot run {program!r}: permission denied; make it executable (chmod +x)"
        raise ExecFailed(msg, EX_NOEXEC) from None
    except OSError as exc:
        msg = (
            f"cannot run {program!r}: {exc.strerror}; check the command after -- "
            "(a script needs a #! line)"
        )
        raise ExecFailed(msg, EX_NOEXEC) from None
    finally:
        sys.stderr.flush()
