"""Where a run is (:class:`RunPhase`): the words ``/readyz`` and the metrics use, on their own so
that a start that waits light names its phase without the health state's machinery."""

from __future__ import annotations

import enum


class RunPhase(enum.StrEnum):
    """Where a run is, as ``/readyz`` and the ``entrypoint_phase`` metric report it."""

    WAITING_FOR_DATABASE = "waiting_for_database"
    WAITING_FOR_LOCK = "waiting_for_lock"
    #: ``wait`` mode: the database does not hold every migration this code needs yet.
    WAITING_FOR_MIGRATIONS = "waiting_for_migrations"
    MIGRATING = "migrating"
    FAILED = "failed"
    READY = "ready"
