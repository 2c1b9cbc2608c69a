"""One run of the pipeline: wait, lock, plan, migrate, ready; the CLI calls it.

Events flow through :class:`Reporter`, which logs them and forwards them to the health server
(when one runs); the engine modules stay free of output.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from entrypoint import audit, locks, rollback, wait
from entrypoint import migrate as engine
from entrypoint.config import Settings
from entrypoint.databases import (
    Target,
    first_line,
    missing_driver,
    resolve_targets,
    tag_connections,
)
from entrypoint.errors import ConfigError, EntrypointError, MigrationFailed
from entrypoint.holding import holding
from entrypoint.log import get_logger
from entrypoint.report import Reporter, new_run_id


def setup_django(settings_module: str | None) -> None:
    """Import the project's settings and set Django up, or raise ConfigError saying why not."""
    if not settings_module:
        msg = (
            "DJANGO_SETTINGS_MODULE is not set; set it (or pass --settings) to the project's "
            "settings module, e.g. mysite.settings"
        )
        raise ConfigError(msg)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    # Like ``python manage.py``, the working directory is the project directory.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    import importlib

    try:
        importlib.import_module(settings_module)
    except ModuleNotFoundError as exc:
        msg = (
            f"DJANGO_SETTINGS_MODULE={settings_module!r} cannot be imported: {exc}; run from the "
            "project directory or put it on PYTHONPATH, and check the module name"
        )
        raise ConfigError(msg) from exc
    except Exception as exc:
        msg = (
            f"DJANGO_SETTINGS_MODULE={settings_module!r} failed to import: "
            f"{type(exc).__name__}: {first_line(exc)}"
        )
        raise ConfigError(msg) from exc
    import django

    try:
        django.setup()
    except Exception as exc:
        msg = missing_driver(exc) or (
            f"Django could not start with settings {settings_module!r}: "
            f"{type(exc).__name__}: {first_line(exc)}"
        )
        raise ConfigError(msg) from exc


def prepare(
    settings: Settings,
    reporter: Reporter,
    *,
    check_locks: bool = True,
    run_id: str | None = None,
) -> list[Target]:
    """Set Django up and resolve the target databases; check each has a lock. No I/O yet.

    With ``run_id`` (a run that may migrate), every connection Django opens names the run on the
    server, so that a later holder can fence it.
    """
    setup_django(settings.settings_module)
    targets = resolve_targets(settings.databases)
    for target in targets:
        if check_locks:
            locks.check_supported(target, settings.lock_mode)
    if run_id is not None:
        tag_connections(targets, run_id)
    reporter.event("databases", databases=[t.alias for t in targets])
    return targets


def wait_for_databases(settings: Settings, targets: list[Target], reporter: Reporter) -> None:
    """Wait for every target; report each retry and each database's wait time."""
    reporter.phase("waiting_for_database", targets[0].alias if targets else None)

    def on_retry(attempt: wait.Attempt) -> None:
        if attempt.number == 1 or attempt.number % 10 == 0:
            reporter.event("database_unavailable", database=attempt.alias,
                           attempt=attempt.number, error=attempt.error,
                           waited=round(attempt.elapsed, 3))  # fmt: skip

    waited = wait.wait_for(targets, settings.wait_timeout, on_retry=on_retry)
    for alias, seconds in waited.items():
        reporter.event("database_ready", database=alias, seconds=round(seconds, 3))
        reporter.notify("db_wait", database=alias, seconds=seconds)


@dataclass
class Outcome:
    """What a migrate run did, per database."""

    applied: dict[str, list[engine.Applied]] = field(default_factory=dict)
    seconds: float = 0.0


