"""The one run sequence of DESIGN.md: wait, lock, plan, migrate, ready, then exec (``run``),
exit (``migrate``), serve health until SIGTERM (``sidecar``), or only wait (``wait``).

Every start goes through :func:`execute`. It first resolves the command to exec (``run``: a
missing or non-executable program fails at once, before anything connects), starts the health
child, then takes the no-op fast path when the manifest vouches that nothing is pending, and the
full path otherwise. "Ready" is reported here and only here, whichever path was taken.

``ENTRYPOINT_MIGRATE`` decides what ``run``, ``migrate`` and ``sidecar`` do between the wait for
the databases and ready (:class:`Mode`): lock and migrate (``auto``), wait for the migrations
this code needs without a lock (``wait``, :mod:`.migrated`, which ``wait-migrated`` always
does), or nothing (``off``).
"""

from __future__ import annotations

import enum
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from entrypoint import __version__
from entrypoint.config import Settings
from entrypoint.errors import ConfigError, EntrypointError, Interrupted
from entrypoint.log import flush
from entrypoint.pipeline.report import Reporter, configure_logging, new_run_id
from entrypoint.process import SignalStop, capture_signals, exec_command, resolve_command


class Command(enum.StrEnum):
    """The commands that run the pipeline."""

    RUN = "run"
    MIGRATE = "migrate"
    SIDECAR = "sidecar"
    WAIT = "wait"
    WAIT_MIGRATED = "wait-migrated"


class Mode(enum.StrEnum):
    """What a run does about migrations once its databases answer."""

    #: Lock, plan and migrate (``ENTRYPOINT_MIGRATE=auto``).
    MIGRATE = "auto"
    #: No lock, no DDL: wait until the database holds what this code needs (``wait``).
    AWAIT = "wait"
    #: Nothing (``ENTRYPOINT_MIGRATE=off``): ready once the databases answer.
    OFF = "off"
    #: The ``wait`` command: the databases only, no health server, no ready.
    DATABASES = "databases"

    @classmethod
    def of(cls, command: Command, settings: Settings) -> Mode:
        """The mode of ``command`` under ``ENTRYPOINT_MIGRATE``."""
        if command is Command.WAIT:
            return cls.DATABASES
        if command is Command.WAIT_MIGRATED:
            return cls.AWAIT
        return cls(settings.migrate_mode)


@dataclass(frozen=True)
class Done:
    """How far a run got before ready: migrations applied and seconds, over all databases."""

    applied: int
    seconds: float
    fast_path: bool = False
    #: Files the fast path checked (None on the full path).
    files: int | None = None


def execute(command: Command, settings: Settings, argv: Sequence[str] = ()) -> int:
    """Run the pipeline for ``command``; ``argv`` is what ``run`` execs. Returns the exit code
    (``run`` does not return when the exec succeeds)."""
    program = resolve_command(argv) if command is Command.RUN else None
    if settings.pushgateway_url and not settings.health_port:
        msg = (
            "ENTRYPOINT_PUSHGATEWAY_URL needs the metrics of the health server, which "
            "ENTRYPOINT_HEALTH_PORT=0 turns off; set a port "
            "(ENTRYPOINT_HEALTH_ADDR may be 127.0.0.1)"
        )
        raise ConfigError(msg)
    mode = Mode.of(command, settings)
    run_id = new_run_id()
    logger = configure_logging(settings, run_id)
    health = None
    if settings.health_port and mode is not Mode.DATABASES:
        from entrypoint.health.process import HealthProcess

        push = settings.pushgateway_url if command is Command.MIGRATE else None
        health = HealthProcess.start(settings.health_addr, settings.health_port, push_url=push)
    reporter = Reporter(health=health, logger=logger)

    def on_signal(signum: int) -> None:
        logger.warning("signal_received", signal=signal.Signals(signum).name)

    try:
        with capture_signals(on_signal):
            logger.info("starting", command=str(command), version=__version__, migrate=str(mode))
            if mode is Mode.OFF:
                # An explicit opt-out: said once at the start of every such run.
                logger.warning(
                    "migrations_off",
                    reason="ENTRYPOINT_MIGRATE=off: this run never migrates nor waits for "
                    "migrations; it waits for the databases, serves health and goes on",
                )
            try:
                done = _fast_path(mode, settings, reporter) or _full_path(
                    mode, settings, reporter, run_id
                )
                if done is not None:
                    reporter.ready(
                        done.applied, done.seconds, fast_path=done.fast_path, files=done.files
                    )
            except SignalStop as stop:
                raise Interrupted(stop.signum) from None
            except EntrypointError as exc:
                reporter.failed(exc)
                if health is not None and settings.failure_hold:
                    time.sleep(settings.failure_hold)  # readiness shows `failed` meanwhile
                raise
            finally:
                _close_connections()
            if command is Command.SIDECAR:
                logger.info("serving_health", port=settings.health_port)
                try:
                    while True:
                        signal.pause()
                except SignalStop:
                    logger.info("stopped")
                    return 0
        if program is not None:
            logger.info("exec", program=program)

            def before_exec() -> None:
                flush()
                if health is not None:
                    health.handoff(settings.app_health_url)

            exec_command([program, *argv[1:]], before=before_exec)
        return 0
    finally:
        if health is not None:
            outcome = health.stop()
            if outcome is not None:
                reporter.pushed(outcome)


