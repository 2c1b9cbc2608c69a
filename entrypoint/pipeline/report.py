"""Where a run's events go: the one log, and the health child when one runs.

Kept free of Django and of the migration machinery, so that the no-op fast path can report
without importing either.
"""

from __future__ import annotations

import os

from entrypoint.light import TYPE_CHECKING, Protocol
from entrypoint.log import configure, get_logger

if TYPE_CHECKING:
    from typing import Any

    from entrypoint.config import Settings
    from entrypoint.engine.events import Event
    from entrypoint.health.phases import RunPhase


class HealthSink(Protocol):
    """What a run needs of the health child: a way to send it state."""

    def send(self, kind: str, **fields: Any) -> None:
        """Forward one state change; never raises."""


class Reporter:
    """Fans a run's events out to the log and the health child."""

    def __init__(self, health: HealthSink | None = None, logger: Any = None) -> None:
        self.health = health
        self.logger = logger if logger is not None else get_logger()

    def phase(self, phase: RunPhase, database: str | None = None) -> None:
        """A new phase of the run (the readiness endpoint shows it)."""
        self.notify("phase", phase=str(phase), database=database)

    def ready(
        self,
        applied: int,
        seconds: float,
        *,
        fast_path: bool = False,
        files: int | None = None,
        manifest: str | None = None,
    ) -> None:
        """The run is done: logged once as ``ready``, and readiness turns 200."""
        extra: dict[str, Any] = {}
        if fast_path:
            extra = {"fast_path": True, "files": files, "manifest": manifest or "file"}
        self.logger.info("ready", applied=applied, seconds=round(seconds, 3), **extra)
        self.notify("ready")

    def failed(self, error: BaseException) -> None:
        """The run failed: readiness turns `failed` (only the error's class is shown there)."""
        self.notify("failed", error=type(error).__name__)

    def run_info(self, release: str | None, django_version: str | None = None) -> None:
        """The run-info metric: release, Django version, entrypoint version."""
        from entrypoint import __version__

        if django_version is None:
            import django

            django_version = django.get_version()
        self.notify(
            "run_info", release=release or "", django_version=django_version, version=__version__
        )

    def emit(self, event: Event) -> None:
        """Log one engine event and forward it to the health child when it matters there."""
        getattr(self.logger, event.level)(event.name, **event.fields())
        message = event.health()
        if message is not None:
            self.notify(message[0], **message[1])

    def event(self, name: str, /, level: str = "info", **fields: Any) -> None:
        """Log one named event of the pipeline's own."""
        getattr(self.logger, level)(name, **fields)

    def pushed(self, outcome: str) -> None:
        """What the health child said of its push to the Pushgateway (only logged)."""
        word, _, detail = outcome.partition(" ")
        if word == "pushed":
            self.logger.info("metrics_pushed")
        else:
            self.logger.warning("metrics_push_failed", error=detail or outcome)

    def notify(self, kind: str, **fields: Any) -> None:
        """Send one message to the health child, when one runs."""
        if self.health is not None:
            self.health.send(kind, **fields)


def new_run_id() -> str:
    """A short random id naming this run in logs, on its connections and in the audit trail."""
    return os.urandom(6).hex()


def configure_logging(settings: Settings, run_id: str) -> Any:
    """The one log of a command, each event carrying the run id (and the release, when set)."""
    context = {"run": run_id, **({"release": settings.release} if settings.release else {})}
    configure(settings.log_format, settings.log_level, context=context)
    return get_logger()
