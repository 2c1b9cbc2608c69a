"""The command line: parse, load settings, run the command, and turn every error into one line
and its exit code. The only place that prints for people (:mod:`.render`); everything else
reports through events.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from types import SimpleNamespace

from entrypoint import config
from entrypoint.errors import EX_SIGNAL_BASE, EX_SOFTWARE, EX_USAGE, EntrypointError, Interrupted
from entrypoint.light import TYPE_CHECKING
from entrypoint.log import flush, get_logger, mask
from entrypoint.process import SignalStop

if TYPE_CHECKING:
    from typing import Any, NoReturn

#: The commands of a container's start: when one of them ends well, the process leaves without
#: the interpreter's teardown (see :func:`console`).
START_COMMANDS = frozenset({"run", "migrate", "sidecar", "wait"})
_ran: list[str] = []


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    env = os.environ if environ is None else environ
    _ran.clear()
    try:
        raw = list(sys.argv[1:] if argv is None else argv)
        args: Any = quick_parse(raw)
        flags: Mapping[str, Any] = {}
        if args is None:
            from entrypoint.cli.parser import flags_of, parse

            args = parse(raw)
            flags = flags_of(args)
        settings = config.load(env, flags)
        from entrypoint.cli.commands import HANDLERS

        _ran.append(args.command)
        return HANDLERS[args.command](args, settings)
    except EntrypointError as exc:
        _error(str(exc))
        return exc.exit_code
    except SignalStop as stop:
        interrupted = Interrupted(stop.signum)
        _error(str(interrupted))
        return interrupted.exit_code
    except SyntaxError as exc:  # a project file, most often a migration, that does not compile
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else "a project file"
        _error(f"{where} does not compile: {exc.msg}; fix it (python -m py_compile shows the same)")
        return EX_USAGE
    except Exception as exc:  # a defect: still one line, the traceback only at debug level
        get_logger().debug("internal_error", exc_info=True)
        _error(
            f"internal error: {type(exc).__name__}: {exc}; rerun with "
            "ENTRYPOINT_LOG_LEVEL=debug for the traceback and report it"
        )
        return EX_SOFTWARE


def quick_parse(argv: Sequence[str]) -> SimpleNamespace | None:
    """The command lines of a container's start, read without argparse (whose import costs a
    no-op start a tenth of its time): ``migrate``, ``sidecar`` or ``wait`` alone, and ``run --
    CMD [ARG]...``; what the parser would make of them. None for anything else, which the
    parser reads."""
    if len(argv) == 1 and argv[0] in ("migrate", "sidecar", "wait"):
        return SimpleNamespace(command=argv[0])
    if len(argv) >= 3 and argv[0] == "run" and argv[1] == "--":
        return SimpleNamespace(command="run", argv=list(argv[1:]))
    return None


def console() -> NoReturn:
    """The console script and ``python -m entrypoint``: run :func:`main`, exit with its code.

    A run ended by a signal (128+N) leaves at once, without the interpreter's teardown: for a
    project with a large migration graph, freeing it takes longer than the promptness a SIGTERM
    is owed (Kubernetes counts its grace period). So does a start command (``migrate``,
    ``sidecar``, ``wait``) that ended well: tearing down Django and its loaded modules costs a
    start some 80 ms more than the work itself on a small project, and a pod waits for it.
    Everything that matters is done by then: the statement cancelled or the migrations
    committed, the connections closed, the lock released, the run recorded, the lines flushed.
    A failure leaves the usual way, so that whatever the project hooked to the exit still runs.
    """
    code = main()
    if code > EX_SIGNAL_BASE or (code == 0 and _ran and _ran[0] in START_COMMANDS):
        flush()
        os._exit(code)
    sys.exit(code)


def _error(message: str) -> None:
    from entrypoint.cli.parser import PROG

    flush()
    sys.stderr.write(f"{PROG}: error: {mask(message)}\n")
    sys.stderr.flush()


__all__ = ["console", "main", "quick_parse"]
