"""Splitting a classified plan by the run's :class:`~entrypoint.plan.types.Policy`: what the
pre-deploy phase applies, what it holds, and the targets that apply exactly the first part.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from entrypoint.plan.types import DeployPhase, Node, PlanCannotBeSplit, PlannedMigration, Policy


def split_plan(
    planned: Iterable[PlannedMigration], policy: Policy, graph: Any
) -> tuple[list[PlannedMigration], list[PlannedMigration]]:
    """Split classified pending migrations into (to apply now, held) under ``policy``.

    ``all`` and ``post-deploy`` apply everything. ``pre-deploy`` holds every post-deploy
    migration and applies the pre-deploy ones in plan order; a pre-deploy migration that
    depends on a held one (directly or through other pending migrations) cannot run without it,
    so the plan cannot be split: PlanCannotBeSplit (exit 65) names both. ``graph`` is the
    loader's ``MigrationGraph``, for dependencies.
    """
    planned = list(planned)
    if policy is not Policy.PRE_DEPLOY:
        return planned, []
    apply: list[PlannedMigration] = []
    held: list[PlannedMigration] = []
    holding: dict[Node, Node] = {}
    for migration in planned:
        key = migration.key
        if migration.phase is DeployPhase.POST_DEPLOY:
            holding[key] = key
            held.append(migration)
            continue
        parents = sorted(parent.key for parent in graph.node_map[key].parents)
        blocker = next((holding[parent] for parent in parents if parent in holding), None)
        if blocker is not None:
            raise PlanCannotBeSplit(key, blocker)
        apply.append(migration)
    return apply, held


def plan_targets(migrations: Iterable[PlannedMigration], graph: Any) -> list[Node]:
    """The given migrations that none of the others depends on, in their order.

    Migrating to these targets applies exactly the migrations split_plan chose to apply, since
    none of those depends on a held one.
    """
    chosen = [migration.key for migration in migrations]
    wanted = set(chosen)
    return [
        key
        for key in chosen
        if not any(child.key in wanted for child in graph.node_map[key].children)
    ]