def migrate_all(
    settings: Settings,
    targets: list[Target],
    reporter: Reporter,
    run_id: str,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Lock, plan and migrate each target in order; the lock is released whatever happens."""
    start = clock()
    engine.check_conflicts()
    outcome = Outcome()
    for target in targets:
        outcome.applied[target.alias] = _migrate_one(settings, target, reporter, run_id)
    outcome.seconds = clock() - start
    return outcome


def _migrate_one(
    settings: Settings, target: Target, reporter: Reporter, run_id: str
) -> list[engine.Applied]:
    alias = target.alias
    # The run's audit row: earlier runs left running fenced and reaped, then written as the
    # run goes.
    with (
        holding(target, settings, run_id, reporter) as held,
        audit.recording(alias, run_id, report=reporter.event, release=settings.release,
                        phase=settings.phase, lock_wait=held.waited,
                        reap_dead=settings.lock_mode != "off", fence_old=held.fence_old,
                        accept_interrupted=settings.accept_interrupted) as record,
    ):  # fmt: skip
        plan, targets, executor = _plan(alias, settings.phase, reporter)
        engine.check_history(alias, executor)
        if not plan:
            if record.previous_status in audit.UNFINISHED:
                _finish_previous(alias, record, reporter, executor, held=targets is not None,
                                 confirm=held.confirm)  # fmt: skip
            else:
                squashes = engine.record_squashes(executor)
                if squashes:
                    reporter.event("squashes_recorded", database=alias,
                                   migrations=[f"{a}.{n}" for a, n in squashes])  # fmt: skip
            reporter.event("nothing_to_migrate", database=alias)
            return []
        reporter.phase("migrating", alias)
        reporter.event("plan", database=alias, pending=len(plan),
                       migrations=[f"{app}.{name}" for app, name in plan[:50]])  # fmt: skip
        record.begin(plan)
        engine.prepare_session(alias, settings.ddl_lock_timeout)
        try:
            applied = engine.apply(alias, record.on_event, targets=targets,
                                   retries=settings.ddl_retries,
                                   confirm=held.confirm)  # fmt: skip
        except MigrationFailed as failure:
            if not settings.rollback_on_failure:
                raise
            rollback.undo_failed_run(alias, record, failure, reporter.event,
                                     confirm=held.confirm)  # fmt: skip
        reporter.event("migrated", database=alias, applied=len(applied),
                       seconds=round(sum(a.seconds for a in applied), 3))  # fmt: skip
        return applied


def _finish_previous(
    alias: str,
    record: audit.Recording,
    reporter: Reporter,
    executor: Any,
    *,
    held: bool,
    confirm: Callable[[], None] | None = None,
) -> None:
    """Run Django's migrate with nothing to apply, for the post-migrate work (content types,
    permissions, squash records) that the previous run ended before doing."""
    reporter.event("finishing_previous_run", level="warning", database=alias,
                   previous_status=record.previous_status)  # fmt: skip
    reporter.phase("migrating", alias)
    if not held:
        engine.apply(alias, record.on_event, confirm=confirm)
        return
    # Held migrations are pending: migrate to an applied node, which applies nothing.
    leaf = engine.applied_leaf(executor)
    if leaf is not None:
        engine.apply(alias, record.on_event, targets=[leaf], confirm=confirm)


def _plan(
    alias: str, phase: str, reporter: Reporter
) -> tuple[list[tuple[str, str]], list[tuple[str, str]] | None, Any]:
    """What to apply now, the targets for it (None: everything pending), and the migration
    executor it was planned with (its graph and history, for what follows under the lock).

    With ENTRYPOINT_PHASE=pre-deploy the post-deploy part of the plan is held: each held
    migration is logged with its reasons and counted.
    """
    if phase == "all":
        executor = engine.executor_for(alias)
        engine.phase_overrides(executor.loader)  # unused here, but a bad entry stops every run
        return [(m.app_label, m.name) for m in engine.pending(executor)], None, executor
    result = engine.split(alias, phase)
    for held in result.held:
        reporter.event("migration_held", level="warning", database=alias, app=held.app,
                       migration=held.name, phase=held.phase.value,
                       reasons=list(held.reasons), policy=phase)  # fmt: skip
    if result.held:
        reporter.notify("held", database=alias, count=len(result.held))
    return [(m.app, m.name) for m in result.apply], result.targets, result.executor


def close_connections() -> None:
    """Close every Django connection (before an exec or exit)."""
    if "django.db" not in sys.modules:
        return  # never imported (the fast path, or an early error): nothing to close
    try:
        from django.db import connections

        connections.close_all()
    except Exception as exc:  # closing must not hide the outcome of the run
        get_logger().debug("close_failed", error=type(exc).__name__)


__all__ = [
    "EntrypointError",
    "Outcome",
    "Reporter",
    "close_connections",
    "migrate_all",
    "new_run_id",
    "prepare",
    "wait_for_databases",
]
