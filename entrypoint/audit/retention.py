"""How much of the audit trail is kept (``ENTRYPOINT_HISTORY_KEEP``), and the pruning the lock
holder does after its run is recorded.

Every start that takes the lock writes a row, so a fleet that restarts pods adds thousands of
rows a day, nearly all saying "nothing pending". The holder prunes those past the bound: the
newest ``runs`` rows of the alias (or those started within ``seconds``) are kept whatever they
say; older ones go only when they are succeeded ``migrate`` runs that applied nothing, no
rollback refers to, and no later run resolved. A run that applied or unapplied migrations (what
``rollback`` works from, and the record of which release changed the schema), one that is
``running``, ``failed``, ``interrupted`` or ``rolled_back``, and the newest row (the fast path
reads how the last run ended) are never pruned. Sequence numbers are never reused, so what was
pruned shows as the gap :func:`~entrypoint.audit.read.gone` counts.

Kept free of Django at import: :mod:`entrypoint.config` builds :class:`Retention`.
"""

from __future__ import annotations

from entrypoint.light import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime
    from typing import Any

    from entrypoint.engine.events import Report

#: At most this many rows go in one run, so that the first start after an upgrade, on a table
#: that grew for years, does not hold the lock for long; the next runs take the rest.
BATCH = 5000


class Retention(NamedTuple):
    """Keep the newest ``runs`` rows, or those younger than ``seconds``; neither: keep all."""

    runs: int | None = None
    seconds: float | None = None

    @property
    def keeps_all(self) -> bool:
        """Whether nothing is ever pruned (``ENTRYPOINT_HISTORY_KEEP=off``)."""
        return self.runs is None and self.seconds is None

    def describe(self) -> str:
        """The bound in words, as logs and ``history`` say it."""
        if self.runs is not None:
            return f"the last {self.runs} runs"
        if self.seconds is not None:
            days = self.seconds / 86400
            return f"{days:g} days" if days >= 1 else f"{self.seconds / 3600:g} hours"
        return "every run"


def _prunable(table: str) -> str:
    # Only what says nothing more than "this release started and found nothing to do".
    return (
        "kind = 'migrate' AND status = 'succeeded' AND (applied IS NULL OR applied = '[]') "
        f"AND resolved_by IS NULL AND id NOT IN (SELECT ref FROM (SELECT rollback_of AS ref "
        f"FROM {table} WHERE rollback_of IS NOT NULL) refs)"
    )


def prune(alias: str, keep: Retention, report: Report, now: datetime | None = None) -> int:
    """Delete what ``keep`` lets go of on ``alias`` (call under the migration lock, after this
    run's row is final); return how many rows went. Never raises: a role that may not delete
    (``history_prune_failed``) keeps its rows, and the run goes on."""
    from django.db import connections

    from entrypoint.audit.table import TABLE, dialect, utc_now
    from entrypoint.db.reasons import first_line

    if keep.keeps_all:
        return 0
    connection = connections[alias]
    try:
        with connection.cursor() as cursor:
            moment = dialect(connection.vendor).to_db(now or utc_now())
            bound = _bound(cursor, alias, keep, moment)
            if bound is None:
                return 0
            condition, params = bound
            # The oldest BATCH rows bound this run's share.
            cursor.execute(
                f"SELECT seq FROM {TABLE} WHERE db_alias = %s ORDER BY seq LIMIT 1 OFFSET %s",
                [alias, BATCH - 1],
            )
            row = cursor.fetchone()
            if row is not None:
                condition += " AND seq <= %s"
                params.append(int(row[0]))
            cursor.execute(
                f"DELETE FROM {TABLE} WHERE db_alias = %s AND {condition} AND {_prunable(TABLE)}",
                [alias, *params],
            )
            pruned = max(int(cursor.rowcount or 0), 0)
    except Exception as exc:
        report(
            "history_prune_failed",
            level="warning",
            database=alias,
            error=f"{type(exc).__name__}: {first_line(exc)}",
        )
        return 0
    if pruned:
        report("history_pruned", database=alias, runs=pruned, keep=keep.describe())
    return pruned


def _bound(cursor: Any, alias: str, keep: Retention, now: Any) -> tuple[str, list[Any]] | None:
    """The condition on the rows ``keep`` lets go of (before the prunable test), or None when
    none: below the newest ``runs`` rows, or started before ``now - seconds`` and older than
    the newest row (``now`` as the table stores it)."""
    from entrypoint.audit.table import TABLE as table

    if keep.runs is not None:
        cursor.execute(
            f"SELECT seq FROM {table} WHERE db_alias = %s ORDER BY seq DESC LIMIT 1 OFFSET %s",
            [alias, keep.runs],
        )
        row = cursor.fetchone()
        return None if row is None else ("seq <= %s", [int(row[0])])
    cursor.execute(f"SELECT MAX(seq) FROM {table} WHERE db_alias = %s", [alias])
    row = cursor.fetchone()
    if row is None or row[0] is None:
        return None
    return "started_at < %s AND seq < %s", [_earlier(now, keep.seconds or 0.0), int(row[0])]


def _earlier(moment: Any, seconds: float) -> Any:
    """``moment`` less ``seconds``, in the form the table stores it (a datetime, or ISO text)."""
    from datetime import datetime, timedelta

    if isinstance(moment, datetime):
        return moment - timedelta(seconds=seconds)
    from entrypoint.audit.table import Dialect

    parsed = Dialect.from_db(moment)
    assert parsed is not None  # noqa: S101 - the text was written by Dialect.to_db just now
    return Dialect().to_db(parsed - timedelta(seconds=seconds))
