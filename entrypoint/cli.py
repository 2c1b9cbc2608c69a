"""The command line: parse, load settings, run, and map every error to one line and an exit code.

This is the only module that prints for people; everything else reports through events.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

from entrypoint import __version__, config, report
from entrypoint.errors import (
    EX_CHECK_FAILED,
    EX_SIGNAL_BASE,
    EX_SOFTWARE,
    EX_USAGE,
    ConfigError,
    EntrypointError,
    Interrupted,
)
from entrypoint.log import configure, flush, get_logger, mask
from entrypoint.process import SignalStop, capture_signals, exec_command

PROG = "django-entrypoint"
COMMANDS = (
    "run",
    "migrate",
    "sidecar",
    "wait",
    "check",
    "plan",
    "history",
    "rollback",
    "probe",
    "freeze",
)


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
        if option.flag in SWITCHES:
            kwargs["metavar"] = "1|0"
        group.add_argument(option.flag, **kwargs)


# Flags of yes/no options: given alone they mean yes (``--accept-interrupted``), and they still
# take an explicit value (``--accept-interrupted 0``, ``--accept-interrupted=1``).
SWITCHES = frozenset(option.flag for option in config.OPTIONS if option.parse is config.boolean)
_SWITCH_VALUES = frozenset(config.BOOLEAN_WORDS)
# Flags of the commands that take a value (the global options all do, but for the switches).
_COMMAND_VALUE_FLAGS = frozenset({"--format", "--limit", "--run", "--output", "--url", "--timeout"})


def _with_switch_values(argv: list[str]) -> list[str]:
    """argv with ``1`` after each switch given alone, so that argparse reads it as a value.

    Stops at ``--`` and at the command that ``run`` execs: what follows belongs to that command.
    """
    value_flags = {o.flag for o in config.OPTIONS if o.flag not in SWITCHES} | _COMMAND_VALUE_FLAGS
    out: list[str] = []
    command: str | None = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--" or (command == "run" and not arg.startswith("-")):
            return out + argv[i:]
        out.append(arg)
        i += 1
        if arg in SWITCHES:
            given = argv[i] if i < len(argv) else None
            if given is None or given.lower() not in _SWITCH_VALUES:
                out.append("1")
        elif arg in value_flags and i < len(argv):
            out.append(argv[i])
            i += 1
        elif command is None and arg in COMMANDS:
            command = arg
    return out


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
    commands.add_parser("sidecar", help="wait, lock, migrate, then serve health until SIGTERM")
    commands.add_parser("wait", help="wait for the database(s), exit")
    plan_parser = commands.add_parser("plan", help="pending migrations with phase and reasons")
    plan_parser.add_argument("--format", choices=("text", "json"), default="text")
    check_parser = commands.add_parser("check", help="CI gate, read-only: exit 1 on a problem")
    check_parser.add_argument("--format", choices=("text", "json"), default="text")
    check_parser.add_argument(
        "--allow-unapplied",
        action="store_true",
        help="do not count migrations not yet applied (the gate before a release brings them)",
    )
    probe_parser = commands.add_parser("probe", help="exit 0 when readiness answers 200")
    probe_parser.add_argument("--url", help="readiness URL (default: the health server's /readyz)")
    probe_parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds per step (default 2)"
    )
    freeze = commands.add_parser("freeze", help="write the migration manifest of the fast path")
    freeze.add_argument(
        "--output", metavar="PATH", help="where to write it (default: ENTRYPOINT_MANIFEST, or -)"
    )
    history = commands.add_parser("history", help="the audit trail of runs, newest first")
    history.add_argument("--format", choices=("text", "json"), default="text",
                         help="text for people (default) or json")  # fmt: skip
    history.add_argument("--limit", type=_positive, default=20, metavar="N",
                         help="show at most N runs (default 20)")  # fmt: skip
    undo = commands.add_parser("rollback", help="unapply what one run applied, under the lock")
    which = undo.add_mutually_exclusive_group(required=True)
    which.add_argument("--last", action="store_true", help="the last run that applied migrations")
    which.add_argument("--run", metavar="ID", help="the run with this id (see history)")
    undo.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
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
    print(f"{PROG}: error: {mask(message)}", file=sys.stderr, flush=True)


def _main(argv: list[str], environ: Mapping[str, str]) -> int:
    parser = build_parser()
    args = parser.parse_args(_with_switch_values(argv))
    if args.command is None:
        msg = f"no command given; use one of {', '.join(COMMANDS)} (see '{PROG} --help')"
        raise ConfigError(msg)
    flags = {option.dest: getattr(args, option.dest, None) for option in config.OPTIONS}
    settings = config.load(environ, flags)
    return HANDLERS[args.command](args, settings)


def _command_argv(args: argparse.Namespace) -> list[str]:
    command_argv = list(args.argv)
    if command_argv[:1] == ["--"]:
        command_argv = command_argv[1:]
    if not command_argv:
        msg = f"run needs the command to exec after --, e.g. {PROG} run -- gunicorn mysite.wsgi"
        raise ConfigError(msg)
    return command_argv


def _configure_logging(settings: config.Settings, run_id: str) -> Any:
    configure(
        settings.log_format,
        settings.log_level,
        context={"run": run_id, **({"release": settings.release} if settings.release else {})},
    )
    return get_logger()


def _pipeline(args: argparse.Namespace, settings: config.Settings) -> int:
    """run, migrate, sidecar and wait: the steps of DESIGN.md in order."""
    command = args.command
    command_argv = _command_argv(args) if command == "run" else []
    if settings.pushgateway_url and not settings.health_port:
        msg = (
            "ENTRYPOINT_PUSHGATEWAY_URL needs the metrics of the health server, which "
            "ENTRYPOINT_HEALTH_PORT=0 turns off; set a port "
            "(ENTRYPOINT_HEALTH_ADDR may be 127.0.0.1)"
        )
        raise ConfigError(msg)
    run_id = report.new_run_id()
    logger = _configure_logging(settings, run_id)
    health = None
    if settings.health_port and command != "wait":
        from entrypoint.health import HealthProcess

        health = HealthProcess.start(settings.health_addr, settings.health_port)
    reporter = report.Reporter(health=health, logger=logger)

    def on_signal(signum: int) -> None:
        logger.warning("signal_received", signal=signal.Signals(signum).name)

    try:
        with capture_signals(on_signal):
            logger.info("starting", command=command, version=__version__)
            try:
                # Nothing to migrate, as the manifest vouches: ready without importing Django
                # (nor the migration machinery).
                if not _fast_path(command, settings, reporter):
                    from entrypoint import runner

                    targets = runner.prepare(settings, reporter, run_id=run_id)
                    reporter.run_info(settings.release)
                    runner.wait_for_databases(settings, targets, reporter)
                    if command != "wait":
                        outcome = runner.migrate_all(settings, targets, reporter, run_id)
                        applied = sum(len(items) for items in outcome.applied.values())
                        logger.info("ready", applied=applied, seconds=round(outcome.seconds, 3))
                        reporter.phase("ready")
            except SignalStop as stop:
                raise Interrupted(stop.signum) from None
            except EntrypointError as exc:
                reporter.failed(exc)
                if health is not None and settings.failure_hold:
                    time.sleep(settings.failure_hold)  # readiness shows `failed` meanwhile
                raise
            finally:
                _close_connections()
                if command == "migrate" and settings.pushgateway_url and health is not None:
                    report.push_metrics(health, settings.pushgateway_url, logger)
            if command == "sidecar":
                logger.info("serving_health", port=settings.health_port)
                try:
                    while True:
                        signal.pause()
                except SignalStop:
                    logger.info("stopped")
                    return 0
        if command == "run":
            logger.info("exec", program=command_argv[0])

            def before_exec() -> None:
                flush()
                if health is not None:
                    health.handoff(settings.app_health_url)

            exec_command(command_argv, before=before_exec)
        return 0
    finally:
        if health is not None:
            health.stop()


def _fast_path(command: str, settings: config.Settings, reporter: report.Reporter) -> bool:
    if not settings.manifest:
        return False
    from entrypoint import manifest

    return manifest.fast_path(command, settings, reporter)


def _close_connections() -> None:
    if "django.db" in sys.modules:  # Django was set up on this path: close what it opened
        from entrypoint import runner

        runner.close_connections()


def _probe(args: argparse.Namespace, settings: config.Settings) -> int:
    """probe: exit 0 when readiness answers 200, 1 otherwise."""
    url = args.url
    if url is None:
        if not settings.health_port:
            msg = "probe needs --url, or the health server's ENTRYPOINT_HEALTH_PORT (it is 0)"
            raise ConfigError(msg)
        host = settings.health_addr
        if host in {"0.0.0.0", ""}:  # noqa: S104 - a wildcard bind is probed on loopback
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        url = f"http://{host}:{settings.health_port}/readyz"
    from entrypoint.health import probe

    return 0 if probe(url, timeout=args.timeout) else EX_CHECK_FAILED


def _freeze(args: argparse.Namespace, settings: config.Settings) -> int:
    """freeze: write the manifest of the migration graph (at image build time, no database)."""
    from entrypoint import manifest, runner

    logger = _configure_logging(settings, report.new_run_id())
    runner.setup_django(settings.settings_module)
    output = args.output or settings.manifest or "-"
    written = manifest.freeze(str(settings.settings_module), output)
    if output == "-":
        sys.stdout.write(written.text)
        sys.stdout.flush()
    logger.info("manifest_written", path=output, migrations=written.migrations,
                files=written.files)  # fmt: skip
    return 0


def _positive(value: str) -> int:
    if not value.strip().isdigit() or int(value) < 1:
        msg = f"{value!r} is not a positive whole number; use 1, 2, ..."
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def _history(args: argparse.Namespace, settings: config.Settings) -> int:
    """history: the recorded runs, newest first, on standard output; no lock, nothing written."""
    from entrypoint import audit

    with _read_only_setup(settings) as targets, capture_signals():
        try:
            rows = [row for t in targets for row in audit.read_runs(t.alias, args.limit)]
        except SignalStop as stop:
            raise Interrupted(stop.signum, "stopped by signal while reading the history") from None
    rows.sort(key=lambda row: (row.started_at is not None, row.started_at, row.seq), reverse=True)
    rows = rows[: args.limit]
    if args.format == "json":
        print(json.dumps([row.to_dict() for row in rows], indent=2))
    else:
        print("\n".join(audit.format_runs(rows)))
    return 0


def _rollback(args: argparse.Namespace, settings: config.Settings) -> int:
    """rollback: unapply what one recorded run applied, under the lock (or only plan it)."""
    from entrypoint import rollback, runner

    run_id = report.new_run_id()
    logger = _configure_logging(settings, run_id)
    reporter = report.Reporter(logger=logger)

    def on_signal(signum: int) -> None:
        logger.warning("signal_received", signal=signal.Signals(signum).name)

    with capture_signals(on_signal):
        logger.info("starting", command=args.command, version=__version__)
        try:
            targets = runner.prepare(settings, reporter, run_id=run_id)
            if len(targets) != 1:
                names = ", ".join(t.alias for t in targets)
                msg = (
                    f"rollback acts on one database at a time, and {names} are selected; "
                    "pass --database ALIAS"
                )
                raise ConfigError(msg)
            runner.wait_for_databases(settings, targets, reporter)
            plan = rollback.rollback(settings, targets[0], reporter, run_id,
                                     wanted=args.run, dry_run=args.dry_run)  # fmt: skip
        except SignalStop as stop:
            raise Interrupted(stop.signum, "stopped by signal before the rollback began") from None
        finally:
            runner.close_connections()
    if args.dry_run:
        print("\n".join(plan.describe()))
    elif plan.unapply:
        names = ", ".join(f"{app}.{name}" for app, name in plan.unapply)
        print(f"rolled back run {plan.run.id} on database {plan.database!r}: unapplied {names}")
    else:
        print(f"nothing to roll back: no migration of run {plan.run.id} is still applied")
    return 0


@contextmanager
def _read_only_setup(settings: config.Settings) -> Iterator[list[Any]]:
    """Settings, targets and a wait for the databases, for commands that only read.

    Connecting to a SQLite file that does not exist creates it: one that did not exist before
    and is still empty when the command ends is removed again, so reading leaves no trace.
    """
    from entrypoint import runner

    logger = _configure_logging(settings, report.new_run_id())
    reporter = report.Reporter(logger=logger)
    created: list[str] = []
    try:
        with capture_signals():
            try:
                targets = runner.prepare(settings, reporter, check_locks=False)
                created = [t.name for t in targets if _new_sqlite_file(t)]
                runner.wait_for_databases(settings, targets, reporter)
            except SignalStop as stop:
                raise Interrupted(stop.signum) from None
        yield targets
    finally:
        runner.close_connections()
        for path in created:
            if os.path.isfile(path) and os.path.getsize(path) == 0:
                os.remove(path)


def _new_sqlite_file(target: Any) -> bool:
    """Whether ``target`` is a SQLite database in a file that does not exist yet."""
    name = str(target.name)
    if target.vendor != "sqlite" or not name or name == ":memory:" or "mode=memory" in name:
        return False
    return not os.path.exists(name)


def _plan(args: argparse.Namespace, settings: config.Settings) -> int:
    """plan: the pending migrations with deploy phase, reasons, atomicity and reversibility."""
    from django.db import connections

    from entrypoint.migrate import split
    from entrypoint.phases import Phase, PlanCannotBeSplit

    rows: list[dict[str, Any]] = []
    refused: PlanCannotBeSplit | None = None
    with _read_only_setup(settings) as targets:
        for target in targets:
            try:
                result = split(target.alias, settings.phase, with_locks=True)
                held = {(m.app, m.name) for m in result.held}
            except PlanCannotBeSplit as exc:
                # Show the plan all the same, with what the phase would hold, then refuse (65).
                refused = refused or exc
                result = split(target.alias, "all", with_locks=True)
                held = {(m.app, m.name) for m in result.planned if m.phase is Phase.POST_DEPLOY}
            # MySQL/MariaDB commit each DDL statement: no migration runs in a transaction there.
            ddl_rolls_back = bool(connections[target.alias].features.can_rollback_ddl)
            for migration in result.planned:
                row = {**migration.to_dict(), "database": target.alias}
                row["atomic"] = row["atomic"] and ddl_rolls_back
                row["held"] = (migration.app, migration.name) in held
                rows.append(row)
    _print_plan(args, settings, rows)
    if refused is not None:
        raise refused
    return 0


def _print_plan(args: argparse.Namespace, settings: config.Settings, rows: list[Any]) -> None:
    if args.format == "json":
        print(json.dumps(rows, indent=2), flush=True)
        return
    if not rows:
        print("nothing to migrate")
    for row in rows:
        flags = ", ".join(
            word
            for word, on in (
                ("atomic" if row["atomic"] else "non-atomic", True),
                ("irreversible", not row["reversible"]),
                (f"held by ENTRYPOINT_PHASE={settings.phase}", row["held"]),
            )
            if on
        )
        print(f"{row['database']}  {row['phase']:<11}  {row['app']}.{row['name']}  ({flags})")
        for reason in row["reasons"]:
            print(f"    - {reason}")
        for lock in row["locks"]:
            print(f"    ! {lock['note']}")
    sys.stdout.flush()


def _check(args: argparse.Namespace, settings: config.Settings) -> int:
    """check: the read-only CI gate; exit 1 with one line per problem."""
    from entrypoint.checks import find_problems
    from entrypoint.phases import Policy

    policy = Policy(settings.phase)
    problems = []
    with _read_only_setup(settings) as targets:
        for target in targets:
            problems.extend(find_problems(target.alias, policy))
    if args.allow_unapplied:
        problems = [problem for problem in problems if problem.kind != "unapplied"]
    if args.format == "json":
        print(json.dumps([problem.to_dict() for problem in problems], indent=2))
    else:
        for problem in problems:
            print(f"{problem.database}: {problem.kind}: {problem.message}")
        if not problems:
            print(f"ok: no problem found on {', '.join(t.alias for t in targets)}")
    return EX_CHECK_FAILED if problems else 0


HANDLERS: dict[str, Callable[[argparse.Namespace, config.Settings], int]] = {
    "plan": _plan,
    "check": _check,
    "run": _pipeline,
    "migrate": _pipeline,
    "sidecar": _pipeline,
    "wait": _pipeline,
    "probe": _probe,
    "freeze": _freeze,
    "history": _history,
    "rollback": _rollback,
}
