"""The audit table ``entrypoint_migration_run``: its columns, how each vendor stores a moment in
time and long text, and the statements that create and look for it.

The table is created by the entrypoint itself (``CREATE TABLE IF NOT EXISTS``, under the
migration lock); no app is installed and Django's own migrations never touch it. The SQL is plain
and portable (PostgreSQL, SQLite, MySQL/MariaDB); the one difference, how a moment in time is
stored, is kept in :class:`Dialect`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from entrypoint.audit.status import TABLE
from entrypoint.db.reasons import first_line
from entrypoint.errors import MigrationFailed

__all__ = [
    "COLUMNS",
    "TABLE",
    "Dialect",
    "create_table_sql",
    "dialect",
    "ensure_table",
    "table_exists",
    "utc_now",
]

# Column order of every SELECT; RunRow.from_row reads them in this order.
COLUMNS = (
    "id",
    "db_alias",
    "seq",
    "kind",
    "status",
    "release_label",
    "phase",
    "host",
    "pid",
    "started_at",
    "finished_at",
    "lock_wait_ms",
    "total_ms",
    "planned",
    "applied",
    "current_migration",
    "current_atomic",
    "error",
    "rollback_of",
    "resolved_by",
)


@dataclass(frozen=True)
class Dialect:
    """How one database vendor stores the columns that differ: moments in time and long text.

    PostgreSQL and MySQL/MariaDB get real timestamp columns (UTC); every other backend stores
    ISO 8601 text in UTC, which sorts in time order.
    """

    timestamp: str = "varchar(40)"
    text: str = "text"

    def to_db(self, moment: datetime) -> Any:
        """The parameter that stores ``moment`` (an aware UTC datetime)."""
        if self.timestamp.startswith("timestamp"):
            return moment
        if self.timestamp.startswith("datetime"):
            return moment.astimezone(UTC).replace(tzinfo=None)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    @staticmethod
    def from_db(value: Any) -> datetime | None:
        """An aware UTC datetime from what the database returned."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if not isinstance(value, datetime):
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


DIALECTS = {
    "postgresql": Dialect(timestamp="timestamp with time zone", text="text"),
    "mysql": Dialect(timestamp="datetime(6)", text="longtext"),
}


def dialect(vendor: str) -> Dialect:
    """The dialect of a Django ``connection.vendor``."""
    return DIALECTS.get(vendor, Dialect())


def create_table_sql(vendor: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of the audit table on ``vendor``."""
    d = dialect(vendor)
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "id varchar(32) NOT NULL, "
        "db_alias varchar(100) NOT NULL, "
        "seq integer NOT NULL, "
        "kind varchar(16) NOT NULL, "
        "status varchar(16) NOT NULL, "
        "release_label varchar(200) NULL, "
        "phase varchar(16) NULL, "
        "host varchar(255) NULL, "
        "pid integer NULL, "
        f"started_at {d.timestamp} NOT NULL, "
        f"finished_at {d.timestamp} NULL, "
        "lock_wait_ms integer NULL, "
        "total_ms integer NULL, "
        f"planned {d.text} NULL, "
        f"applied {d.text} NULL, "
        "current_migration varchar(255) NULL, "
        "current_atomic integer NULL, "
        f"error {d.text} NULL, "
        "rollback_of varchar(32) NULL, "
        "resolved_by varchar(32) NULL, "
        "PRIMARY KEY (id, db_alias))"
    )


def utc_now() -> datetime:
    """The current moment, aware, in UTC."""
    return datetime.now(UTC)


def ensure_table(alias: str) -> None:
    """Create the audit table on ``alias`` unless it exists (call under the migration lock).

    It is looked for first: PostgreSQL checks the CREATE privilege on the schema before it
    looks whether the table exists, so ``CREATE TABLE IF NOT EXISTS`` fails for a role without
    DDL even when the table is there, and such a role may still record a run.
    """
    from django.db import connections

    connection = connections[alias]
    try:
        if table_exists(alias):
            return
        with connection.cursor() as cursor:
            cursor.execute(create_table_sql(connection.vendor))
    except Exception as exc:
        msg = (
            f"cannot create the audit table {TABLE} on database {alias!r}: "
            f"{type(exc).__name__}: {first_line(exc)}; let the migrating user create tables "
            "there, as migrate itself needs"
        )
        raise MigrationFailed(msg) from exc


def audit_failed(alias: str, doing: str, exc: BaseException) -> MigrationFailed:
    """The error of a run that cannot read or write its audit table (a role without the
    grants): it stops before any migration, which would otherwise go unrecorded."""
    msg = (
        f"cannot {doing} the audit table {TABLE} on database {alias!r}: "
        f"{type(exc).__name__}: {first_line(exc)}; GRANT SELECT, INSERT, UPDATE, DELETE ON "
        f"{TABLE} to the migrating role, or migrate with the role that owns it"
    )
    return MigrationFailed(msg)


def table_exists(alias: str) -> bool:
    """Whether the audit table exists on ``alias`` (read-only)."""
    from django.db import connections

    connection = connections[alias]
    with connection.cursor() as cursor:
        return TABLE in connection.introspection.table_names(cursor)
