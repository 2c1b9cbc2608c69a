"""The words of deploy planning: a migration's :class:`DeployPhase`, the :class:`Policy` of one
run (``ENTRYPOINT_PHASE``), and the classified migration and operation.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

from entrypoint.errors import PolicyError
from entrypoint.light import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from typing import Any, Literal

    from entrypoint.plan.locknotes import LockNote

#: A migration's node in Django's migration graph: (app label, migration name).
Node = tuple[str, str]

if TYPE_CHECKING:
    #: Where a migration's explicit mark comes from.
    MarkedBy = Literal["settings", "entrypoint", "safemigrate", "syzygy"]


#: The attribute of a ``Migration`` class that sets its deploy phase explicitly.
MARK_ATTRIBUTE = "entrypoint_phase"


#: The Django setting that marks migrations the project cannot edit (those of installed packages).
OVERRIDES_SETTING = "ENTRYPOINT_MIGRATION_PHASES"


class DeployPhase(enum.StrEnum):
    """When a migration may run relative to the deploy of the code that needs it."""

    PRE_DEPLOY = "pre-deploy"
    POST_DEPLOY = "post-deploy"


class Policy(enum.StrEnum):
    """Which part of a plan one run applies (``ENTRYPOINT_PHASE``)."""

    ALL = "all"
    PRE_DEPLOY = "pre-deploy"
    POST_DEPLOY = "post-deploy"


class PlanCannotBeSplit(PolicyError):
    """A pre-deploy migration depends on a post-deploy one that the pre-deploy phase holds."""

    def __init__(self, migration: Node, held: Node) -> None:
        self.migration = migration
        self.held = held
        name, held_name = dotted(migration), dotted(held)
        message = (
            f"cannot split the plan for the pre-deploy phase: {name} is pre-deploy but depends "
            f"on {held_name}, which is post-deploy and held; set {MARK_ATTRIBUTE} = "
            f'"post-deploy" on {name} (settings.{OVERRIDES_SETTING} for a migration you cannot '
            "edit) or move it into the next release"
        )
        super().__init__(message)


class OperationPhase(NamedTuple):
    """The deploy phase of one operation, and why."""

    phase: DeployPhase
    reason: str
    #: What the summary of a pre-deploy migration counts this operation as.
    kind: str
    #: Pre-deploy, but worth a reader's attention (it may fail on existing data).
    caution: bool = False
    #: It cannot be judged from outside; the migration needs a mark.
    needs_mark: bool = False


class ColumnBefore(NamedTuple):
    """What the migration state says about one column just before an operation runs."""

    #: Its type as Django's schema editor writes it on this server (``db_type``).
    type: str
    null: bool
    #: A CHECK constraint covers it (its own, such as a positive integer's, or the model's).
    checked: bool = False
    #: An index or a unique or primary key constraint covers it.
    indexed: bool = False


class OperationSQL(NamedTuple):
    """The SQL one pending operation would run on its server, collected the way ``sqlmigrate``
    collects it, or why it could not be collected."""

    #: ``postgresql`` or ``mysql`` (the statements' grammar).
    vendor: str
    statements: tuple[str, ...] = ()
    #: Why nothing could be collected (the operation needs data or the live connection).
    failure: str | None = None
    #: The columns the statements name, as they are before the operation: (table, column).
    columns: Mapping[tuple[str, str], ColumnBefore] = {}
    #: The project state after the operation, as collecting moved a copy on (None when it did
    #: not get that far): the classifier goes on from it instead of moving its own on again,
    #: which on a rendered state reloads the models twice per operation.
    after: Any = None


if TYPE_CHECKING:
    #: Collects one operation's SQL: (operation, app label, project state just before it).
    Collector = Callable[[Any, str, Any], OperationSQL]


class PlannedMigration(NamedTuple):
    """One pending migration with its deploy phase and what undoing it would take."""

    app: str
    name: str
    phase: DeployPhase
    reasons: tuple[str, ...]
    atomic: bool
    reversible: bool
    marked_by: MarkedBy | None = None
    #: An operation could not be judged (``RunPython``, ``RunSQL``, a third-party operation)
    #: and the migration carries no mark.
    needs_mark: bool = False
    #: One entry per operation, in order, whatever the mark says.
    operations: tuple[OperationPhase, ...] = ()
    #: Locks held for as long as the table is large (rewrites, scans, index builds) on the
    #: server the plan was classified for; empty when no server was given.
    locks: tuple[LockNote, ...] = ()

    @property
    def key(self) -> Node:
        """The migration's node in Django's migration graph."""
        return (self.app, self.name)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``plan --format json``."""
        return {
            "app": self.app,
            "name": self.name,
            "phase": self.phase.value,
            "reasons": list(self.reasons),
            "atomic": self.atomic,
            "reversible": self.reversible,
            "needs_mark": self.needs_mark,
            "locks": [note.to_dict() for note in self.locks],
        }


def dotted(node: Node) -> str:
    """``app.name`` of a migration node."""
    return f"{node[0]}.{node[1]}"
