"""What Django's loader and ``migration_plan`` would say, from the manifest's graph and the rows of
``django_migrations``, without Django: applied nodes (squashes resolved), leaf nodes, what is
unapplied, and an inconsistent history.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from entrypoint.fastpath.verdict import Doubt
from entrypoint.plan.types import Node


def applied_nodes(
    replacements: Sequence[tuple[Node, Sequence[Node]]], recorded: Iterable[Node]
) -> set[Node]:
    """The nodes Django counts as applied, given the rows of ``django_migrations``.

    As Django's loader does: a squashed migration counts as applied exactly when every node it
    replaces is recorded (its own row alone does not count). Where only some are, Django drops
    the squash from the graph and falls back to the replaced nodes, a graph the manifest does
    not hold: Doubt. So does a squash of squashes, whose outcome depends on the loader's order.
    """
    applied = set(recorded)
    squashes = {key for key, _ in replacements}
    for key, replaced in replacements:
        if any(node in squashes for node in replaced):
            msg = f"{key[0]}.{key[1]} replaces another squashed migration"
            raise Doubt(msg)
        done = [node in applied for node in replaced]
        if all(done):
            applied.add(key)
        elif any(done):
            msg = f"the squashed migration {key[0]}.{key[1]} is partly applied"
            raise Doubt(msg)
        else:
            applied.discard(key)
    return applied


def leaf_nodes(graph: Mapping[Node, Sequence[Node]]) -> list[Node]:
    """Django's leaf nodes: those without a child in their own app, sorted."""
    inner = {
        parent for node, parents in graph.items() for parent in parents if parent[0] == node[0]
    }
    return sorted(node for node in graph if node not in inner)


def unapplied(graph: Mapping[Node, Sequence[Node]], applied: set[Node]) -> list[Node]:
    """What Django's ``migration_plan`` on the leaf nodes would apply, in no particular order,
    given the nodes :func:`applied_nodes` counts as applied.

    Like Django, a leaf that is applied adds nothing, even when one of its ancestors is not (a
    history ``migrate`` itself calls inconsistent); an unapplied leaf adds itself and every
    unapplied ancestor, however deep.
    """
    planned: list[Node] = []
    seen: set[Node] = set()
    for leaf in leaf_nodes(graph):
        if leaf in applied:
            continue
        stack = [leaf]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node not in applied:
                planned.append(node)
            stack.extend(graph.get(node, ()))
    return planned


def inconsistency(
    graph: Mapping[Node, Sequence[Node]], rows: set[Node], applied: set[Node]
) -> tuple[Node, Node] | None:
    """A recorded migration and a dependency of it that is neither recorded nor counted as
    applied (``applied``, from :func:`applied_nodes`: a squash whose replaced migrations are all
    recorded), as Django's ``check_consistent_history`` finds them, which makes its migrate
    refuse; or None."""
    applied = rows | applied
    for node in sorted(rows):
        for parent in graph.get(node, ()):
            if parent not in applied:
                return node, parent
    return None