def _full_path(mode: Mode, settings: Settings, reporter: Reporter, run_id: str) -> Done | None:
    """Django set up, the databases waited for, then each one migrated (``auto``), waited for
    until it holds what this code needs (``wait``), or nothing more (``off``, and the ``wait``
    command, which does not report ready either)."""
    from entrypoint.pipeline.setup import prepare, wait_for_databases

    migrates = mode is Mode.MIGRATE
    # Only a run that migrates needs a lock, and names itself on its connections for fencing.
    targets = prepare(settings, reporter, check_locks=migrates, run_id=run_id if migrates else None)
    reporter.run_info(settings.release)
    started = time.monotonic()
    wait_for_databases(settings, targets, reporter)
    if mode is Mode.DATABASES:
        return None
    if mode is Mode.OFF:
        return Done(0, time.monotonic() - started)
    if mode is Mode.AWAIT:
        from entrypoint.pipeline.migrated import wait_migrated

        return Done(0, wait_migrated(settings, targets, reporter, run_id))
    from entrypoint.pipeline.migrate import migrate_all

    outcome = migrate_all(settings, targets, reporter, run_id)
    applied = sum(len(items) for items in outcome.applied.values())
    return Done(applied, outcome.seconds)


def _fast_path(mode: Mode, settings: Settings, reporter: Reporter) -> Done | None:
    """Nothing to migrate (``auto``) or nothing missing (``wait``), as the manifest vouches:
    ready without importing Django (nor the migration machinery). None when the full path must
    follow; the reason was logged once (``fast_path_skipped``)."""
    if not settings.manifest or mode not in (Mode.MIGRATE, Mode.AWAIT):
        return None
    from entrypoint.fastpath.check import check

    waiting = mode is Mode.AWAIT
    started = time.monotonic()
    verdict = check(settings, waiting=waiting)
    seconds = round(time.monotonic() - started, 4)
    if not verdict.nothing_to_do:
        reporter.event(
            "fast_path_skipped",
            level="warning" if verdict.doubt else "info",
            reason=verdict.reason,
            seconds=seconds,
        )
        return None
    reporter.run_info(settings.release, django_version=verdict.django_version or "unknown")
    for alias in verdict.databases:
        if waiting:
            reporter.event("migrations_present", database=alias, needed=0, fast_path=True)
        else:
            reporter.event("nothing_to_migrate", database=alias, fast_path=True)
    return Done(0, seconds, fast_path=True, files=verdict.files)


def _close_connections() -> None:
    import sys

    if "django.db" in sys.modules:  # Django was set up on this path: close what it opened
        from entrypoint.engine.project import close_connections

        close_connections()


__all__ = ["Command", "Done", "Mode", "execute"]
