"""Session settings of Django's migration connection."""

from __future__ import annotations

import math

# PostgreSQL 14+ checks, during a long statement, whether the client is still there. Set on
# the migration connection, a replica killed inside a migration does not leave its statement
# (and its snapshot, which a later CREATE INDEX CONCURRENTLY would wait for) running on.
CLIENT_CHECK_INTERVAL_MS = 2000


def prepare_session(alias: str, ddl_lock_timeout: float | None = None) -> None:
    """Session settings of Django's migration connection (best effort).

    PostgreSQL: ``client_connection_check_interval`` and, with ``ddl_lock_timeout``,
    ``lock_timeout``. MySQL/MariaDB: ``lock_wait_timeout`` (the metadata lock every ``ALTER``
    waits for), in whole seconds, rounded up.
    """
    from django.db import connections

    connection = connections[alias]
    if connection.vendor == "mysql":
        if ddl_lock_timeout:
            seconds = max(1, math.ceil(ddl_lock_timeout))
            try:
                with connection.cursor() as cursor:
                    cursor.execute(f"SET SESSION lock_wait_timeout = {seconds:d}")
            except Exception:  # noqa: S110 - the server's own default then applies
                pass
        return
    if connection.vendor != "postgresql":
        return
    settings = [("client_connection_check_interval", str(CLIENT_CHECK_INTERVAL_MS))]
    if ddl_lock_timeout:
        settings.append(("lock_timeout", f"{int(ddl_lock_timeout * 1000)}ms"))
    connection.ensure_connection()
    for name, value in settings:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config(%s, %s, false)", [name, value])
        except Exception:  # noqa: S110 - an older server without the setting still migrates
            pass
