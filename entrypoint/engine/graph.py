"""Django's migration graph, read through its public APIs: the pending plan, conflicts, the
history's consistency, squashes, and the plan split by the deploy-phase policy.

The pending plan is computed here and only here (:func:`pending`); ``migrate``, ``plan`` and
``check`` all ask for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from entrypoint.db.reasons import first_line
from entrypoint.errors import ConfigError, MigrationFailed
from entrypoint.plan.types import DeployPhase, Node, PlanCannotBeSplit, Policy


def conflicts_message(conflicts: dict[str, list[str]]) -> str:
    """Django's conflicting-leaf-nodes problem, as one line with the fix."""
    names = "; ".join(
        f"{', '.join(sorted(nodes))} in {app}" for app, nodes in sorted(conflicts.items())
    )
    return (
        f"conflicting migrations: several leaf nodes in the migration graph ({names}); "
        "run 'python manage.py makemigrations --merge' and commit the merge migration"
    )


def app_conflict_message(app: str, names: list[str]) -> str:
    """One app's conflicting leaf nodes, as ``check`` reports them, with the fix."""
    return (
        f"{app} has conflicting migrations {', '.join(sorted(names))} (several leaf nodes); "
        f"run 'python manage.py makemigrations --merge {app}' and commit the merge migration"
    )


def history_mismatch_message(alias: str, exc: BaseException) -> str:
    """An inconsistent history, as ``check`` reports it before a deploy."""
    return (
        f"the migration history of database {alias!r} does not match the code: "
        f"{str(exc).rstrip('.')}; repair the django_migrations table before deploying"
    )


def check_conflicts() -> None:
    """Refuse a migration graph with several leaf nodes in one app (read from disk only)."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    found = loader.detect_conflicts()
    if found:
        raise ConfigError(conflicts_message(found))


def executor_for(alias: str) -> Any:
    """Django's MigrationExecutor on ``alias`` (it loads the migration graph and the history)."""
    from django.db import connections
    from django.db.migrations.executor import MigrationExecutor

    return MigrationExecutor(connections[alias])


def pending(executor: Any) -> list[Any]:
    """The migrations Django would apply now, in order (Migration objects), as ``executor``
    (from :func:`executor_for`) plans them."""
    targets = executor.loader.graph.leaf_nodes()
    return [migration for migration, backwards in executor.migration_plan(targets) if not backwards]


def atomicity(executor: Any, plan: list[Node]) -> dict[Node, bool]:
    """Whether each planned migration runs in one transaction there: atomic, on a database
    whose DDL rolls back (as the engine judges it when the migration starts)."""
    rolls_back = bool(executor.connection.features.can_rollback_ddl)
    nodes = executor.loader.graph.nodes
    return {
        key: rolls_back and bool(getattr(nodes[key], "atomic", True))
        for key in plan
        if key in nodes
    }


def check_history(alias: str, executor: Any) -> None:
    """Refuse a history with a migration applied before its dependency, as Django's migrate does
    before it plans: MigrationFailed (exit 70) naming both."""
    from django.db import connections
    from django.db.migrations.exceptions import InconsistentMigrationHistory

    try:
        executor.loader.check_consistent_history(connections[alias])
    except InconsistentMigrationHistory as exc:
        raise MigrationFailed(inconsistent_message(alias, exc)) from exc


def inconsistent_message(alias: str, exc: BaseException) -> str:
    # Django's text ends with "on database 'ALIAS'.", which the message says first.
    found = _ON_DATABASE.sub("", first_line(exc))
    return (
        f"inconsistent migration history on database {alias!r}: {found}; "
        "repair the django_migrations table before migrating"
    )


_ON_DATABASE = re.compile(r"\s+on database '[^']*'\.?$|\.$")


def record_squashes(executor: Any) -> list[Node]:
    """Record each squashed migration whose replaced migrations are all applied; return them.

    Django's migrate does this on every run, even with nothing to apply, so that a squash
    deployed onto a database that already ran the migrations it replaces is recorded before the
    replaced files are deleted; skipped, the next release would run the squash again.
    """
    if not executor.loader.replacements:
        return []
    before = set(executor.recorder.applied_migrations())
    executor.check_replacements()
    return sorted(set(executor.recorder.applied_migrations()) - before)


def applied_leaf(executor: Any) -> Node | None:
    """An applied migration with no applied child in its app: migrating to it changes nothing."""
    applied = executor.loader.applied_migrations
    graph = executor.loader.graph
    for node in sorted(applied):
        if node not in graph.node_map:
            continue
        children = graph.node_map[node].children
        if not any(child.key[0] == node[0] and child.key in applied for child in children):
            return (str(node[0]), str(node[1]))
    return None


def phase_overrides(loader: Any) -> dict[str, Any]:
    """The project's marks from ``settings.ENTRYPOINT_MIGRATION_PHASES``, validated against
    ``loader``'s migrations (ConfigError, exit 64, naming a bad entry)."""
    from django.conf import settings

    from entrypoint.plan.marks import parse_overrides
    from entrypoint.plan.types import OVERRIDES_SETTING

    value = getattr(settings, OVERRIDES_SETTING, None)
    if value is None:
        return {}
    nodes = set(loader.graph.nodes) | set(getattr(loader, "disk_migrations", None) or ())
    return parse_overrides(value, nodes)


