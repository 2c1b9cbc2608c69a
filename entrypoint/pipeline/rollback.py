"""Unapplying what one recorded run applied: ``rollback`` and ``ENTRYPOINT_ROLLBACK_ON_FAILURE``.

A run owns the migrations it applied until a later run applies them again or a rollback
unapplies them; a rollback unapplies exactly the migrations its run still owns and that are
still applied, newest first, through Django's MigrationExecutor, with the pre/post-migrate
signals ``manage.py migrate app 00NN`` sends. Before anything is touched, every one of them must
be reversible and no applied migration outside the set may depend on one of them; otherwise the
rollback is refused (exit 65) and nothing changes.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from entrypoint.audit.read import read_runs
from entrypoint.audit.recording import Recording, mark_rolled_back, usable_connection
from entrypoint.audit.recording import recording as record_run
from entrypoint.audit.rows import Kind, RunRow, Status
from entrypoint.config import Settings
from entrypoint.db.targets import Target
from entrypoint.engine.events import Sink
from entrypoint.engine.unapply import unapply
from entrypoint.errors import ConfigError, Interrupted, MigrationFailed, PolicyError
from entrypoint.health.phases import RunPhase
from entrypoint.pipeline.holding import holding
from entrypoint.pipeline.report import Reporter, configure_logging, new_run_id
from entrypoint.plan.types import Node, dotted
from entrypoint.process import SignalStop, capture_signals

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
        if run.kind is Kind.ROLLBACK:
            for node in nodes:
                owned.pop(node, None)
            continue
        for node in nodes:
            owned[node] = run.id
        if run.status is Status.ROLLED_BACK and run.resolved_by is None:
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
            if row.kind is Kind.MIGRATE
            and row.applied
            and not (row.status is Status.ROLLED_BACK and row.resolved_by is None)
        ]
        if not candidates:
            msg = (
                f"no recorded run on database {alias!r} has applied a migration, so there is "
                "nothing to roll back; see 'django-entrypoint history'"
            )
            raise ConfigError(msg)
        chosen = max(candidates, key=lambda row: row.seq)
        if chosen.status is Status.ROLLED_BACK:
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
    if chosen.kind is Kind.ROLLBACK:
        msg = (
            f"run {chosen.id} is itself a rollback and cannot be rolled back; run migrate to "
            "apply its migrations again"
        )
        raise PolicyError(msg)
    if chosen.status is Status.ROLLED_BACK:
        msg = f"run {chosen.id} is already {_rolled_back_by(chosen)}; nothing to do"
        raise PolicyError(msg)
    if chosen.status is Status.RUNNING:
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

    from entrypoint.plan.reversibility import migration_reversible

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


def undo_failed_run(
    alias: str,
    record: Recording,
    failure: MigrationFailed,
    sink: Sink,
    *,
    confirm: Callable[[], None] | None = None,
) -> NoReturn:
    """``ENTRYPOINT_ROLLBACK_ON_FAILURE``: unapply what this run applied before it failed.

    Always raises: MigrationFailed (exit 70) with the failure and what became of the rollback
    (the row is then ``rolled_back``), or Interrupted.
    """
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    from entrypoint.plan.reversibility import migration_reversible

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
    usable_connection(alias, fresh=True)
    graph = MigrationLoader(connections[alias]).graph
    irreversible = [
        f"{dotted(node)} ({'; '.join(migration_reversible(graph.nodes[node])[1])})"
        for node in nodes
        if not migration_reversible(graph.nodes[node])[0]
    ]
    if irreversible:
        msg = f"{failure}; not rolled back, irreversible: {', '.join(irreversible)}"
        raise MigrationFailed(msg) from failure
    sink.event(
        "rollback_on_failure",
        level="warning",
        database=alias,
        migrations=[dotted(node) for node in nodes],
    )
    try:
        unapply(alias, nodes, sink.emit, confirm=confirm)
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
        runs = read_runs(alias)
        return plan_rollback(alias, runs, choose_run(runs, wanted, alias))
    with (
        holding(target, settings, run_id, reporter) as held,
        record_run(
            alias,
            run_id,
            reporter,
            kind=Kind.ROLLBACK,
            release=settings.release,
            phase=settings.phase,
            lock_wait=held.waited,
            reap_dead=settings.lock_mode != "off",
            gate=False,
            fence_old=held.fence_old,
        ) as record,
    ):
        runs = read_runs(alias)
        chosen = choose_run(runs, wanted, alias)
        record.rollback_of = chosen.id
        plan = plan_rollback(alias, runs, chosen)
        if not plan.unapply:
            report(
                "nothing_to_roll_back", level="warning", database=alias, rolled_back_run=chosen.id
            )
            return plan
        record.begin(plan.unapply)
        report(
            "rollback_plan",
            database=alias,
            rolled_back_run=chosen.id,
            migrations=[dotted(node) for node in plan.unapply],
        )
        reporter.phase(RunPhase.MIGRATING, alias)
        unapply(alias, plan.unapply, record.on_event, confirm=held.confirm)
        mark_rolled_back(alias, chosen.id, run_id)
        report(
            "rolled_back", database=alias, rolled_back_run=chosen.id, unapplied=len(plan.unapply)
        )
    return plan


def command(settings: Settings, *, wanted: str | None, dry_run: bool) -> RollbackPlan:
    """The whole ``rollback`` command: its log, signals, the project and its one database,
    then :func:`rollback`."""
    from entrypoint import __version__
    from entrypoint.engine.project import close_connections
    from entrypoint.pipeline.setup import prepare, wait_for_databases

    run_id = new_run_id()
    logger = configure_logging(settings, run_id)
    reporter = Reporter(logger=logger)

    def on_signal(signum: int) -> None:
        logger.warning("signal_received", signal=signal.Signals(signum).name)

    with capture_signals(on_signal):
        logger.info("starting", command="rollback", version=__version__)
        try:
            targets = prepare(settings, reporter, run_id=run_id)
            if len(targets) != 1:
                names = ", ".join(t.alias for t in targets)
                msg = (
                    f"rollback acts on one database at a time, and {names} are selected; "
                    "pass --database ALIAS"
                )
                raise ConfigError(msg)
            wait_for_databases(settings, targets, reporter)
            return rollback(settings, targets[0], reporter, run_id, wanted=wanted, dry_run=dry_run)
        except SignalStop as stop:
            raise Interrupted(stop.signum, "stopped by signal before the rollback began") from None
        finally:
            close_connections()
