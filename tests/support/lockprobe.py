"""Apply migrations one at a time and print what each did to its table, as JSON lines.

Run as ``python -m tests.support.lockprobe APP TABLE NAME...`` with a Django project's settings. For each
migration NAME of APP, in order, it runs Django's migrate to that migration and prints
``{"migration": NAME, "rewritten": ..., "scanned": ..., "copied": ..., "rebuilt": ...}``:

* PostgreSQL: ``rewritten`` when the table's ``relfilenode`` changed (a new heap was written),
  ``scanned`` when ``pg_stat_user_tables.seq_scan`` grew (every row was read: a check, an index
  build); ``scanned`` is null before PostgreSQL 15, which cannot flush statistics on demand.
* MySQL/MariaDB: ``copied`` when an ``ALTER TABLE`` reported affected rows (``ALGORITHM=COPY``
  copies every row; in-place and instant changes report none), ``rebuilt`` when the table's
  InnoDB table id changed without a copy (an in-place rebuild).

What the migrations did is read from the server itself, so tests can hold the notes of
:mod:`entrypoint.plan.locknotes` against it.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

_ALTER = re.compile(r"^\s*ALTER\s+TABLE\b", re.IGNORECASE)


def _postgres(cursor: Any, table: str) -> dict[str, Any]:
    cursor.execute("SELECT relfilenode FROM pg_class WHERE relname = %s", [table])
    (node,) = cursor.fetchone()
    scans = None
    cursor.execute("SHOW server_version_num")
    if int(cursor.fetchone()[0]) >= 150000:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT seq_scan FROM pg_stat_user_tables WHERE relname = %s", [table])
        scans = cursor.fetchone()[0]
    return {"node": node, "scans": scans}


def _mysql(cursor: Any, connection: Any, table: str) -> dict[str, Any]:
    source = (
        "information_schema.INNODB_SYS_TABLES"
        if connection.mysql_is_mariadb
        else "information_schema.INNODB_TABLES"
    )
    cursor.execute(
        f"SELECT TABLE_ID FROM {source} WHERE NAME = %s",
        [f"{connection.settings_dict['NAME']}/{table}"],
    )
    return {"table_id": cursor.fetchone()[0]}


def main(argv: list[str]) -> int:
    """Apply each named migration and print one JSON line about its table."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    app, table, names = argv[0], argv[1], argv[2:]
    copies: list[int] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if _ALTER.match(sql) and context["cursor"].rowcount > 0:
            copies.append(context["cursor"].rowcount)
        return result

    def snapshot() -> dict[str, Any]:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                return _postgres(cursor, table)
            return _mysql(cursor, connection, table)

    for name in names:
        before = snapshot()
        copies.clear()
        with connection.execute_wrapper(record):
            call_command("migrate", app, name, verbosity=0, interactive=False)
        after = snapshot()
        line: dict[str, Any] = {"migration": name}
        if connection.vendor == "postgresql":
            line["rewritten"] = before["node"] != after["node"]
            scanned = None if before["scans"] is None else after["scans"] > before["scans"]
            line["scanned"] = scanned
        else:
            line["copied"] = bool(copies)
            line["rebuilt"] = not copies and before["table_id"] != after["table_id"]
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
