"""The entrypoint's Prometheus metrics, registered in a registry passed in (never a global one)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from entrypoint.health.phases import RunPhase

if TYPE_CHECKING:
    # The entrypoint itself only starts and feeds the health child: prometheus_client is
    # imported where metrics are built and served (in the child), not at every start.
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

import math
from dataclasses import dataclass

from entrypoint import __version__

# Seconds; migrations range from milliseconds to a long data migration or index build.
MIGRATION_DURATION_BUCKETS = (
    0.01,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    math.inf,
)


@dataclass(frozen=True)
class HealthMetrics:
    """The entrypoint's metrics, registered in one registry by :func:`build_metrics`."""

    phase: Gauge
    ready: Gauge
    database_wait: Gauge
    lock_wait: Gauge
    migrations_applied: Counter
    migration_duration: Histogram
    migration_failures: Counter
    lock_holder_changes: Counter
    lock_lost: Counter
    migrations_held: Counter
    migrations_missing: Gauge
    migrations_wait: Gauge
    run_info: Info

    def set_phase(self, phase: RunPhase) -> None:
        """Mark ``phase`` as the current one (1) and every other phase 0."""
        for each in RunPhase:
            self.phase.labels(phase=each).set(1 if each is phase else 0)
        self.ready.set(1 if phase is RunPhase.READY else 0)


def build_metrics(registry: CollectorRegistry) -> HealthMetrics:
    """Register the entrypoint's metrics in ``registry``, starting in the first phase."""
    from prometheus_client import Counter, Gauge, Histogram, Info

    by_db = ("database",)
    metrics = HealthMetrics(
        phase=Gauge(
            "entrypoint_phase",
            "Current phase of the entrypoint run (1 for the current phase).",
            ("phase",),
            registry=registry,
        ),
        ready=Gauge(
            "entrypoint_ready",
            "1 once every database is migrated, else 0.",
            registry=registry,
        ),
        database_wait=Gauge(
            "entrypoint_database_wait_seconds",
            "Seconds spent waiting for the database to accept connections.",
            by_db,
            registry=registry,
        ),
        lock_wait=Gauge(
            "entrypoint_lock_wait_seconds",
            "Seconds spent waiting for the migration lock.",
            by_db,
            registry=registry,
        ),
        migrations_applied=Counter(
            "entrypoint_migrations_applied",
            "Migrations applied by this run.",
            by_db,
            registry=registry,
        ),
        migration_duration=Histogram(
            "entrypoint_migration_duration_seconds",
            "Time taken by each applied migration.",
            by_db,
            buckets=MIGRATION_DURATION_BUCKETS,
            registry=registry,
        ),
        migration_failures=Counter(
            "entrypoint_migration_failures",
            "Migrations that raised.",
            by_db,
            registry=registry,
        ),
        lock_holder_changes=Counter(
            "entrypoint_lock_holder_changes",
            "Times another holder of the migration lock was seen while waiting.",
            by_db,
            registry=registry,
        ),
        lock_lost=Counter(
            "entrypoint_lock_lost",
            "Times this run lost the migration lock while holding it (it then stopped).",
            by_db,
            registry=registry,
        ),
        migrations_held=Counter(
            "entrypoint_migrations_held",
            "Pending migrations held back by the deploy-phase policy.",
            by_db,
            registry=registry,
        ),
        migrations_missing=Gauge(
            "entrypoint_migrations_missing",
            "Migrations this code needs that the database does not hold yet (wait mode).",
            by_db,
            registry=registry,
        ),
        migrations_wait=Gauge(
            "entrypoint_migrations_wait_seconds",
            "Seconds spent waiting for the migrations this code needs (wait mode).",
            by_db,
            registry=registry,
        ),
        run_info=Info(
            "entrypoint_run",
            "The release, Django version and entrypoint version of this run.",
            registry=registry,
        ),
    )
    metrics.set_phase(RunPhase.WAITING_FOR_DATABASE)
    metrics.run_info.info({"release": "", "django_version": "", "version": __version__})
    return metrics
