"""Typed progress events of the migration engine: what it reports as each migration starts,
succeeds, fails, is retried, or is unapplied.

The engine never prints. It hands each event to a callback (:data:`OnEvent`); the audit trail
records it, the reporter logs it under its :attr:`Event.name` and forwards what health shows.
No field ever holds a password or SQL text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Protocol


@dataclass(frozen=True)
class Event:
    """One progress event; a subclass per kind."""

    #: The event's name in the log.
    name: ClassVar[str] = ""
    #: The log level it is written at.
    level: ClassVar[str] = "info"

    def fields(self) -> dict[str, Any]:
        """The log fields: every attribute but those left None."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def health(self) -> tuple[str, dict[str, Any]] | None:
        """The message the health server gets for this event, if any."""
        return None


@dataclass(frozen=True)
class MigrationEvent(Event):
    """An event about one migration of one database: these three fields come first."""

    database: str
    app: str
    migration: str

    def named(self) -> dict[str, Any]:
        """The migration as the health server names it."""
        return {"database": self.database, "app": self.app, "name": self.migration}


@dataclass(frozen=True)
class Started(MigrationEvent):
    """A migration starts (before its transaction opens)."""

    name: ClassVar[str] = "migration_started"
    atomic: bool


@dataclass(frozen=True)
class Succeeded(MigrationEvent):
    """A migration was applied (its transaction committed, its row recorded)."""

    name: ClassVar[str] = "migration_applied"
    seconds: float

    def health(self) -> tuple[str, dict[str, Any]]:
        """Counted and timed by the metrics."""
        return "migration_applied", {**self.named(), "seconds": self.seconds}


@dataclass(frozen=True)
class Failed(MigrationEvent):
    """A migration raised. ``partial`` (databases without transactional DDL only): whether any
    statement of its own had changed something before the error."""

    name: ClassVar[str] = "migration_failed"
    level: ClassVar[str] = "error"
    error: str
    seconds: float
    partial: bool | None = None

    def health(self) -> tuple[str, dict[str, Any]]:
        """Counted by the metrics; readiness names the migration."""
        return "migration_failed", self.named()


@dataclass(frozen=True)
class Retried(MigrationEvent):
    """A migration that hit the DDL lock timeout and left nothing behind is tried again."""

    name: ClassVar[str] = "migration_retry"
    level: ClassVar[str] = "warning"
    attempt: int
    retries: int
    delay: float


@dataclass(frozen=True)
class UnapplyStarted(MigrationEvent):
    """A migration starts being unapplied (rollback)."""

    name: ClassVar[str] = "migration_unapply_started"
    atomic: bool


@dataclass(frozen=True)
class Unapplied(MigrationEvent):
    """A migration was unapplied."""

    name: ClassVar[str] = "migration_unapplied"
    seconds: float


@dataclass(frozen=True)
class UnapplyFailed(MigrationEvent):
    """Unapplying a migration raised."""

    name: ClassVar[str] = "migration_unapply_failed"
    level: ClassVar[str] = "error"
    error: str
    seconds: float


#: The engine's callback: one call per event.
OnEvent = Callable[[Event], None]
#: ``report(name, level="info", **fields)``: one named log event (the Reporter's ``event``).
Report = Callable[..., None]


class Sink(Protocol):
    """Where a run's reports go (the pipeline's Reporter): typed engine events and named log
    events of the pipeline's own."""

    def emit(self, event: Event) -> None:
        """Log one engine event (and forward it to health when it matters there)."""

    def event(self, name: str, /, level: str = "info", **fields: Any) -> None:
        """Log one named event."""
