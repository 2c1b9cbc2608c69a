"""One thin function per command: read its arguments, call the pipeline or the engine, hand
what comes back to :mod:`.render`, return the exit code."""

from __future__ import annotations

import sys
from collections.abc import Callable

from entrypoint.config import Settings
from entrypoint.errors import EX_CHECK_FAILED, ConfigError, Interrupted
from entrypoint.light import TYPE_CHECKING
from entrypoint.pipeline.report import Reporter, configure_logging, new_run_id

if TYPE_CHECKING:
    import argparse


def pipeline(args: argparse.Namespace, settings: Settings) -> int:
    """run, migrate, sidecar, wait and wait-migrated: the run sequence of
    :mod:`entrypoint.pipeline.run`."""
    from entrypoint.pipeline.run import Command, execute

    argv: list[str] = []
    if args.command == "run":
        argv = list(args.argv)
        if argv[:1] == ["--"]:
            argv = argv[1:]
        if not argv:
            msg = (
                "run needs the command to exec after --, e.g. "
                "django-entrypoint run -- gunicorn mysite.wsgi"
            )
            raise ConfigError(msg)
    return execute(Command(args.command), settings, argv)


def check(args: argparse.Namespace, settings: Settings) -> int:
    """check: the read-only CI gate; exit 1 with one line per problem."""
    from entrypoint.cli import render
    from entrypoint.engine.check import ADVISORY_KINDS, find_problems
    from entrypoint.pipeline.setup import read_only

    found = []
    advise = args.format == "github"
    reporter = _reporter(settings)
    if args.base:
        from entrypoint.engine.base import assumed_server, base_executor
        from entrypoint.pipeline.setup import offline

        with offline(settings, reporter) as targets:
            executor = base_executor(args.base)
            for target in targets:
                found.extend(
                    find_problems(
                        target.alias,
                        settings.phase,
                        executor=executor,
                        offline=True,
                        advise=advise,
                        server=assumed_server(target.vendor),
                    )
                )
    else:
        with read_only(settings, reporter) as targets:
            for target in targets:
                found.extend(find_problems(target.alias, settings.phase, advise=advise))
    if args.allow_unapplied:
        found = [problem for problem in found if problem.kind != "unapplied"]
    errors = [problem for problem in found if problem.kind not in ADVISORY_KINDS]
    if not advise:  # said once on standard error, which keeps stdout the check's own answer
        for problem in found:
            if problem.kind == "upstream":
                reporter.event(
                    "upstream_missing_migration",
                    level="warning",
                    database=problem.database,
                    app=problem.app,
                    reason=problem.message,
                )
    if advise:
        advice = [problem for problem in found if problem.kind in ADVISORY_KINDS]
        render.github_problems(errors, [t.alias for t in targets], advice)
    else:
        render.problems(errors, args.format, [t.alias for t in targets])
    return EX_CHECK_FAILED if errors else 0


def plan(args: argparse.Namespace, settings: Settings) -> int:
    """plan: the pending migrations with deploy phase, reasons, atomicity and reversibility."""
    from entrypoint.cli import render
    from entrypoint.engine.graph import shown_plan
    from entrypoint.pipeline.setup import read_only

    rows = []
    refused = None
    if args.base:
        from entrypoint.engine.base import assumed_server, base_executor
        from entrypoint.pipeline.setup import offline

        with offline(settings, _reporter(settings)) as targets:
            executor = base_executor(args.base)
            for target in targets:
                shown, refusal = shown_plan(
                    target.alias,
                    settings.phase,
                    executor=executor,
                    server=assumed_server(target.vendor),
                )
                rows.extend(shown)
                refused = refused or refusal
    else:
        with read_only(settings, _reporter(settings)) as targets:
            for target in targets:
                shown, refusal = shown_plan(target.alias, settings.phase)
                rows.extend(shown)
                refused = refused or refusal
    if args.format == "markdown":
        render.plan_markdown(rows, str(settings.phase))
    else:
        render.plan_rows(rows, args.format, str(settings.phase))
    if refused is not None:
        raise refused
    return 0


def history(args: argparse.Namespace, settings: Settings) -> int:
    """history: the recorded runs, newest first, on standard output; no lock, nothing written."""
    from entrypoint.audit.read import gone, read_runs
    from entrypoint.cli import render
    from entrypoint.pipeline.setup import read_only
    from entrypoint.process import SignalStop, capture_signals

    with read_only(settings, _reporter(settings)) as targets, capture_signals():
        try:
            rows = [row for t in targets for row in read_runs(t.alias, args.limit)]
            pruned = {t.alias: gone(t.alias) for t in targets}
        except SignalStop as stop:
            raise Interrupted(stop.signum, "stopped by signal while reading the history") from None
    rows.sort(key=lambda row: (row.started_at is not None, row.started_at, row.seq), reverse=True)
    render.history(rows[: args.limit], args.format, pruned)
    return 0


def rollback(args: argparse.Namespace, settings: Settings) -> int:
    """rollback: unapply what one recorded run applied, under the lock (or only plan it)."""
    from entrypoint.cli import render
    from entrypoint.pipeline.rollback import command

    done = command(settings, wanted=args.run, dry_run=args.dry_run)
    if args.dry_run:
        render.out("\n".join(done.describe()))
    elif done.unapply:
        names = ", ".join(f"{app}.{name}" for app, name in done.unapply)
        render.out(
            f"rolled back run {done.run.id} on database {done.database!r}: unapplied {names}"
        )
    else:
        render.out(f"nothing to roll back: no migration of run {done.run.id} is still applied")
    return 0


def probe(args: argparse.Namespace, settings: Settings) -> int:
    """probe: exit 0 when readiness answers 200, 1 otherwise."""
    from entrypoint.cli import render
    from entrypoint.health.probe import local_url, why_not_ready

    url = args.url
    if url is None:
        if not settings.health_port:
            msg = "probe needs --url, or the health server's ENTRYPOINT_HEALTH_PORT (it is 0)"
            raise ConfigError(msg)
        url = local_url(settings.health_addr, settings.health_port, "/readyz")
    reason = why_not_ready(url, timeout=args.timeout)
    if reason is None:
        return 0
    render.not_ready(url, reason)
    return EX_CHECK_FAILED


def freeze(args: argparse.Namespace, settings: Settings) -> int:
    """freeze: write the manifest of the migration graph (at image build time, no database)."""
    from entrypoint.engine.project import setup_django
    from entrypoint.fastpath.manifest import freeze as write

    logger = configure_logging(settings, new_run_id())
    setup_django(settings.settings_module)
    output = args.output or settings.manifest or "-"
    written = write(str(settings.settings_module), output)
    if output == "-":
        sys.stdout.write(written.text)
        sys.stdout.flush()
    logger.info("manifest_written", path=output, migrations=written.migrations, files=written.files)
    return 0


def _reporter(settings: Settings) -> Reporter:
    return Reporter(logger=configure_logging(settings, new_run_id()))


#: The function behind each command.
HANDLERS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "run": pipeline,
    "migrate": pipeline,
    "sidecar": pipeline,
    "wait": pipeline,
    "wait-migrated": pipeline,
    "check": check,
    "plan": plan,
    "history": history,
    "rollback": rollback,
    "probe": probe,
    "freeze": freeze,
}
