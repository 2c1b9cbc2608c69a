"""The migrate step of a run, per database: under the lock, fence and reap earlier runs, plan,
apply what is pending (or finish what an earlier run left), all recorded in the audit trail.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from entrypoint.audit.recording import Recording
from entrypoint.audit.recording import recording as record_run
from entrypoint.audit.rows import UNFINISHED
from entrypoint.config import Settings
from entrypoint.db.targets import Target
from entrypoint.engine import apply as engine
from entrypoint.engine import events, graph
from entrypoint.engine.session import Scoped, intermediary, mysql_session, postgres_settings
from entrypoint.errors import MigrationFailed
from entrypoint.health.phases import RunPhase
from entrypoint.pipeline.holding import Taken, holding
from entrypoint.pipeline.report import Reporter


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
    *,
    taken: Taken | None = None,
) -> Outcome:
    """Lock, plan and migrate each target in order; the lock is released whatever happens.
    ``taken`` is a target's lock already held (taken before Django was set up)."""
    start = clock()
    graph.check_conflicts()
    outcome = Outcome()
    for target in targets:
        outcome.applied[target.alias] = _migrate_one(settings, target, reporter, run_id, taken)
    outcome.seconds = clock() - start
    return outcome


def _migrate_one(
    settings: Settings,
    target: Target,
    reporter: Reporter,
    run_id: str,
    taken: Taken | None = None,
) -> list[engine.Applied]:
    alias = target.alias
    # The run's audit row: earlier runs left running fenced and reaped, then written as the
    # run goes.
    with (
        holding(target, settings, run_id, reporter, taken=taken) as held,
        record_run(
            alias,
            run_id,
            reporter,
            release=settings.release,
            phase=settings.phase,
            lock_wait=held.waited,
            reap_dead=settings.lock_mode != "off",
            fence_old=held.fence_old,
            accept_interrupted=settings.accept_interrupted,
            keep=settings.history_keep,
        ) as record,
    ):
        plan, targets, executor = _plan(alias, settings.phase, reporter)
        graph.check_history(alias, executor)
        if not plan:
            if record.previous_status in UNFINISHED:
                _finish_previous(
                    alias,
                    record,
                    reporter,
                    executor,
                    held=targets is not None,
                    confirm=held.confirm,
                )
            else:
                squashes = graph.record_squashes(executor)
                if squashes:
                    reporter.event(
                        "squashes_recorded",
                        database=alias,
                        migrations=[f"{a}.{n}" for a, n in squashes],
                    )
            reporter.event("nothing_to_migrate", database=alias)
            _record_manifest(settings, alias, run_id, reporter, executor.loader)
            return []
        reporter.phase(RunPhase.MIGRATING, alias)
        reporter.event(
            "plan",
            database=alias,
            pending=len(plan),
            migrations=[f"{app}.{name}" for app, name in plan[:50]],
        )
        record.begin(plan, atomic=graph.atomicity(executor, plan))

        def on_event(event: events.Event) -> None:
            if isinstance(event, events.Succeeded):
                # Committed: the runs waiting for migrations look again at once.
                held.lock.announce()
            record.on_event(event)

        try:
            with _session(alias, target, settings, reporter) as session:
                applied = engine.apply(
                    alias,
                    on_event,
                    targets=targets,
                    retries=settings.ddl_retries,
                    confirm=held.confirm,
                    glance=held.glance,
                    session=session,
                )
        except MigrationFailed as failure:
            if not settings.rollback_on_failure:
                raise
            from entrypoint.pipeline.rollback import undo_failed_run

            undo_failed_run(alias, record, failure, reporter, confirm=held.confirm)
        reporter.event(
            "migrated",
            database=alias,
            applied=len(applied),
            seconds=round(sum(a.seconds for a in applied), 3),
        )
        _record_manifest(settings, alias, run_id, reporter, executor.loader)
        return applied


def _record_manifest(
    settings: Settings, alias: str, run_id: str, reporter: Reporter, loader: Any = None
) -> None:
    """Record the manifest of this code in the database, for the next start's fast path
    (under the lock, once the run ended well). A failure here costs only that: it is logged."""
    from entrypoint.db.reasons import first_line
    from entrypoint.fastpath import stored

    if settings.settings_module is None:
        return
    started = time.monotonic()
    try:
        outcome = stored.record(alias, settings.settings_module, run_id, settings.release, loader)
    except Exception as exc:
        reporter.event(
            "manifest_not_recorded",
            level="warning",
            database=alias,
            error=f"{type(exc).__name__}: {first_line(exc)}",
        )
        return
    reporter.event(
        "manifest_recorded" if outcome == "recorded" else "manifest_known",
        level="info" if outcome == "recorded" else "debug",
        database=alias,
        seconds=round(time.monotonic() - started, 4),
    )


def _finish_previous(
    alias: str,
    record: Recording,
    reporter: Reporter,
    executor: Any,
    *,
    held: bool,
    confirm: Callable[[], None] | None = None,
) -> None:
    """Run Django's migrate with nothing to apply, for the post-migrate work (content types,
    permissions, squash records) that the previous run ended before doing."""
    reporter.event(
        "finishing_previous_run",
        level="warning",
        database=alias,
        previous_status=record.previous_status,
    )
    reporter.phase(RunPhase.MIGRATING, alias)
    if not held:
        engine.apply(alias, record.on_event, confirm=confirm)
        return
    # Held migrations are pending: migrate to an applied node, which applies nothing.
    leaf = graph.applied_leaf(executor)
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
        executor = graph.executor_for(alias)
        graph.phase_overrides(executor.loader)  # unused here, but a bad entry stops every run
        return [(m.app_label, m.name) for m in graph.pending(executor)], None, executor
    result = graph.split(alias, phase)
    for held in result.held:
        reporter.event(
            "migration_held",
            level="warning",
            database=alias,
            app=held.app,
            migration=held.name,
            phase=held.phase.value,
            reasons=list(held.reasons),
            policy=phase,
        )
    if result.held:
        reporter.notify("held", database=alias, count=len(result.held))
    return [(m.app, m.name) for m in result.apply], result.targets, result.executor


@contextmanager
def _session(
    alias: str, target: Target, settings: Settings, reporter: Reporter
) -> Iterator[Scoped | None]:
    """The settings of the migration's statements, scoped to each migration (PostgreSQL) or to
    this run (MySQL/MariaDB); a connection that goes through a pooler or proxy is said once."""
    if target.vendor == "mysql":
        with mysql_session(alias, settings.ddl_lock_timeout):
            yield None
        return
    if target.vendor != "postgresql":
        yield None
        return
    via = intermediary(alias)
    if via is not None:
        reporter.event(
            "pooler_detected",
            level="warning",
            database=alias,
            reason=via,
            fix=(
                "set ENTRYPOINT_DIRECT_DATABASE_URL to migrate on a direct connection; meanwhile "
                "no session setting is relied on, and non-atomic migrations run without the "
                "session settings (ENTRYPOINT_DDL_LOCK_TIMEOUT)"
            ),
        )
    yield Scoped(alias, postgres_settings(settings.ddl_lock_timeout), session_allowed=via is None)
