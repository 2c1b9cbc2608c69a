"""Reading the audit trail: the runs of a database, newest first, and how the latest one ended."""

from __future__ import annotations

from typing import Any

from entrypoint.audit.rows import RunRow
from entrypoint.audit.status import PROGRESS_QUERY, Progress, progress_of
from entrypoint.audit.table import COLUMNS, TABLE, table_exists

__all__ = ["PROGRESS_QUERY", "Progress", "last_status", "progress_of", "read_runs"]


def read_runs(alias: str, limit: int | None = None) -> list[RunRow]:
    """The runs recorded on ``alias``, newest first; empty when the table does not exist yet."""
    from django.db import connections

    if not table_exists(alias):
        return []
    query = f"SELECT {', '.join(COLUMNS)} FROM {TABLE} WHERE db_alias = %s ORDER BY seq DESC"
    params: list[Any] = [alias]
    if limit is not None:
        query += " LIMIT %s"
        params.append(int(limit))
    with connections[alias].cursor() as cursor:
        cursor.execute(query, params)
        return [RunRow.from_row(row) for row in cursor.fetchall()]


def last_status(alias: str) -> str | None:
    """The status of the latest run recorded on ``alias``, or None when there is none."""
    from django.db import connections

    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"SELECT status FROM {TABLE} WHERE db_alias = %s ORDER BY seq DESC LIMIT 1", [alias]
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])


def gone(alias: str) -> int:
    """How many runs are no longer in the audit table on ``alias``'s database: pruned by a lock
    holder (``ENTRYPOINT_HISTORY_KEEP``) or deleted by hand. Sequence numbers are never reused
    (each run takes the highest plus one under the lock), so the gaps below the highest count
    them; 0 when the table does not exist."""
    from django.db import connections

    if not table_exists(alias):
        return 0
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM {TABLE}")
        row = cursor.fetchone()
    count, highest = (int(row[0]), int(row[1])) if row else (0, 0)
    return max(highest - count, 0)
