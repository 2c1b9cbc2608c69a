"""The command line: parse, load settings, run the command, and turn every error into one line
and its exit code. The only place that prints for people (:mod:`.render`); everything else
reports through events.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from entrypoint import config
from entrypoint.cli.commands import HANDLERS
from entrypoint.cli.parser import COMMANDS, PROG, build_parser, flags_of, parse
from entrypoint.errors import EX_SIGNAL_BASE, EX_SOFTWARE, EX_USAGE, EntrypointError, Interrupted
from entrypoint.log import flush, get_logger, mask
from entrypoint.process import SignalStop


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    env = os.environ if environ is None else environ
    try:
        args = parse(list(sys.argv[1:] if argv is None else argv))
        settings = config.load(env, flags_of(args))
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


def console() -> NoReturn:
    """The console script and ``python -m entrypoint``: run :func:`main`, exit with its code.

    A run ended by a signal (128+N) leaves at once, without the interpreter's teardown: for a
    project with a large migration graph, freeing it takes longer than the promptness a SIGTERM
    is owed (Kubernetes counts its grace period). Everything that matters is done by then: the
    statement cancelled, the lock released, the run recorded, the line printed.
    """
    code = main()
    if code > EX_SIGNAL_BASE:
        flush()
        os._exit(code)
    sys.exit(code)


def _error(message: str) -> None:
    flush()
    sys.stderr.write(f"{PROG}: error: {mask(message)}\n")
    sys.stderr.flush()


__all__ = ["COMMANDS", "PROG", "build_parser", "console", "main"]
