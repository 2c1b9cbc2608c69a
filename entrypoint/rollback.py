"""Unapplying what one recorded run applied: ``rollback`` and ``ENTRYPOINT_ROLLBACK_ON_FAILURE``.

A run owns the migrations it applied until a later run applies them again or a rollback
unapplies them; a rollback unapplies exactly the migrations its run still owns and that are
still applied, newest first, through Django's MigrationExecutor, with the pre/post-migrate
signals ``manage.py migrate app 00NN`` sends. Before anything is touched, every one of them must
be reversible and no applied migration outside the set may depend on one of them; otherwise the
rollback is refused (exit 65) and nothing changes.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from entrypoint import audit
from entrypoint.audit import Node, RunRow, dotted
from entrypoint.config import Settings
from entrypoint.databases import Target, first_line
from entrypoint.errors import ConfigError, Interrupted, LockLost, MigrationFailed, PolicyError
from entrypoint.holding import holding
from entrypoint.migrate import Applied, OnEvent, confirm_lock, fenced
from entrypoint.process import FenceStop, SignalStop

HISTORY_HINT = "see 'django-entrypoint history' for run ids"


@dataclass(frozen=True)
class RollbackPlan:
    """What rolling back one run would do on one database."""

    database: str
    run: RunRow
    unapply: tuple[Node, ...]
    already_unapplied: tuple[Node, ...]
    taken_over: tuple[tuple[Node, str], ...]

    def describe(self) -> list[str]:
        """The plan as lines for people (``rollback --dry-run``)."""
        run = self.run
        release = f", release {run.release}" if run.release else ""
        head = (
            f"rollback of run {run.id} on database {self.database!r} ({run.kind}, "
            f"{run.status}{release}, applied {len(run.applied)})"
        )
        if not self.unapply:
            lines = [f"{head}: nothing to unapply, none of its migrations is still applied"]
        else:
            lines = [f"{head} would unapply, newest first:"]
            lines += [f"  {dotted(node)}" for node in self.unapply]
        lines += [f"  already unapplied: {dotted(node)}" for node in self.already_unapplied]
        lines += [
            f"  kept: {dotted(node)}, applied again by later run {owner}"
            for node, owner in self.taken_over
        ]
        return lines


#: How many blocking migrations a refused rollback names before it says how many more.
_SHOWN_BLOCKERS = 3


def owners(runs: Sequence[RunRow]) -> dict[Node, str]:
    """Which run each migration belongs to now, replaying the recorded runs oldest first.

    A migrate run takes the migrations it applied; a run rolled back after its own failure
    gives them back at once; a rollback run takes away the migrations it unapplied.
    """
    owned: dict[Node, str] = {}
    for run in sorted(runs, key=lambda row: row.seq):
        nodes = [step.node for step in run.applied]
        if run.kind == "rollback":
            for node in nodes:
                owned.pop(node, None)
            continue
        for node in nodes:
            owned[node] = run.id
        if run.status == "rolled_back" and run.resolved_by is None:
            for node in nodes:
                if owned.get(node) == run.id:
                    del owned[node]
    return owned


def choose_run(runs: Sequence[RunRow], wanted: str | None, alias: str) -> RunRow:
    """The run to roll back: ``wanted`` by id, or the last run that applied migrations."""
    if wanted is None:
        # A run that undid itself after its failure left nothing behind: not a candidate.
        candidates = [
            row
            for row in runs
            if row.kind == "migrate"
            and row.applied
            and not (row.status == "rolled_back" and row.resolved_by is None)
        ]
        if not candidates:
            msg = (
                f"no recorded run on database {alias!r} has applied a migration, so there is "
                "nothing to roll back; see 'django-entrypoint history'"
            )
            raise ConfigError(msg)
        chosen = max(candidates, key=lambda row: row.seq)
        if chosen.status == "rolled_back":
            msg = (
                f"the last run that applied migrations on database {alias!r}, {chosen.id}, is "
                f"already {_rolled_back_by(chosen)}; to go further back name a run with "
                f"--run ID ({HISTORY_HINT})"
            )
            raise PolicyError(msg)
        return chosen
    found = [row for row in runs if row.id == wanted]
    if not found:
        msg = f"--run {wanted!r} names no recorded run on database {alias!r}; {HISTORY_HINT}"
        raise ConfigError(msg)
    chosen = found[0]
    if chosen.kind == "rollback":
        msg = (
            f"run {chosen.id} is itself a rollback and cannot be rolled back; run migrate to "
            "apply its migrations again"
        )
        raise PolicyError(msg)
    if chosen.status == "rolled_back":
        msg = f"run {chosen.id} is already {_rolled_back_by(chosen)}; nothing to do"
        raise PolicyError(msg)
    if chosen.status == "running":
        msg = f"run {chosen.id} is still running on database {alias!r}; let it finish first"
        raise PolicyError(msg)
    return chosen


def _rolled_back_by(run: RunRow) -> str:
    if run.resolved_by:
        return f"rolled back by run {run.resolved_by}"
    return "rolled back (it undid itself after its failure)"


def plan_rollback(alias: str, runs: Sequence[RunRow], run: RunRow) -> RollbackPlan:
    """Check that ``run`` can be rolled back on ``alias`` now and return what would be unapplied.

    Raises PolicyError (exit 65) when a migration to unapply is irreversible or no longer on
    disk, or when an applied migration outside the set depends on one of them.
    """
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    from entrypoint.phases import migration_reversible

    loader = MigrationLoader(connections[alias])
    graph = loader.graph
    applied_now = set(loader.applied_migrations)
    owned = owners(runs)
    mine = [step.node for step in run.applied]
    unapply = [node for node in reversed(mine) if node in applied_now and owned.get(node) == run.id]
    gone = tuple(node for node in mine if node not in applied_now)
    taken = tuple(
        (node, owned[node])
        for node in mine
        if node in applied_now and owned.get(node) not in {None, run.id}
    )
    refused = f"cannot roll back run {run.id} on database {alias!r}, nothing was changed"

    missing = [node for node in unapply if node not in graph.nodes]
    if missing:
        names = ", ".join(dotted(node) for node in missing)
        msg = f"{refused}: {names} no longer on disk; deploy the code that has it, then retry"
        raise PolicyError(msg)

    irreversible = []
    for node in reversed(unapply):
        ok, reasons = migration_reversible(graph.nodes[node])
        if not ok:
            irreversible.append(f"{dotted(node)} is irreversible ({'; '.join(reasons)})")
    if irreversible:
        msg = (
            f"{refused}: {', '.join(irreversible)}; give each such operation reverse code "
            "(RunPython.noop or RunSQL.noop where nothing needs undoing) or unapply by hand"
        )
        raise PolicyError(msg)

    chosen = set(unapply)
    blockers: list[str] = []
    seen: set[Node] = set()
    later_runs: list[str] = []
    outside = False
    # Newest first, so that each blocker is named with the newest migration it depends on.
    for node in unapply:
        for key in graph.backwards_plan(node):
            if key in chosen or key in seen or key not in applied_now:
                continue
            seen.add(key)
            owner = owned.get(key)
            if owner is None:
                outside = True
                blockers.append(
                    f"{dotted(key)}, applied outside django-entrypoint, depends on {dotted(node)}"
                )
            else:
                if owner not in later_runs:
                    later_runs.append(owner)
                blockers.append(
                    f"{dotted(key)}, applied by later run {owner}, depends on {dotted(node)}"
                )
    if blockers:
        fixes = []
        if later_runs:
            fixes.append(f"roll back run {', '.join(later_runs)} first")
        if outside:
            fixes.append("unapply what was applied outside django-entrypoint first")
        shown = "; ".join(blockers[:_SHOWN_BLOCKERS])
        if len(blockers) > _SHOWN_BLOCKERS:
            shown += f"; and {len(blockers) - _SHOWN_BLOCKERS} more"
        msg = f"{refused}: {shown}; {' and '.join(fixes)}"
        raise PolicyError(msg)
    return RollbackPlan(alias, run, tuple(unapply), gone, taken)


def unapply(
    alias: str,
    nodes: Sequence[Node],
    on_event: OnEvent,
    *,
    confirm: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Applied]:
    """Unapply ``nodes`` (newest first) on ``alias`` with Django's executor; return what was.

    Reports ``migration_unapply_started``, ``migration_unapplied`` (with seconds) and
    ``migration_unapply_failed``. ``confirm`` is the fence's check, as for
    :func:`entrypoint.migrate.apply`. Raises MigrationFailed (exit 70) naming the migration and
    the database error, Interrupted on SIGTERM/SIGINT, or LockLost (75) when the lock was lost.
    """
    from django.core.management.sql import emit_post_migrate_signal, emit_pre_migrate_signal
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    done: list[Applied] = []
    current: list[Any] = []
    started = [0.0]

    def progress(action: str, migration: Any = None, fake: bool | None = False, /) -> None:
        if migration is None:
            return
        if action == "unapply_start":
            confirm_lock(confirm, alias, f"before unapplying {migration.app_label}."
                         f"{migration.name} started; nothing of it ran")  # fmt: skip
            current[:] = [migration]
            started[0] = clock()
            on_event("migration_unapply_started", database=alias, app=migration.app_label,
                     migration=migration.name, atomic=bool(migration.atomic))  # fmt: skip
        elif action == "unapply_success":
            step = Applied(migration.app_label, migration.name, clock() - started[0])
            done.append(step)
            current.clear()
            on_event("migration_unapplied", database=alias, app=step.app, migration=step.name,
                     seconds=round(step.seconds, 4))  # fmt: skip

    executor = MigrationExecutor(connections[alias], progress)
    graph = executor.loader.graph
    plan = [(graph.nodes[node], True) for node in nodes]
    if not plan:
        return done
    applied = [key for key in executor.loader.applied_migrations if key in graph.nodes]
    quiet = io.StringIO()
    try:
        before = executor.loader.project_state(applied, at_end=True)
        emit_pre_migrate_signal(0, False, alias, stdout=quiet, apps=before.apps, plan=plan)
        with fenced(alias, confirm, lambda: _node_of(current)):
            after = executor.migrate([], plan=plan)
        after.clear_delayed_apps_cache()
        emit_post_migrate_signal(0, False, alias, stdout=quiet, apps=after.apps, plan=plan)
    except SignalStop as stop:
        raise Interrupted(stop.signum, _stopped(stop.signum, alias, current)) from None
    except FenceStop as stop:
        where = (
            f"while unapplying {current[0].app_label}.{current[0].name}"
            if current
            else "while rolling back, between migrations"
        )
        raise LockLost(alias, stop.reason, where) from None
    except LockLost:
        raise
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        error = f"{type(cause).__name__}: {first_line(cause)}"
        if current:
            migration = current[0]
            confirm_lock(confirm, alias, f"while unapplying {migration.app_label}."
                         f"{migration.name}, which then failed ({error})")  # fmt: skip
            on_event("migration_unapply_failed", database=alias, app=migration.app_label,
                     migration=migration.name, error=type(exc).__name__,
                     seconds=round(clock() - started[0], 4))  # fmt: skip
            msg = (
                f"unapplying {migration.app_label}.{migration.name} failed on database "
                f"{alias!r}: {error}"
            )
        else:
            msg = f"rollback failed on database {alias!r}: {error}"
        raise MigrationFailed(msg) from exc
    return done


def _node_of(current: list[Any]) -> Node | None:
    return (current[0].app_label, current[0].name) if current else None


def _stopped(signum: int, alias: str, current: list[Any]) -> str:
    import signal

    name = signal.Signals(signum).name
    if not current:
        return f"stopped by {name} while rolling back on database {alias!r}, between migrations"
    migration = current[0]
    outcome = (
        "its transaction was rolled back"
        if migration.atomic
        else "it is not atomic and may be partly unapplied"
    )
    return (
        f"stopped by {name} while unapplying {migration.app_label}.{migration.name} on "
        f"{alias!r}; {outcome}"
    )


def undo_failed_run(
    alias: str,
    record: audit.Recording,
    failure: MigrationFailed,
    on_event: OnEvent,
    *,
    confirm: Callable[[], None] | None = None,
) -> NoReturn:
    """``ENTRYPOINT_ROLLBACK_ON_FAILURE``: unapply what this run applied before it failed.

    Always raises: MigrationFailed (exit 70) with the failure and what became of the rollback
    (the row is then ``rolled_back``), or Interrupted.
    """
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    from entrypoint.phases import migration_reversible

    nodes = list(reversed(record.applied))
    if not nodes:
        msg = f"{failure}; nothing to roll back, this run applied no migration before it"
        raise MigrationFailed(msg) from failure
    if (
        record.current is not None
        and record.current_atomic is False
        and record.current_partial is not False
    ):
        msg = (
            f"{failure}; not rolled back: {dotted(record.current)} is not atomic and may be "
            "partly applied, check it by hand first"
        )
        raise MigrationFailed(msg) from failure
    audit.usable_connection(alias, fresh=True)
    graph = MigrationLoader(connections[alias]).graph
    irreversible = [
        f"{dotted(node)} ({'; '.join(migration_reversible(graph.nodes[node])[1])})"
        for node in nodes
        if not migration_reversible(graph.nodes[node])[0]
    ]
    if irreversible:
        msg = f"{failure}; not rolled back, irreversible: {', '.join(irreversible)}"
        raise MigrationFailed(msg) from failure
    on_event("rollback_on_failure", level="warning", database=alias,
             migrations=[dotted(node) for node in nodes])  # fmt: skip
    try:
        unapply(alias, nodes, on_event, confirm=confirm)
    except MigrationFailed as exc:
        msg = f"{failure}; rolling back this run's migrations failed too: {exc}"
        raise MigrationFailed(msg) from failure
    record.undone = True
    names = ", ".join(dotted(node) for node in nodes)
    msg = f"{failure}; rolled back {names}, so the schema is as this run found it"
    raise MigrationFailed(msg) from failure


def rollback(
    settings: Settings,
    target: Target,
    reporter: Any,
    run_id: str,
    *,
    wanted: str | None,
    dry_run: bool = False,
) -> RollbackPlan:
    """The ``rollback`` command on one database: plan, check, and (unless ``dry_run``) unapply.

    A real rollback runs under the migration lock, on the same holding path as a migrate run
    (fencing included), and is itself a recorded run (kind ``rollback``); the run it undoes
    becomes ``rolled_back``. A dry run reads only: no lock, no table created, nothing written.
    """
    alias = target.alias
    report = reporter.event
    if dry_run:
        runs = audit.read_runs(alias)
        return plan_rollback(alias, runs, choose_run(runs, wanted, alias))
    with (
        holding(target, settings, run_id, reporter) as held,
        audit.recording(alias, run_id, report=report, kind="rollback", release=settings.release,
                        phase=settings.phase, lock_wait=held.waited,
                        reap_dead=settings.lock_mode != "off", gate=False,
                        fence_old=held.fence_old) as record,
    ):  # fmt: skip
        runs = audit.read_runs(alias)
        chosen = choose_run(runs, wanted, alias)
        record.rollback_of = chosen.id
        plan = plan_rollback(alias, runs, chosen)
        if not plan.unapply:
            report("nothing_to_roll_back", level="warning", database=alias,
                   rolled_back_run=chosen.id)  # fmt: skip
            return plan
        record.begin(plan.unapply)
        report("rollback_plan", database=alias, rolled_back_run=chosen.id,
               migrations=[dotted(node) for node in plan.unapply])  # fmt: skip
        reporter.phase("migrating", alias)
        unapply(alias, plan.unapply, record.on_event, confirm=held.confirm)
        audit.mark_rolled_back(alias, chosen.id, run_id)
        report("rolled_back", database=alias, rolled_back_run=chosen.id,
               unapplied=len(plan.unapply))  # fmt: skip
    return plan


__all__ = [
    "RollbackPlan",
    "choose_run",
    "owners",
    "plan_rollback",
    "rollback",
    "unapply",
    "undo_failed_run",
]
