"""The databases a run acts on: aliases resolved against Django's settings, and the run's name
on every connection it opens.

Nothing here prints or logs a password: :attr:`Target.display` is ``vendor://user@host:port/name``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from entrypoint.db.reasons import first_line
from entrypoint.errors import ConfigError
from entrypoint.light import TYPE_CHECKING, NamedTuple
from entrypoint.log import register_secret

if TYPE_CHECKING:
    from typing import Any


class Target(NamedTuple):
    """One database alias to wait for, lock and migrate."""

    alias: str
    vendor: str
    engine: str
    name: str
    display: str

    @property
    def settings_hint(self) -> str:
        """Where the user fixes this database's connection settings."""
        return f"settings.DATABASES[{self.alias!r}]"


def resolve_targets(requested: tuple[str, ...]) -> list[Target]:
    """Turn the configured aliases (or ``all``) into targets, in the configured order."""
    from django.conf import settings
    from django.db import connections

    configured = list(settings.DATABASES)
    aliases = configured if requested == ("all",) else list(requested)
    unknown = [alias for alias in aliases if alias not in configured]
    if unknown:
        msg = (
            f"ENTRYPOINT_DATABASES names unknown database alias {unknown[0]!r}; "
            f"settings.DATABASES has {', '.join(configured) or 'nothing'}"
        )
        raise ConfigError(msg)
    targets = []
    for alias in aliases:
        try:
            connection = connections[alias]
        except Exception as exc:  # ImproperlyConfigured, or a backend that does not import
            msg = missing_driver(exc) or (
                f"settings.DATABASES[{alias!r}] cannot be used: {first_line(exc)}"
            )
            raise ConfigError(msg) from exc
        params = connection.settings_dict
        register_secret(params.get("PASSWORD"))
        targets.append(
            Target(
                alias=alias,
                vendor=connection.vendor,
                engine=str(params.get("ENGINE", "")),
                name=str(params.get("NAME") or ""),
                display=describe(connection.vendor, params),
            )
        )
    return targets


def missing_driver(exc: BaseException) -> str | None:
    """The fix when ``exc`` is Django failing to import the MySQL driver, else None."""
    if "Error loading MySQLdb module" not in str(exc):
        return None
    from django.conf import settings

    for alias, params in settings.DATABASES.items():
        engine = str(params.get("ENGINE", ""))
        if "mysql" in engine:
            return (
                f"settings.DATABASES[{alias!r}] uses {engine}, but its driver mysqlclient is not "
                "installed; install it with pip install 'django-entrypoint[mysql]'"
            )
    return None


def describe(vendor: str, params: dict[str, Any]) -> str:
    """A password-free description such as ``postgresql://app@db:5432/app``."""
    if vendor == "sqlite":
        return f"sqlite:///{params.get('NAME')}"
    user = params.get("USER") or ""
    host = params.get("HOST") or "localhost"
    port = params.get("PORT") or ""
    at = f"{user}@" if user else ""
    colon = f":{port}" if port else ""
    return f"{vendor}://{at}{host}{colon}/{params.get('NAME') or ''}"


def host_name() -> str:
    """This host's name, as ``socket.gethostname()`` gives it, without importing ``socket``
    (its enums cost every replica's start a few milliseconds before it reaches the lock)."""
    import _socket

    return str(_socket.gethostname())


def application_name(run_id: str, role: str | None = None) -> str:
    """The ``application_name`` of a run's connection: run, role, pid and host, at most 63
    bytes. The lock connection has no role word; Django's migration connection says
    ``migrate``. Every one starts ``django-entrypoint run=<id> `` (fencing looks for that)."""
    words = ["django-entrypoint", f"run={run_id}", *([role] if role else [])]
    words += [f"pid={os.getpid()}", f"host={host_name()}"]
    return " ".join(words).encode()[:63].decode("utf-8", "ignore")


