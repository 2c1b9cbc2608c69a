"""The argument parser, built from the options table of :mod:`entrypoint.config`.

Every option is a global flag (before the command) and also accepted after it; a flag beats its
variable. Yes/no options are ``--flag`` / ``--no-flag``. Every ``--help`` names each flag's value
placeholder, default and variable. Errors raise :class:`~entrypoint.errors.ConfigError` (exit 64)
instead of printing usage and exiting 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

from entrypoint import __version__, config
from entrypoint.errors import ConfigError

PROG = "django-entrypoint"

#: Each command with its one-line description, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "run": "wait, lock, migrate, ready, then exec CMD (Docker ENTRYPOINT)",
    "migrate": "wait, lock, migrate, exit (initContainer, Job, deploy step)",
    "sidecar": "wait, lock, migrate, then serve health until SIGTERM (native sidecar)",
    "wait": "wait for the database(s), exit",
    "wait-migrated": "wait until the database holds every migration this code needs, exit "
    "(initContainer of pods that never migrate)",
    "check": "CI gate, read-only: exit 1 on unapplied, missing, conflicting or unsafe migrations",
    "plan": "pending migrations with deploy phase, reasons, table locks and reversibility",
    "history": "the audit trail of runs, newest first",
    "rollback": "unapply what one run applied, under the lock",
    "probe": "exit 0 when the readiness endpoint answers 200 (HEALTHCHECK without curl)",
    "freeze": "write the migration manifest of the no-op fast path (image build step)",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError (exit 64) instead of printing usage and exiting 2."""

    def error(self, message: str) -> NoReturn:
        msg = f"{message}; see '{PROG} --help'"
        raise ConfigError(msg)


def _add_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    group = parser.add_argument_group("options (each also an environment variable)")
    for option in config.OPTIONS:
        kwargs: dict[str, Any] = {"dest": option.dest, "help": option.help_text()}
        if suppress:
            kwargs["default"] = argparse.SUPPRESS
        if option.switch:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = option.metavar
            if option.dest == "databases":
                kwargs["action"] = "append"
        group.add_argument(option.flag, **kwargs)


def _positive(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        msg = f"{value!r} is not a positive whole number; use 1, 2, ..."
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: global options, then a command with its own options."""
    parser = _Parser(
        prog=PROG,
        description="Wait for the database, migrate under a lock, serve readiness, exec the app.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])

    run = command("run")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARG]...")
    command("migrate")
    command("sidecar")
    command("wait")
    command("wait-migrated")
    formats = {
        "check": ("text", "json", "github"),
        "plan": ("text", "json", "markdown"),
        "history": ("text", "json"),
    }
    check = command("check")
    check.add_argument(
        "--format",
        choices=formats["check"],
        default="text",
        help="text for people (default), json, or github (workflow annotations)",
    )
    check.add_argument(
        "--base",
        metavar="REF",
        help="count the migrations at git revision REF as applied and open no database (a pull "
        "request's check)",
    )
    check.add_argument(
        "--allow-unapplied",
        action="store_true",
        help="do not count migrations not yet applied (the gate before a release brings them)",
    )
    plan = command("plan")
    plan.add_argument(
        "--format",
        choices=formats["plan"],
        default="text",
        help="text for people (default), json, or markdown (a job summary)",
    )
    plan.add_argument(
        "--base",
        metavar="REF",
        help="count the migrations at git revision REF as applied and open no database",
    )
    history = command("history")
    history.add_argument(
        "--format",
        choices=formats["history"],
        default="text",
        help="text for people (default) or json",
    )
    history.add_argument(
        "--limit", type=_positive, default=20, metavar="N", help="show at most N runs (default: 20)"
    )
    undo = command("rollback")
    which = undo.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", action="store_true", help="the last run that applied migrations")
    which.add_argument("--run", metavar="ID", help="the run with this id (see history)")
    undo.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    probe = command("probe")
    probe.add_argument(
        "--url", metavar="URL", help="readiness URL (default: the health server's /readyz)"
    )
    probe.add_argument(
        "--timeout",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds per step: connect, send, read (default: 2)",
    )
    freeze = command("freeze")
    freeze.add_argument(
        "--output", metavar="PATH", help="where to write it (default: ENTRYPOINT_MANIFEST, else -)"
    )
    for sub in commands.choices.values():
        _add_options(sub, suppress=True)
    return parser


def _global_parser() -> argparse.ArgumentParser:
    """The global options alone: what is left after them starts with the command."""
    parser = _Parser(prog=PROG, add_help=False)
    _add_options(parser, suppress=False)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; an unknown or missing command is one line with the commands."""
    _, rest = _global_parser().parse_known_args(list(argv))
    commands = ", ".join(COMMANDS)
    if rest and not rest[0].startswith("-") and rest[0] not in COMMANDS:
        msg = f"unknown command {rest[0]!r}; use one of {commands} (see '{PROG} --help')"
        raise ConfigError(msg)
    args = build_parser().parse_args(list(argv))
    if args.command is None:
        msg = f"no command given; use one of {commands} (see '{PROG} --help')"
        raise ConfigError(msg)
    return args


def flags_of(args: argparse.Namespace) -> Mapping[str, Any]:
    """The options given on the command line, as the raw values :func:`config.load` reads
    (a yes/no flag as ``1`` or ``0``)."""
    flags: dict[str, Any] = {}
    for option in config.OPTIONS:
        value = getattr(args, option.dest, None)
        if option.switch and value is not None:
            value = "1" if value else "0"
        flags[option.dest] = value
    return flags
