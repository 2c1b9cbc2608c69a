"""How a run stands in the audit trail (:class:`Status`), what it did (:class:`Kind`) and how far
the one holding the lock has got (:class:`Progress`): what the no-op fast path and a replica
waiting light read, so this module imports next to nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

from entrypoint.light import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from typing import Any

#: The audit table (see :mod:`.table`).
TABLE = "entrypoint_migration_run"


class Status(enum.StrEnum):
    """How a run stands in the audit trail."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    ROLLED_BACK = "rolled_back"


class Kind(enum.StrEnum):
    """What a run did: migrate, or roll back an earlier run."""

    MIGRATE = "migrate"
    ROLLBACK = "rollback"


#: How a run ends before Django's post-migrate work (content types, permissions) was done; a run
#: still ``running`` under the lock is one whose holder died (or, with the lock off, one that may
#: still be at it: running Django's migrate once more is harmless then).
UNFINISHED = frozenset({Status.INTERRUPTED, Status.FAILED, Status.RUNNING})


#: The latest run on an alias (one parameter), as a waiter reads it through its lock connection.
PROGRESS_QUERY = (
    f"SELECT id, status, current_migration, planned, applied FROM {TABLE} "
    "WHERE db_alias = %s ORDER BY seq DESC LIMIT 1"
)


class Progress(NamedTuple):
    """How far the run holding the lock has got: its id, the migration in progress (None
    between two), and how many of its plan it has applied."""

    run: str
    migration: str | None
    applied: int
    planned: int

    def fields(self) -> dict[str, Any]:
        """The fields a ``lock_waiting`` event carries."""
        return {
            "holder_run": self.run,
            "migration": self.migration,
            "applied": self.applied,
            "planned": self.planned,
        }


def progress_of(rows: Sequence[tuple[Any, ...]]) -> Progress | None:
    """The progress in the row :data:`PROGRESS_QUERY` read; None unless that run is still
    ``running`` (the holder is then setting up, planning or in its post-migrate work)."""
    if not rows:
        return None
    run, status, current, planned, applied = rows[0]
    if status != Status.RUNNING.value:
        return None

    def count(text: Any) -> int:
        import json

        try:
            value = json.loads(text) if text else []
        except ValueError:
            return 0
        return len(value) if isinstance(value, list) else 0

    return Progress(
        str(run), None if current is None else str(current), count(applied), count(planned)
    )
