"""Typed rows of the audit trail: a run's steps and the row as read back, with its
:class:`Status` and :class:`Kind` (from :mod:`.status`). Pure and free of Django.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entrypoint.audit.status import UNFINISHED, Kind, Status
from entrypoint.audit.table import COLUMNS, Dialect
from entrypoint.plan.types import Node, dotted

__all__ = ["UNFINISHED", "Kind", "RunRow", "Status", "Step", "dumps_json", "iso_utc"]


def _node(text: str | None) -> Node | None:
    if not text or "." not in text:
        return None
    app, name = text.split(".", 1)
    return app, name


@dataclass(frozen=True)
class Step:
    """One migration a run applied (or, for a rollback, unapplied), with its duration."""

    app: str
    name: str
    duration_ms: int

    @property
    def node(self) -> Node:
        """(app, name)."""
        return self.app, self.name

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{app, name, duration_ms}``."""
        return {"app": self.app, "name": self.name, "duration_ms": self.duration_ms}


@dataclass(frozen=True)
class RunRow:
    """One row of the audit table."""

    id: str
    database: str
    seq: int
    kind: Kind
    status: Status
    release: str | None
    phase: str | None
    host: str | None
    pid: int | None
    started_at: datetime | None
    finished_at: datetime | None
    lock_wait_ms: int | None
    total_ms: int | None
    planned: tuple[Node, ...]
    applied: tuple[Step, ...]
    current_migration: Node | None
    current_atomic: bool | None
    error: str | None
    rollback_of: str | None
    resolved_by: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> RunRow:
        """Build from a row selected with the columns in ``COLUMNS`` order."""
        values = dict(zip(COLUMNS, row, strict=True))
        planned = tuple(
            (str(item["app"]), str(item["name"])) for item in _json_list(values["planned"])
        )
        applied = tuple(
            Step(str(item["app"]), str(item["name"]), int(item.get("duration_ms") or 0))
            for item in _json_list(values["applied"])
        )
        atomic = values["current_atomic"]
        return cls(
            id=str(values["id"]),
            database=str(values["db_alias"]),
            seq=int(values["seq"]),
            kind=Kind(values["kind"]),
            status=Status(values["status"]),
            release=values["release_label"],
            phase=values["phase"],
            host=values["host"],
            pid=None if values["pid"] is None else int(values["pid"]),
            started_at=Dialect.from_db(values["started_at"]),
            finished_at=Dialect.from_db(values["finished_at"]),
            lock_wait_ms=values["lock_wait_ms"],
            total_ms=values["total_ms"],
            planned=planned,
            applied=applied,
            current_migration=_node(values["current_migration"]),
            current_atomic=None if atomic is None else bool(atomic),
            error=values["error"],
            rollback_of=values["rollback_of"],
            resolved_by=values["resolved_by"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``history --format json``."""
        return {
            "id": self.id,
            "kind": self.kind,
            "database": self.database,
            "status": self.status,
            "release": self.release,
            "phase": self.phase,
            "host": self.host,
            "pid": self.pid,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "lock_wait_ms": self.lock_wait_ms,
            "total_ms": self.total_ms,
            "planned": [{"app": app, "name": name} for app, name in self.planned],
            "applied": [step.to_dict() for step in self.applied],
            "current_migration": dotted(self.current_migration) if self.current_migration else None,
            "current_atomic": self.current_atomic,
            "error": self.error,
            "rollback_of": self.rollback_of,
            "resolved_by": self.resolved_by,
        }


def iso_utc(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _json_list(text: Any) -> list[dict[str, Any]]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def dumps_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
