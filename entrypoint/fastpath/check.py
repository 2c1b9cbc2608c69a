"""The whole fast-path check of one start: the manifest, the files, the settings module (imported
on its own, without ``django.setup()``) and one query per alias; the :class:`Verdict` says
whether anything is left and, when not, why.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from entrypoint.audit.rows import UNFINISHED, Status
from entrypoint.db.params import mysql_params_of, postgres_params_of
from entrypoint.fastpath.files import check_files
from entrypoint.fastpath.graph import applied_nodes, inconsistency, unapplied
from entrypoint.fastpath.manifest import load
from entrypoint.fastpath.probes import (
    CONNECT_TIMEOUT,
    recorded_mysql,
    recorded_postgres,
    recorded_sqlite,
)
from entrypoint.fastpath.records import Manifest
from entrypoint.fastpath.verdict import Doubt, Pending, Verdict

if TYPE_CHECKING:
    from entrypoint.config import Settings

# The commands that may take the fast path; the others always take the full one.
COMMANDS = ("run", "migrate", "sidecar", "wait-migrated")


# Engines whose vendor is known without importing their backend; the manifest adds the engines
# the project itself used when it was written.
KNOWN_VENDORS = {
    "django.db.backends.postgresql": "postgresql",
    "django.db.backends.postgresql_psycopg2": "postgresql",
    "django.contrib.gis.db.backends.postgis": "postgresql",
    "django.db.backends.sqlite3": "sqlite",
    "django.contrib.gis.db.backends.spatialite": "sqlite",
    "django.db.backends.mysql": "mysql",
    "django.contrib.gis.db.backends.mysql": "mysql",
}


def import_settings(settings_module: str) -> dict[str, Any]:
    """The settings module's names, imported on its own (no ``django.setup()``).

    The working directory goes on the import path first, as ``manage.py`` and the full path do,
    so the full path that may follow finds the module already imported.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(settings_module)
    except Exception as exc:
        msg = f"the settings module {settings_module} failed to import: {type(exc).__name__}"
        raise Doubt(msg) from exc
    return vars(module)


def check_settings(manifest: Manifest, values: Mapping[str, Any]) -> None:
    """Raise Doubt when the settings that decide the graph differ from the manifest's."""
    apps = tuple(values.get("INSTALLED_APPS", ()))
    if apps != manifest.installed_apps:
        msg = "INSTALLED_APPS differs from the manifest's"
        raise Doubt(msg)
    modules = dict(values.get("MIGRATION_MODULES", None) or {})
    if modules != manifest.migration_modules:
        msg = "MIGRATION_MODULES differs from the manifest's"
        raise Doubt(msg)


def vendor_of(manifest: Manifest, engine: str) -> str | None:
    """The vendor of an ENGINE: known ones, then those the manifest saw Django resolve."""
    if engine in KNOWN_VENDORS:
        return KNOWN_VENDORS[engine]
    for entry in manifest.databases.values():
        if entry.get("ENGINE") == engine:
            return entry.get("vendor")
    return None


