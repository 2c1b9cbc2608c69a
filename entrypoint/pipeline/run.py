"""The one run sequence of DESIGN.md: wait, lock, plan, migrate, ready, then exec (``run``),
exit (``migrate``), serve health until SIGTERM (``sidecar``), or only wait (``wait``).

Every start goes through :func:`execute`. It first resolves the command to exec (``run``: a
missing or non-executable program fails at once, before anything connects), starts the health
child, then takes the no-op fast path when a manifest vouches that nothing is pending; else a
run that migrates takes the first database's lock before setting Django up (a replica that finds
it held waits there, light, and may find the work done), and the full path follows. "Ready" is
reported here and only here, whichever path was taken.

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

from entrypoint import __version__
from entrypoint.config import Settings
from entrypoint.errors import ConfigError, EntrypointError, Interrupted
from entrypoint.light import TYPE_CHECKING, NamedTuple
from entrypoint.log import flush
from entrypoint.pipeline.report import Reporter, configure_logging, new_run_id
from entrypoint.process import SignalStop, capture_signals, exec_command, resolve_command

if TYPE_CHECKING:
    from typing import Any

    from entrypoint.fastpath.verdict import Verdict
    from entrypoint.pipeline.holding import Taken


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


class Done(NamedTuple):
    """How far a run got before ready: migrations applied and seconds, over all databases."""

    applied: int
    seconds: float
    fast_path: bool = False
    #: Files the fast path checked (None on the full path).
    files: int | None = None
    #: Where the fast path's manifest came from: ``file`` (freeze) or ``database``.
    manifest: str | None = None


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
            taken = None
            try:
                done, taken = _fast_path(mode, settings, reporter, run_id)
                if done is None:
                    done = _full_path(mode, settings, reporter, run_id, taken)
                if done is not None:
                    reporter.ready(
                        done.applied,
                        done.seconds,
                        fast_path=done.fast_path,
                        files=done.files,
                        manifest=done.manifest,
                    )
            except SignalStop as stop:
                raise Interrupted(stop.signum) from None
            except EntrypointError as exc:
                reporter.failed(exc)
                if health is not None and settings.failure_hold:
                    time.sleep(settings.failure_hold)  # readiness shows `failed` meanwhile
                raise
            finally:
                if taken is not None:
                    taken.drop(reporter)
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


def _full_path(
    mode: Mode,
    settings: Settings,
    reporter: Reporter,
    run_id: str,
    taken: Taken | None = None,
) -> Done | None:
    """Django set up, the databases waited for, then each one migrated (``auto``), waited for
    until it holds what this code needs (``wait``), or nothing more (``off``, and the ``wait``
    command, which does not report ready either). ``taken``, the first database's lock when the
    fast path took it already, is held on."""
    from entrypoint.pipeline.setup import prepare, wait_for_databases

    migrates = mode is Mode.MIGRATE
    # Only a run that migrates needs a lock, and names itself on its connections for fencing.
    targets = prepare(settings, reporter, check_locks=migrates, run_id=run_id if migrates else None)
    reporter.run_info(settings.release)
    started = time.monotonic()
    answered = frozenset({taken.alias}) if taken is not None else frozenset()
    wait_for_databases(settings, targets, reporter, answered=answered)
    if mode is Mode.DATABASES:
        return None
    if mode is Mode.OFF:
        return Done(0, time.monotonic() - started)
    if mode is Mode.AWAIT:
        from entrypoint.pipeline.migrated import wait_migrated

        return Done(0, wait_migrated(settings, targets, reporter, run_id))
    from entrypoint.pipeline.migrate import migrate_all

    outcome = migrate_all(settings, targets, reporter, run_id, taken=taken)
    applied = sum(len(items) for items in outcome.applied.values())
    return Done(applied, outcome.seconds)


def _fast_path(
    mode: Mode, settings: Settings, reporter: Reporter, run_id: str
) -> tuple[Done | None, Taken | None]:
    """Nothing to migrate (``auto``) or nothing missing (``wait``), as a manifest vouches (the
    file ``freeze`` wrote, else one a run recorded in the database): ready without importing
    Django (nor the migration machinery).

    Otherwise (the reason logged once, ``fast_path_skipped``) a run that migrates takes the
    first database's migration lock before Django is set up, with only the lock connection
    open: a replica that finds it held waits light. Each time the holder may have released it,
    the waiter asks the fast path again on its lock connection and, nothing pending, is ready
    without ever importing Django (and without taking the lock). A replica that took the lock
    after a wait asks once more under it. Returns ``(done, None)`` then, and else ``(None,
    taken)`` for the full path to go on with the lock held (``taken`` None when it could not be
    had without Django, and always in ``wait`` mode, which takes no lock).
    """
    if mode not in (Mode.MIGRATE, Mode.AWAIT):
        return None, None
    from entrypoint.fastpath.check import check

    waiting = mode is Mode.AWAIT
    started = time.monotonic()
    # The fast path's PostgreSQL connection is kept open: the lock takes it over when the full
    # path follows, so a start opens one connection before Django, not two. Not when the lock
    # goes elsewhere (ENTRYPOINT_LOCK_DATABASE_URL, ENTRYPOINT_DIRECT_DATABASE_URL): the kept
    # connection may be a pooler's.
    elsewhere = settings.lock_database_url or settings.direct_database_url
    kept: list[Any] = []
    try:
        verdict = check(settings, keep=None if elsewhere or waiting else kept, waiting=waiting)
        seconds = round(time.monotonic() - started, 4)
        if verdict.nothing_to_do:
            return _fast_done(settings, reporter, verdict, seconds, waiting=waiting), None
        if waiting:
            reporter.event(
                "fast_path_skipped",
                level="warning" if verdict.doubt else "info",
                reason=verdict.reason,
                seconds=seconds,
            )
            return None, None
        return _after_check(settings, reporter, run_id, verdict, started=started, kept=kept)
    finally:
        for connection in kept:
            connection.close()


def _after_check(
    settings: Settings,
    reporter: Reporter,
    run_id: str,
    verdict: Verdict,
    *,
    started: float,
    kept: list[Any],
) -> tuple[Done | None, Taken | None]:
    """What follows a check that found something: the skip logged, the lock taken light."""
    from entrypoint.fastpath.check import check

    seconds = round(time.monotonic() - started, 4)
    reporter.event(
        "fast_path_skipped",
        level="warning" if verdict.doubt else "info",
        reason=verdict.reason,
        seconds=seconds,
    )
    taken, settled = (
        (None, None) if verdict.unreachable else _light_lock(settings, reporter, run_id, kept)
    )
    if settled is not None:
        return _fast_done(settings, reporter, settled, round(time.monotonic() - started, 4)), None
    if taken is None or not (taken.contended or verdict.locked):
        return None, taken
    # The lock was held by another replica, which has now released it: most often it has
    # migrated everything, and recorded the manifest of this very code.
    started = time.monotonic()
    via = None if settings.lock_database_url else (taken.alias, taken.lock.read)
    again = check(settings, held=taken.alias, reader=via)
    if not again.nothing_to_do:
        reporter.event("fast_path_rechecked", level="debug", reason=again.reason)
        return None, taken
    taken.drop(reporter)
    return _fast_done(settings, reporter, again, round(time.monotonic() - started, 4)), None


def _fast_done(
    settings: Settings,
    reporter: Reporter,
    verdict: Verdict,
    seconds: float,
    *,
    waiting: bool = False,
) -> Done:
    reporter.run_info(settings.release, django_version=verdict.django_version or "unknown")
    for alias in verdict.databases:
        if waiting:
            reporter.event("migrations_present", database=alias, needed=0, fast_path=True)
        else:
            reporter.event("nothing_to_migrate", database=alias, fast_path=True)
    return Done(0, seconds, fast_path=True, files=verdict.files, manifest=verdict.source)


def _light_lock(
    settings: Settings, reporter: Reporter, run_id: str, kept: list[Any]
) -> tuple[Taken | None, Verdict | None]:
    """The first database's lock, taken from the settings module alone (no Django): ``(taken,
    None)``. ``(None, verdict)`` when, after the holder released it, the fast path found nothing
    left to do (asked on the lock connection, without taking the lock: every waiter finds so at
    once). ``(None, None)`` when the lock cannot be had so (the full path then takes it after
    the set-up), or its connection does not open (a database not up, a driver missing, a lock
    file that cannot be made: the full path waits for the database or reports the cause in its
    own words). ``kept`` may hold the fast path's open connection, which a PostgreSQL lock
    takes over."""
    from entrypoint.fastpath.check import check, lock_entry

    found = lock_entry(settings)
    if found is None:
        return None, None
    from entrypoint.locks import lock_of_entry
    from entrypoint.pipeline.holding import Taken, take

    alias, entry, vendor = found
    lock = lock_of_entry(alias, entry, vendor, settings, run_id)
    began = time.monotonic()
    try:
        from entrypoint.locks.postgres import PostgresLock

        if kept and isinstance(lock, PostgresLock):
            lock.connect(adopt=kept.pop())
        else:
            lock.connect()
    except EntrypointError as exc:
        lock.close()
        reporter.event("light_lock_unavailable", level="debug", database=alias, error=str(exc))
        return None, None
    answers: list[Verdict] = []
    # The lock connection reads the alias's own database, unless it goes elsewhere.
    via = None if settings.lock_database_url else (alias, lock.read)

    def settled() -> bool:
        again = check(settings, reader=via)
        if again.nothing_to_do:
            answers.append(again)
        return again.nothing_to_do

    try:
        got = take(lock, alias, settings, reporter, connect=False, settled=settled)
    except BaseException:
        lock.release()
        lock.close()
        raise
    if got is None:
        lock.close()
        return None, answers[0]
    waited, contended = got
    return Taken(alias, lock, waited, began, contended), None


def _close_connections() -> None:
    import sys

    if "django.db" in sys.modules:  # Django was set up on this path: close what it opened
        from entrypoint.engine.project import close_connections

        close_connections()


__all__ = ["Command", "Done", "Mode", "execute"]
