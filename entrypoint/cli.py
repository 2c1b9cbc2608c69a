"""The command line: parse, load settings, run, and map every error to one line and an exit code.

This is the only module that prints for people; everything else reports through events.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from entrypoint import __version__, config, runner
from entrypoint.errors import EX_SOFTWARE, ConfigError, EntrypointError, Interrupted
from entrypoint.log import configure, flush, get_logger, mask
from entrypoint.process import SignalStop, capture_signals, exec_command

PROG = "django-entrypoint"
COMMANDS = ("run", "migrate", "wait")


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError (exit 64) instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        if "invalid choice" in message and self._subparsers is not None:
            # argparse words this differently across Python versions; keep one wording.
            given = message.split("invalid choice: ", 1)[1].split(" (", 1)[0]
            msg = f"unknown command {given}; use one of {', '.join(COMMANDS)} (see '{PROG} --help')"
        else:
            msg = f"{message}; see '{PROG} --help'"
        raise ConfigError(msg)


def _add_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    group = parser.add_argument_group("options (each also an environment variable)")
    for option in config.OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "metavar": option.env, "help": option.help}
        if suppress:
            kwargs["default"] = argparse.SUPPRESS
        if option.dest == "databases":
            kwargs["action"] = "append"
            kwargs["metavar"] = "ALIAS"
        group.add_argument(option.flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: global options, then a command with its own options."""
    parser = _Parser(
        prog=PROG,
        description="Wait for the database, migrate under a lock, serve readiness, exec the app.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser("run", help="wait, lock, migrate, ready, then exec CMD")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG]...")
    commands.add_parser("migrate", help="wait, lock, migrate, exit")
    commands.add_parser("wait", help="wait for the database(s), exit")
    for sub in commands.choices.values():
        _add_options(sub, suppress=True)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    env = os.environ if environ is None else environ
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), env)
    except EntrypointError as exc:
        _error(str(exc))
        return exc.exit_code
    except SignalStop as stop:
        interrupted = Interrupted(stop.signum)
        _error(str(interrupted))
        return interrupted.exit_code
    except Exception as exc:  # a defect: still one line, the traceback only at debug level
        get_logger().debug("internal_error", exc_info=True)
        _error(
            f"internal error: {type(exc).__name__}: {exc}; rerun with "
            "ENTRYPOINT_LOG_LEVEL=debug for the traceback and report it"
        )
        return EX_SOFTWARE


def _error(message: str) -> None:
    flush()
    print(f"{PROG}: error: {mask(message)}", file=sys.stderr, flush=True)


def _main(argv: list[str], environ: Mapping[str, str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        msg = f"no command given; use one of {', '.join(COMMANDS)} (see '{PROG} --help')"
        raise ConfigError(msg)
    flags = {option.dest: getattr(args, option.dest, None) for option in config.OPTIONS}
    settings = config.load(environ, flags)
    command_argv: list[str] = []
    if args.command == "run":
        command_argv = list(args.argv)
        if command_argv[:1] == ["--"]:
            command_argv = command_argv[1:]
        if not command_argv:
            msg = f"run needs the command to exec after --, e.g. {PROG} run -- gunicorn mysite.wsgi"
            raise ConfigError(msg)

    run_id = runner.new_run_id()
    configure(
        settings.log_format,
        settings.log_level,
        context={"run": run_id, **({"release": settings.release} if settings.release else {})},
    )
    logger = get_logger()
    reporter = runner.Reporter(logger=logger)

    def on_signal(signum: int) -> None:
        import signal

        logger.warning("signal_received", signal=signal.Signals(signum).name)

    with capture_signals(on_signal):
        logger.info("starting", command=args.command, version=__version__)
        targets = runner.prepare(settings, reporter)
        try:
            runner.wait_for_databases(settings, targets, reporter)
            if args.command != "wait":
                outcome = runner.migrate_all(settings, targets, reporter, run_id)
                applied = sum(len(items) for items in outcome.applied.values())
                logger.info("ready", applied=applied, seconds=round(outcome.seconds, 3))
                reporter.phase("ready")
        except SignalStop as stop:
            raise Interrupted(stop.signum) from None
        finally:
            runner.close_connections()
    if args.command == "run":
        logger.info("exec", program=command_argv[0])
        exec_command(command_argv, before=flush)
    return 0
