"""Where events go: the one log (captured as event dicts) and the health child (a fake sink)."""

from __future__ import annotations

from typing import Any

from entrypoint.engine import events
from entrypoint.health.state import RunPhase
from entrypoint.log import capture_events
from entrypoint.pipeline.report import Reporter


class Sink:
    """What the health child would be sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, kind: str, **fields: Any) -> None:
        self.sent.append((kind, fields))


def test_an_applied_migration_is_logged_and_counted_by_health() -> None:
    """A typed event is logged under its name and level, and forwarded in health's words."""
    sink = Sink()
    with capture_events() as logs:
        Reporter(health=sink).emit(events.Succeeded("default", "shop", "0002", seconds=0.25))
    assert logs == [
        {
            "event": "migration_applied",
            "log_level": "info",
            "database": "default",
            "app": "shop",
            "migration": "0002",
            "seconds": 0.25,
        }
    ]
    assert sink.sent == [
        (
            "migration_applied",
            {"database": "default", "app": "shop", "name": "0002", "seconds": 0.25},
        )
    ]


def test_a_failed_migration_is_an_error_without_its_unset_fields() -> None:
    """``partial`` is left out when the database could tell nothing of it."""
    with capture_events() as logs:
        Reporter().emit(
            events.Failed("default", "shop", "0003", error="ProgrammingError", seconds=0.1)
        )
    assert logs[0]["log_level"] == "error"
    assert "partial" not in logs[0]


def test_a_started_migration_is_only_logged() -> None:
    """Health hears of phases and outcomes, not of every start."""
    sink = Sink()
    with capture_events():
        Reporter(health=sink).emit(events.Started("default", "shop", "0002", atomic=True))
    assert sink.sent == []


def test_ready_is_logged_once_and_turns_readiness() -> None:
    """The one route to ready: the log line (with the fast path's fields when it was taken)
    and the health message."""
    sink = Sink()
    reporter = Reporter(health=sink)
    with capture_events() as logs:
        reporter.phase(RunPhase.MIGRATING, "default")
        reporter.ready(0, 0.0123, fast_path=True, files=12, manifest="database")
    assert logs == [
        {
            "event": "ready",
            "log_level": "info",
            "applied": 0,
            "seconds": 0.012,
            "fast_path": True,
            "files": 12,
            "manifest": "database",
        }
    ]
    assert sink.sent == [("phase", {"phase": "migrating", "database": "default"}), ("ready", {})]