@dataclass
class PlanSplit:
    """The pending plan of one database, classified and split by the deploy-phase policy."""

    planned: list[Any]
    apply: list[Any]
    held: list[Any]
    targets: list[Node] | None
    #: The MigrationExecutor the plan was made with (its graph and history, for reuse).
    executor: Any = None


def split(
    alias: str,
    policy: str,
    *,
    with_locks: bool = False,
    executor: Any = None,
    server: Any = None,
) -> PlanSplit:
    """Classify the pending plan of ``alias`` and split it for ``policy`` (all, pre-deploy,
    post-deploy). ``targets`` is None when everything pending is to be applied. With
    ``with_locks``, each migration also lists the table-size-bound locks it takes on this
    database's server.

    ``executor`` (default: Django's, on the database) and ``server`` (default: read from the
    connection) let a check without a database (``--base``) plan against another history.

    Raises PlanCannotBeSplit (exit 65) when a held migration is needed by one to apply.
    """
    from django.db import connections

    from entrypoint.engine.sql import collector_for
    from entrypoint.plan.classify import classify_plan
    from entrypoint.plan.locknotes import server_of
    from entrypoint.plan.policy import plan_targets, split_plan
    from entrypoint.plan.types import Policy

    connection = connections[alias]
    if executor is None:
        executor = executor_for(alias)
    graph = executor.loader.graph
    forwards = [
        (m, False) for m, backwards in executor.migration_plan(graph.leaf_nodes()) if not backwards
    ]
    if not (with_locks and forwards):
        server = None
    elif server is None:
        server = server_of(connection)
    # Each operation's SQL is collected (never run) and read, so the phases and notes come
    # from what the schema editor will execute.
    collect = collector_for(connection) if forwards else None
    planned = classify_plan(
        forwards, executor.loader, server, phase_overrides(executor.loader), collect
    )
    apply_now, held = split_plan(planned, Policy(policy), graph)
    targets = plan_targets(apply_now, graph) if held else None
    return PlanSplit(
        planned=planned, apply=apply_now, held=held, targets=targets, executor=executor
    )


@dataclass(frozen=True)
class Needed:
    """What a run in wait mode waits for on one database: each migration this code needs that
    is not applied yet (the plan under the phase policy), with the migrations a squashed one
    replaces (Django records those, not the squash, when it applies one)."""

    nodes: tuple[Node, ...]
    replaces: dict[Node, tuple[Node, ...]]

    def missing(self, recorded: set[Node]) -> list[Node]:
        """The needed migrations that ``recorded`` (the rows of ``django_migrations``) does not
        hold yet, in plan order. A squashed migration is there once every migration it
        replaces is recorded, as Django's loader counts it."""
        found = []
        for node in self.nodes:
            replaced = self.replaces.get(node)
            there = all(r in recorded for r in replaced) if replaced else node in recorded
            if not there:
                found.append(node)
        return found


def needed(alias: str, policy: Policy) -> Needed:
    """The migrations this code needs on ``alias`` under ``policy`` that are not applied yet:
    everything pending (``all``, ``post-deploy``), or its pre-deploy part (``pre-deploy``).

    Raises PlanCannotBeSplit (exit 65) as ``migrate`` would, when a pre-deploy migration needs a
    held post-deploy one: no run with that policy could ever bring what this one waits for.
    """
    if policy is Policy.PRE_DEPLOY:
        result = split(alias, policy)
        nodes = result.executor.loader.graph.nodes
        migrations = [nodes[planned.key] for planned in result.apply]
    else:
        migrations = pending(executor_for(alias))
    nodes = tuple((str(m.app_label), str(m.name)) for m in migrations)
    replaces = {
        (str(m.app_label), str(m.name)): tuple((str(a), str(n)) for a, n in m.replaces)
        for m in migrations
        if getattr(m, "replaces", None)
    }
    return Needed(nodes, replaces)


def recorded(alias: str) -> set[Node]:
    """The rows of ``django_migrations`` on ``alias`` (none while the table does not exist)."""
    from django.db import connections
    from django.db.migrations.recorder import MigrationRecorder

    recorder = MigrationRecorder(connections[alias])
    if not recorder.has_table():
        return set()
    return {(str(app), str(name)) for app, name in recorder.applied_migrations()}


def shown_plan(
    alias: str, policy: Policy, *, executor: Any = None, server: Any = None
) -> tuple[list[dict[str, Any]], PlanCannotBeSplit | None]:
    """What ``plan`` shows of ``alias``: each pending migration as its JSON row (deploy phase,
    reasons, lock notes, atomicity on this database, whether ``policy`` holds it), and the
    refusal when the plan cannot be split for ``policy`` (the whole plan is shown then, with
    what the phase would hold)."""
    from django.db import connections

    refused: PlanCannotBeSplit | None = None
    try:
        result = split(alias, policy, with_locks=True, executor=executor, server=server)
        held = {(m.app, m.name) for m in result.held}
    except PlanCannotBeSplit as exc:
        refused = exc
        result = split(alias, Policy.ALL, with_locks=True, executor=executor, server=server)
        held = {m.key for m in result.planned if m.phase is DeployPhase.POST_DEPLOY}
    # MySQL/MariaDB commit each DDL statement: no migration runs in a transaction there.
    ddl_rolls_back = bool(connections[alias].features.can_rollback_ddl)  # no connection needed
    rows = []
    for migration in result.planned:
        row = {**migration.to_dict(), "database": alias}
        row["atomic"] = row["atomic"] and ddl_rolls_back
        row["held"] = migration.key in held
        rows.append(row)
    return rows, refused
