"""The whole fast-path check of one start: the manifest, the files, the settings module (imported
on its own, without ``django.setup()``) and one query per alias; the :class:`Verdict` says
whether anything is left and, when not, why.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from entrypoint.audit.status import UNFINISHED, Status
from entrypoint.db.params import mysql_params_of, postgres_params_of
from entrypoint.fastpath.files import check_files
from entrypoint.fastpath.graph import applied_nodes, inconsistency, unapplied
from entrypoint.fastpath.manifest import from_json, load
from entrypoint.fastpath.probes import (
    CONNECT_TIMEOUT,
    Recorded,
    recorded_mysql,
    recorded_postgres,
    recorded_sqlite,
)
from entrypoint.fastpath.records import Manifest
from entrypoint.fastpath.stored import settings_key
from entrypoint.fastpath.verdict import Doubt, Locked, Pending, Unreachable, Verdict
from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

    from entrypoint.config import Settings
    from entrypoint.fastpath.probes import Reader

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
    for name, recorded in manifest.swappable.items():
        value = values.get(name)
        if (None if value is None else str(value)) != recorded:
            msg = f"{name} differs from the manifest's"
            raise Doubt(msg)


def vendor_of(manifest: Manifest, engine: str) -> str | None:
    """The vendor of an ENGINE: known ones, then those the manifest saw Django resolve."""
    if engine in KNOWN_VENDORS:
        return KNOWN_VENDORS[engine]
    for entry in manifest.databases.values():
        if entry.get("ENGINE") == engine:
            return entry.get("vendor")
    return None


def probe(
    manifest: Manifest | None,
    alias: str,
    entry: Mapping[str, Any],
    *,
    lock_mode: str = "auto",
    lock_key: str | None = None,
    lookup: str | None = None,
    reader: Reader | None = None,
    keep: list[Any] | None = None,
) -> Recorded:
    """The one query on ``alias``: its rows, its lock, its last run (and, with ``lookup``, the
    manifests recorded for that settings key), through ``reader`` when given (a connection open
    already); on PostgreSQL the connection is left in ``keep`` when given. Raises Pending or
    Doubt when it cannot tell."""
    engine = str(entry.get("ENGINE") or "")
    vendor = KNOWN_VENDORS.get(engine) or (vendor_of(manifest, engine) if manifest else None)
    lock = lock_mode != "off"
    if vendor == "postgresql":
        from entrypoint.log import register_secret

        register_secret(entry.get("PASSWORD"))
        if (entry.get("OPTIONS") or {}).get("assume_role"):
            # Django sets the role after connecting, and with it the search path may change.
            msg = "OPTIONS has assume_role"
            raise Doubt(msg)
        params = {**postgres_params_of(entry), "connect_timeout": CONNECT_TIMEOUT}
        name = lock_key or str(entry.get("NAME") or "")
        return recorded_postgres(params, alias, name if lock else None, lookup, reader, keep=keep)
    if vendor == "sqlite":
        return recorded_sqlite(entry, alias, lock, lookup)
    if vendor == "mysql":
        from entrypoint.locks.mysql import lock_name
        from entrypoint.log import register_secret

        register_secret(entry.get("PASSWORD"))
        name = lock_name(str(entry.get("NAME") or ""), lock_key)
        params = {**mysql_params_of(entry), "connect_timeout": CONNECT_TIMEOUT}
        return recorded_mysql(params, alias, name if lock else None, lookup, reader)
    msg = f"database {alias!r} uses {engine or 'no ENGINE'}, which has no fast path"
    raise Doubt(msg)


def judge(manifest: Manifest, alias: str, found: Recorded, *, waiting: bool = False) -> None:
    """Raise Pending unless ``found`` (the rows of ``alias``) has every node applied.

    ``waiting`` (wait mode): only the rows count. Who holds the lock, how the last run ended and
    whether a squash has its own row are the business of the run that migrates.
    """
    if found.locked and not waiting:
        msg = f"another replica holds the migration lock on {alias!r}"
        raise Locked(msg)
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


def check_database(
    manifest: Manifest,
    alias: str,
    entry: Mapping[str, Any],
    *,
    lock_mode: str = "auto",
    lock_key: str | None = None,
    reader: Reader | None = None,
    keep: list[Any] | None = None,
    waiting: bool = False,
) -> None:
    """Raise Pending or Doubt unless ``alias`` has every node of the manifest applied
    (``waiting``: see :func:`judge`; the lock is not asked about then)."""
    found = probe(
        manifest,
        alias,
        entry,
        lock_mode="off" if waiting else lock_mode,
        lock_key=lock_key,
        reader=reader,
        keep=keep,
    )
    judge(manifest, alias, found, waiting=waiting)


def matching(
    settings_module: str, texts: Sequence[str], values: Mapping[str, Any]
) -> Manifest | None:
    """The first of the manifests recorded in the database (JSON texts, newest first) that
    vouches for this code: its settings and every file as recorded; None when none does."""
    return _matching(settings_module, texts, values)[0]


def _matching(
    settings_module: str, texts: Sequence[str], values: Mapping[str, Any]
) -> tuple[Manifest | None, str | None]:
    first_reason = None
    for text in texts:
        try:
            candidate = from_json(json.loads(text), "the manifest recorded in the database")
            if candidate.settings_module != settings_module:
                continue
            check_settings(candidate, values)
            check_files(candidate, other_host=True)
        except (Doubt, ValueError) as exc:
            first_reason = first_reason or str(exc)
            continue
        return candidate, None
    return None, first_reason


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
    held: str | None = None,
    reader: tuple[str, Reader] | None = None,
    keep: list[Any] | None = None,
    waiting: bool = False,
) -> Verdict:
    """Check files, settings and each alias's rows; the answer says whether anything is left.
    ``held`` is an alias whose lock this process holds (no other can then hold it); ``reader``
    an alias and a read on a connection open to it already (the lock's); ``keep`` receives the
    first alias's connection, left open; ``waiting`` (wait mode): whether any migration is
    missing (see :func:`judge`)."""

    def work(files: list[int]) -> Verdict:
        files.append(check_files(manifest))
        check_settings(manifest, values)
        databases = values.get("DATABASES") or {}
        aliases = aliases_of(requested, databases)
        _check_aliases(
            manifest,
            aliases,
            databases,
            held=held,
            lock_mode=lock_mode,
            lock_key=lock_key,
            reader=reader,
            keep=keep,
            waiting=waiting,
        )
        return Verdict(
            True, files=files[-1], databases=aliases, django_version=manifest.django_version
        )

    return _judged(work)


def verify_stored(
    settings_module: str,
    values: Mapping[str, Any],
    requested: Sequence[str],
    *,
    lock_mode: str = "auto",
    lock_key: str | None = None,
    held: str | None = None,
    reader: tuple[str, Reader] | None = None,
    keep: list[Any] | None = None,
    waiting: bool = False,
) -> Verdict:
    """Without a manifest file: the first alias's query also brings the manifests recorded for
    these settings, the first that vouches for the files on disk serves, and every alias's rows
    are checked against it (``waiting``: see :func:`judge`)."""

    def work(files: list[int]) -> Verdict:
        databases = values.get("DATABASES") or {}
        aliases = aliases_of(requested, databases)
        if not aliases:
            msg = "no database to check"
            raise Doubt(msg)
        key = settings_key(
            settings_module,
            tuple(values.get("INSTALLED_APPS", ())),
            dict(values.get("MIGRATION_MODULES", None) or {}),
        )
        first = aliases[0]
        mine = first == held or waiting
        found = probe(
            None,
            first,
            databases[first],
            lock_mode="off" if mine else lock_mode,
            lock_key=lock_key,
            lookup=key,
            reader=_reader_for(reader, first),
            keep=keep,
        )
        if found.locked:
            msg = f"another replica holds the migration lock on {first!r}"
            raise Locked(msg)
        if not found.manifest_table:
            msg = f"no manifest is recorded in {first!r} yet (the full path records one)"
            raise Pending(msg)
        manifest, why = _matching(settings_module, found.manifests, values)
        if manifest is None:
            msg = (
                f"no manifest recorded in {first!r} matches this code"
                + (f" (the newest: {why})" if why else " (none for these settings yet)")
                + "; the full path records one"
            )
            raise Pending(msg)
        files.append(manifest.file_count)
        judge(manifest, first, found, waiting=waiting)
        _check_aliases(
            manifest,
            aliases[1:],
            databases,
            held=held,
            lock_mode=lock_mode,
            lock_key=lock_key,
            reader=reader,
            waiting=waiting,
        )
        return Verdict(
            True,
            files=files[-1],
            databases=aliases,
            django_version=manifest.django_version,
            source="database",
        )

    return _judged(work)


def _judged(work: Callable[[list[int]], Verdict]) -> Verdict:
    """The answer of one check: what ``work`` returns, or the Verdict its Doubt or Pending says
    (``work`` appends to the list it is given how many files the manifest vouches for)."""
    files: list[int] = []
    try:
        return work(files)
    except Doubt as exc:
        return Verdict(False, str(exc), doubt=True, unreachable=isinstance(exc, Unreachable))
    except Pending as exc:
        counted = files[-1] if files else 0
        return Verdict(False, str(exc), files=counted, locked=isinstance(exc, Locked))
    except Exception as exc:  # anything unforeseen is a doubt, never a failed start
        return Verdict(False, f"unexpected {type(exc).__name__}: {exc}", doubt=True)


def _check_aliases(
    manifest: Manifest,
    aliases: Sequence[str],
    databases: Mapping[str, Any],
    *,
    held: str | None,
    lock_mode: str,
    lock_key: str | None,
    reader: tuple[str, Reader] | None,
    waiting: bool,
    keep: list[Any] | None = None,
) -> None:
    """:func:`check_database` for each alias in turn (the lock of ``held``, this process's, not
    looked at; ``keep`` receives the first one's connection)."""
    for index, alias in enumerate(aliases):
        check_database(
            manifest,
            alias,
            databases[alias],
            lock_mode="off" if alias == held else lock_mode,
            lock_key=lock_key,
            reader=_reader_for(reader, alias),
            keep=keep if index == 0 else None,
            waiting=waiting,
        )


def check(
    settings: Settings,
    held: str | None = None,
    reader: tuple[str, Reader] | None = None,
    keep: list[Any] | None = None,
    *,
    waiting: bool = False,
) -> Verdict:
    """The whole fast-path check for one start with these :class:`~entrypoint.config.Settings`;
    ``held``: the alias whose migration lock this process holds, if any; ``reader``: an alias
    and a read on its lock connection, which the check goes through instead of a connection of
    its own; ``keep``: where the first alias's PostgreSQL connection is left open (for the lock
    to take over); ``waiting``: of a run in wait mode, which asks only whether a migration is
    missing."""
    if not settings.settings_module:
        return Verdict(False, "DJANGO_SETTINGS_MODULE is not set", doubt=True)
    if not settings.manifest:
        try:
            values = import_settings(settings.settings_module)
        except Doubt as exc:
            return Verdict(False, str(exc), doubt=True)
        return verify_stored(
            settings.settings_module,
            values,
            settings.databases,
            lock_mode=settings.lock_mode,
            lock_key=settings.lock_key,
            held=held,
            reader=reader,
            keep=keep,
            waiting=waiting,
        )
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
        held=held,
        reader=reader,
        keep=keep,
        waiting=waiting,
    )


def _reader_for(reader: tuple[str, Reader] | None, alias: str) -> Reader | None:
    return reader[1] if reader is not None and reader[0] == alias else None


def lock_entry(settings: Settings) -> tuple[str, Mapping[str, Any], str] | None:
    """The first alias a run locks, its ``DATABASES`` entry and vendor, read from the settings
    module alone (no Django); None when its lock cannot be had that way (a backend without one,
    an in-memory SQLite database, the lock turned off, settings that do not import)."""
    if settings.lock_mode == "off" or not settings.settings_module:
        return None
    try:
        values = import_settings(settings.settings_module)
        databases = values.get("DATABASES") or {}
        aliases = aliases_of(settings.databases, databases)
    except Doubt:
        return None
    if not aliases or not isinstance(databases.get(aliases[0]), Mapping):
        return None
    alias = aliases[0]
    entry = databases[alias]
    vendor = KNOWN_VENDORS.get(str(entry.get("ENGINE") or ""))
    if vendor is None:
        return None
    if vendor == "sqlite":
        name = str(entry.get("NAME") or "")
        if not name or name == ":memory:" or "mode=memory" in name or name.startswith("file:"):
            return None
    if vendor == "postgresql" and (entry.get("OPTIONS") or {}).get("assume_role"):
        return None
    if settings.direct_database_url:
        # The run goes to its one PostgreSQL alias directly: so does its lock, with the same key.
        postgres = [
            a
            for a in aliases
            if isinstance(databases.get(a), Mapping)
            and KNOWN_VENDORS.get(str(databases[a].get("ENGINE") or "")) == "postgresql"
        ]
        if len(postgres) != 1:
            return None  # the full path says what is wrong
        if postgres[0] == alias:
            from entrypoint.db.targets import direct_entry

            entry = direct_entry(entry, settings.direct_database_url)
    return alias, entry, vendor
