"""Driver connection parameters of a DATABASES entry, computed in one place.

With Django set up, :func:`postgres_params` and :func:`mysql_params` take what Django's own
backend would connect with. The no-op fast path, which never imports Django, builds the same
parameters from the settings entry itself (:func:`postgres_params_of`, :func:`mysql_params_of`).
Either way the PostgreSQL options that configure the Python driver rather than libpq are left
out, by one list (:data:`NOT_LIBPQ`).
"""

from __future__ import annotations

from collections.abc import Mapping

from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: Keys of Django's PostgreSQL OPTIONS (and of its psycopg connection parameters) that are
#: Python-side settings of the driver or of Django, not libpq connection settings.
NOT_LIBPQ = frozenset(
    {
        "cursor_factory",
        "context",
        "prepare_threshold",
        "server_side_binding",
        "pool",
        "isolation_level",
        "assume_role",
        "autocommit",
        "row_factory",
    }
)


def postgres_params(alias: str) -> dict[str, Any]:
    """libpq connection parameters of an alias, as Django itself would connect."""
    from django.db import connections

    params = connections[alias].get_connection_params()
    return {key: value for key, value in params.items() if key not in NOT_LIBPQ}


def postgres_params_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters of a DATABASES entry, as Django's PostgreSQL backend builds them,
    without Django (the fast path). ``OPTIONS['assume_role']`` is left to the caller."""
    options = dict(entry.get("OPTIONS") or {})
    name = entry.get("NAME")
    params: dict[str, Any] = {}
    if name:
        params["dbname"] = str(name)
    elif name is None:
        options.pop("service", None)
        params["dbname"] = "postgres"
    params.update({key: value for key, value in options.items() if key not in NOT_LIBPQ})
    for key, libpq in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
        if entry.get(key):
            params[libpq] = str(entry[key])
    if entry.get("PORT"):
        params["port"] = str(entry["PORT"])
    return params


def mysql_params(alias: str) -> dict[str, Any]:
    """mysqlclient connection parameters of an alias, as Django itself would connect."""
    from django.db import connections

    return dict(connections[alias].get_connection_params())


def mysql_params_of(entry: Mapping[str, Any]) -> dict[str, Any]:
    """mysqlclient parameters of a DATABASES entry, as Django's MySQL backend builds them,
    without Django (the fast path)."""
    params: dict[str, Any] = {"charset": "utf8mb4"}
    host = str(entry.get("HOST") or "")
    for key, name in (("USER", "user"), ("NAME", "database"), ("PASSWORD", "password")):
        if entry.get(key):
            params[name] = str(entry[key])
    if host.startswith("/"):
        params["unix_socket"] = host
    elif host:
        params["host"] = host
    if entry.get("PORT"):
        params["port"] = int(entry["PORT"])
    options = dict(entry.get("OPTIONS") or {})
    options.pop("isolation_level", None)
    params.update(options)
    return params
