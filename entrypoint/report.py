"""Where a run's events go: the log, and the health server when one runs.

Kept apart from the runner so that the no-op fast path can report without importing the
migration machinery (or Django).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from entrypoint.log import get_logger


class HealthSink(Protocol):
    """What the runner needs of the health server: a way to send it state."""

    def send(self, kind: str, **fields: Any) -> None:
        """Forward one state change; never raises."""


@dataclass
class Reporter:
    """Fans events out to the log and the health server."""

    health: HealthSink | None = None
    logger: Any = field(default_factory=get_logger)

    def phase(self, phase: str, database: str | None = None) -> None:
        """A new phase of the run (the readiness endpoint shows it)."""
        if phase == "ready":
            self.notify("ready")
        else:
            self.notify("phase", phase=phase, database=database)

    def failed(self, error: BaseException) -> None:
        """The run failed: readiness turns `failed` (only the error's class is shown there)."""
        self.notify("failed", error=type(error).__name__)

    def run_info(self, release: str | None, django_version: str | None = None) -> None:
        """The run-info metric: release, Django version, entrypoint version."""
        from entrypoint import __version__

        if django_version is None:
            import django

            django_version = django.get_version()
        self.notify("run_info", release=release or "", django_version=django_version,
                     version=__version__)  # fmt: skip

    def event(self, name: str, /, level: str = "info", **fields: Any) -> None:
        """Log one event and forward it to the health server when it matters there."""
        getattr(self.logger, level)(name, **fields)
        if name == "migration_applied":
            self.notify("migration_applied", database=fields["database"], app=fields["app"],
                         name=fields["migration"], seconds=fields["seconds"])  # fmt: skip
        elif name == "migration_failed":
            self.notify("migration_failed", database=fields["database"], app=fields["app"],
                         name=fields["migration"])  # fmt: skip

    def notify(self, kind: str, **fields: Any) -> None:
        """Send one message to the health server, when one runs."""
        if self.health is not None:
            self.health.send(kind, **fields)


def new_run_id() -> str:
    """A short random id naming this run in logs, the lock's application_name and the audit."""
    return uuid.uuid4().hex[:12]


def push_metrics(health: Any, url: str, logger: Any) -> None:
    """PUT the health server's metrics to a Prometheus Pushgateway; a failure is only logged.

    Jobs and initContainers end before a scrape could see them: the push keeps their metrics.
    The grouping key is job ``django-entrypoint`` and instance the host name.
    """
    import socket
    import urllib.error
    import urllib.parse
    import urllib.request

    host = "127.0.0.1" if health.host in {"0.0.0.0", "", "::"} else health.host  # noqa: S104
    source = f"http://{f'[{host}]' if ':' in host else host}:{health.port}/metrics"
    instance = urllib.parse.quote(socket.gethostname(), safe="")
    target = f"{url.rstrip('/')}/metrics/job/django-entrypoint/instance/{instance}"
    try:
        with urllib.request.urlopen(source, timeout=5) as answer:
            body = answer.read()
        request = urllib.request.Request(target, data=body, method="PUT")  # noqa: S310
        request.add_header("Content-Type", "text/plain; version=0.0.4")
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - http(s) only
            logger.info("metrics_pushed", status=answer.status)
    except (OSError, urllib.error.URLError) as exc:
        logger.warning("metrics_push_failed", error=f"{type(exc).__name__}: {exc}")