# libpq's client-side keepalives for Django's migration connection, unless the project set its
# own: a migration waiting on a server that vanished fails within about 40 s.
_CLIENT_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 6,
}


def tag_connections(targets: list[Target], run_id: str) -> None:
    """Make every Django connection this run opens to ``targets`` name the run on the server.

    PostgreSQL: ``application_name`` (and client keepalives) in the alias's ``OPTIONS``, before
    the connection opens; only this process's settings change, the app server after the exec
    reads the project's own. MySQL/MariaDB: each new connection of the alias takes the run's
    ``django`` marker lock. A later holder finds them by the run id (fencing).
    """
    from django.db import connections

    for target in targets:
        wrapper = connections[target.alias]
        if target.vendor == "postgresql":
            options = wrapper.settings_dict.setdefault("OPTIONS", {})
            options["application_name"] = application_name(run_id, "migrate")
            for key, value in _CLIENT_KEEPALIVES.items():
                options.setdefault(key, value)
        elif target.vendor == "mysql":
            _mark_mysql_connections(target.alias, run_id)


def _mark_mysql_connections(alias: str, run_id: str) -> None:
    from django.db import connections
    from django.db.backends.signals import connection_created

    from entrypoint.locks.mysql import run_marker, take_marker

    marker = run_marker(run_id, alias, "django")

    def on_connect(sender: Any, connection: Any, **_kwargs: Any) -> None:
        if connection.alias == alias:
            with connection.connection.cursor() as cursor:
                take_marker(cursor, marker)

    connection_created.connect(on_connect, weak=False, dispatch_uid=f"entrypoint-mark-{alias}")
    wrapper = connections[alias]
    if wrapper.connection is not None:
        with wrapper.connection.cursor() as cursor:
            take_marker(cursor, marker)


def route_directly(requested: tuple[str, ...], url: str) -> str:
    """Point this process's connections of the run's one PostgreSQL alias at ``url``
    (``ENTRYPOINT_DIRECT_DATABASE_URL``): the lock, the migrations and the audit trail then
    bypass a transaction pooler. Only this process's settings change: the app server after the
    exec reads the project's own. Returns the alias; ConfigError when the run does not act on
    exactly one PostgreSQL alias."""
    from django.conf import settings
    from django.db import connections

    aliases = list(settings.DATABASES) if requested == ("all",) else list(requested)
    postgres = [
        a for a in aliases if a in settings.DATABASES and connections[a].vendor == "postgresql"
    ]
    if len(postgres) != 1:
        found = ", ".join(postgres) or "none"
        msg = (
            "ENTRYPOINT_DIRECT_DATABASE_URL names one PostgreSQL database, and this run acts on "
            f"{len(postgres)} PostgreSQL aliases ({found}); run one alias at a time with "
            "--database ALIAS"
        )
        raise ConfigError(msg)
    alias = postgres[0]
    # The connection's settings are the handler's own dict: a connection opened later for the
    # audit trail reads the same direct route.
    entry = connections[alias].settings_dict
    entry.update(direct_entry(entry, url))
    return alias


def direct_entry(entry: Mapping[str, Any], url: str) -> dict[str, Any]:
    """The ``DATABASES`` entry ``entry`` with the connection of ``url`` in its place (database,
    host, port, user, password; the URL's other parameters join its OPTIONS): the route that
    ``ENTRYPOINT_DIRECT_DATABASE_URL`` gives the run, which a lock taken before Django is set up
    takes as well, so that both derive one lock key from one database."""
    from psycopg.conninfo import conninfo_to_dict

    params: dict[str, Any] = dict(conninfo_to_dict(url))
    register_secret(params.get("password"))
    routed = dict(entry)
    names = {"dbname": "NAME", "host": "HOST", "port": "PORT", "user": "USER"}
    for key, name in {**names, "password": "PASSWORD"}.items():
        if key in params:
            routed[name] = str(params.pop(key))
    routed["OPTIONS"] = {**(entry.get("OPTIONS") or {}), **params}
    return routed