def check_database(
    manifest: Manifest,
    alias: str,
    entry: Mapping[str, Any],
    *,
    lock_mode: str = "auto",
    lock_key: str | None = None,
    waiting: bool = False,
) -> None:
    """Raise Pending or Doubt unless ``alias`` has every node of the manifest applied.

    ``waiting`` (wait mode): only the rows count. Who holds the lock, how the last run ended and
    whether a squash has its own row are the business of the run that migrates.
    """
    engine = str(entry.get("ENGINE") or "")
    vendor = vendor_of(manifest, engine)
    lock = lock_mode != "off" and not waiting
    if vendor == "postgresql":
        from entrypoint.log import register_secret

        register_secret(entry.get("PASSWORD"))
        if (entry.get("OPTIONS") or {}).get("assume_role"):
            # Django sets the role after connecting, and with it the search path may change.
            msg = "OPTIONS has assume_role"
            raise Doubt(msg)
        params = {**postgres_params_of(entry), "connect_timeout": CONNECT_TIMEOUT}
        name = lock_key or str(entry.get("NAME") or "")
        found = recorded_postgres(params, alias, name if lock else None)
    elif vendor == "sqlite":
        found = recorded_sqlite(entry, alias, lock)
    elif vendor == "mysql":
        from entrypoint.locks.mysql import lock_name
        from entrypoint.log import register_secret

        register_secret(entry.get("PASSWORD"))
        name = lock_name(str(entry.get("NAME") or ""), lock_key)
        params = {**mysql_params_of(entry), "connect_timeout": CONNECT_TIMEOUT}
        found = recorded_mysql(params, alias, name if lock else None)
    else:
        msg = f"database {alias!r} uses {engine or 'no ENGINE'}, which has no fast path"
        raise Doubt(msg)
    if found.locked:
        msg = f"another replica holds the migration lock on {alias!r}"
        raise Pending(msg)
    applied = applied_nodes(manifest.replacements, found.nodes)
    missing = sorted(unapplied(manifest.graph, applied))
    if missing:
        shown = ", ".join(f"{app}.{name}" for app, name in missing[:3])
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        msg = f"{len(missing)} migration(s) pending on {alias!r}: {shown}{more}"
        raise Pending(msg)
    broken = inconsistency(manifest.graph, found.nodes, applied)
    if broken is not None:
        (app, name), (parent_app, parent_name) = broken
        msg = (
            f"the migration history of {alias!r} is inconsistent: {app}.{name} is applied before "
            f"its dependency {parent_app}.{parent_name}"
        )
        raise Pending(msg)
    if waiting:
        return
    if found.last_status in UNFINISHED:
        # Its post-migrate work (content types, permissions) may be missing: migrate does it.
        # A run still "running" while nobody holds the lock is one whose process died.
        ended = "without finishing" if found.last_status == Status.RUNNING else found.last_status
        msg = f"the last run on {alias!r} ended {ended}"
        raise Pending(msg)
    # Counted as applied (all it replaces is recorded), but without its own row yet.
    without_row = applied - found.nodes
    unrecorded = [key for key, _ in manifest.replacements if key in without_row]
    if unrecorded:
        app, name = unrecorded[0]
        msg = f"the squashed migration {app}.{name} is not recorded on {alias!r} yet"
        raise Pending(msg)


def aliases_of(requested: Sequence[str], databases: Mapping[str, Any]) -> tuple[str, ...]:
    """The aliases a run acts on, from ``ENTRYPOINT_DATABASES`` and the live DATABASES."""
    aliases = tuple(databases) if tuple(requested) == ("all",) else tuple(requested)
    for alias in aliases:
        if alias not in databases:
            msg = f"settings.DATABASES has no alias {alias!r}"
            raise Doubt(msg)
    return aliases


def verify(
    manifest: Manifest,
    values: Mapping[str, Any],
    requested: Sequence[str],
    *,
    lock_mode: str = "auto",
    lock_key: str | None = None,
    waiting: bool = False,
) -> Verdict:
    """Check files, settings and each alias's rows; the answer says whether anything is left
    (``waiting``: whether any migration is missing, see :func:`check_database`)."""
    files = 0
    try:
        files = check_files(manifest)
        check_settings(manifest, values)
        databases = values.get("DATABASES") or {}
        aliases = aliases_of(requested, databases)
        for alias in aliases:
            check_database(
                manifest,
                alias,
                databases[alias],
                lock_mode=lock_mode,
                lock_key=lock_key,
                waiting=waiting,
            )
    except Doubt as exc:
        return Verdict(False, str(exc), doubt=True)
    except Pending as exc:
        return Verdict(False, str(exc), files=files)
    except Exception as exc:  # anything unforeseen is a doubt, never a failed start
        return Verdict(False, f"unexpected {type(exc).__name__}: {exc}", doubt=True)
    return Verdict(True, files=files, databases=aliases, django_version=manifest.django_version)


def check(settings: Settings, *, waiting: bool = False) -> Verdict:
    """The whole fast-path check for one start with these :class:`~entrypoint.config.Settings`
    (``waiting``: of a run in wait mode)."""
    if not settings.settings_module:
        return Verdict(False, "DJANGO_SETTINGS_MODULE is not set", doubt=True)
    if not settings.manifest:
        return Verdict(False, "ENTRYPOINT_MANIFEST is not set", doubt=True)
    try:
        manifest = load(settings.manifest)
        if manifest.settings_module != settings.settings_module:
            msg = (
                f"the manifest was written for {manifest.settings_module}, "
                f"not {settings.settings_module}"
            )
            raise Doubt(msg)
        values = import_settings(settings.settings_module)
    except Doubt as exc:
        return Verdict(False, str(exc), doubt=True)
    return verify(
        manifest,
        values,
        settings.databases,
        lock_mode=settings.lock_mode,
        lock_key=settings.lock_key,
        waiting=waiting,
    )
