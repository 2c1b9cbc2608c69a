"""The manifest kept in the database: the zero-config fast path.

Every run that holds the lock and ends well (nothing was pending, or it finished migrating)
records the manifest of its code in the table ``entrypoint_manifest``, beside the audit table
and created the same way (``CREATE TABLE IF NOT EXISTS``, under the lock). A row is keyed by the
manifest's :func:`fingerprint`, a SHA-256 over what decides the migration graph: the settings
inputs (settings module, ``INSTALLED_APPS``, ``MIGRATION_MODULES``, the swappable-model
settings) and every file behind the graph by path and content hash, the listings of the
migrations directories and the files whose absence matters. It is found again by its
:func:`settings_key`, the hash of the settings inputs a start knows before it reads any file.

At the next start of the same code, the fast path reads the few newest manifests recorded for
its settings key with its one query, and takes the first whose files are all as recorded: a
stat each, the hash where the stat cannot vouch (a modification time that moved, or one that
says nothing: shared by several files, or without a fraction of a second, as reproducible image
builds set them). That is the fingerprint, computed at the cost of a stat per file. Nothing
matches, and the full path runs, and records the manifest of the code it ran.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from entrypoint import digest
from entrypoint.fastpath.records import Manifest
from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

TABLE = "entrypoint_manifest"

#: How many manifests a start considers (the newest first): the code of a rolling deploy, the
#: code before it, and the one before that.
CANDIDATES = 3
#: How many manifests the table keeps.
KEEP = 20

#: The query a start makes for the manifests of its settings key (one parameter).
LOOKUP = (
    f"SELECT manifest FROM {TABLE} WHERE settings_key = %s ORDER BY seq DESC LIMIT {CANDIDATES}"
)


def settings_key(
    settings_module: str, installed_apps: Sequence[str], migration_modules: Mapping[str, Any]
) -> str:
    """The hash of the settings inputs a start reads from the settings module alone."""
    text = json.dumps(
        [settings_module, list(installed_apps), dict(migration_modules)],
        sort_keys=True,
        default=str,
    )
    return digest.hexdigest(text.encode())


def settings_key_of(manifest: Manifest) -> str:
    """The :func:`settings_key` of a manifest."""
    return settings_key(
        manifest.settings_module, manifest.installed_apps, manifest.migration_modules
    )


def fingerprint(manifest: Manifest) -> str:
    """The hash of what decides the graph: the settings inputs and every file by path and hash
    (modification times and sizes left out, so the same code has the same fingerprint on every
    host)."""
    files = sorted(
        (record.path, record.sha256)
        for record in (
            *(m.file for m in manifest.migrations),
            *(p.init for p in manifest.packages),
            *manifest.files,
        )
    )
    listings = sorted((d, list(names)) for p in manifest.packages for d, names in p.listings)
    text = json.dumps(
        {
            "settings": settings_key_of(manifest),
            "swappable": manifest.swappable,
            "files": files,
            "listings": listings,
            "absent": sorted(manifest.absent),
        },
        sort_keys=True,
    )
    return digest.hexdigest(text.encode())


def create_table_sql(vendor: str) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement of the manifest table on ``vendor``."""
    from entrypoint.audit.table import dialect

    d = dialect(vendor)
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLE} ("
        "fingerprint varchar(64) NOT NULL, "
        "settings_key varchar(64) NOT NULL, "
        "seq integer NOT NULL, "
        f"recorded_at {d.timestamp} NOT NULL, "
        "run_id varchar(32) NULL, "
        "release_label varchar(200) NULL, "
        f"manifest {d.text} NOT NULL, "
        "PRIMARY KEY (fingerprint))"
    )


def record(
    alias: str, settings_module: str, run_id: str, release: str | None, loader: Any = None
) -> str:
    """Record the manifest of the code this process runs on ``alias`` (Django set up, under the
    migration lock; ``loader``, Django's loader of the run, spares building another); return
    ``recorded``, or ``known`` when a manifest of the same code was there already (it is then
    marked the newest)."""
    from django.db import connections

    from entrypoint.audit.table import dialect, utc_now
    from entrypoint.fastpath import check as fastcheck
    from entrypoint.fastpath.manifest import build, to_json

    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(create_table_sql(connection.vendor))
    values = fastcheck.import_settings(settings_module)
    key = settings_key(
        settings_module,
        tuple(values.get("INSTALLED_APPS", ())),
        dict(values.get("MIGRATION_MODULES", None) or {}),
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT manifest FROM {TABLE} WHERE settings_key = %s "
            f"ORDER BY seq DESC LIMIT {CANDIDATES}",
            [key],
        )
        candidates = [str(row[0]) for row in cursor.fetchall()]
    # The sequence number orders manifests by when a run last vouched for them; the lock makes
    # MAX + 1 safe (MySQL reads the table it writes only through a derived table).
    next_seq = f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM (SELECT seq FROM {TABLE}) AS known_seq)"
    known = fastcheck.matching(settings_module, candidates, values)
    if known is not None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {TABLE} SET seq = {next_seq} WHERE fingerprint = %s", [fingerprint(known)]
            )
        return "known"
    built = build(settings_module, loader)
    code = fingerprint(built)
    text = json.dumps(to_json(built), separators=(",", ":"))
    moment = dialect(connection.vendor).to_db(utc_now())
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {TABLE} WHERE fingerprint = %s", [code])
        cursor.execute(
            f"INSERT INTO {TABLE} (fingerprint, settings_key, seq, recorded_at, run_id, "
            f"release_label, manifest) SELECT %s, %s, {next_seq}, %s, %s, %s, %s",
            [code, settings_key_of(built), moment, run_id, release, text],
        )
        # Sequence numbers are distinct, so those above MAX - KEEP are the KEEP newest.
        cursor.execute(
            f"DELETE FROM {TABLE} WHERE seq <= (SELECT newest FROM (SELECT MAX(seq) - {KEEP} "
            f"AS newest FROM {TABLE}) AS bound)"
        )
    return "recorded"
