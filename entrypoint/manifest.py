"""The no-op fast path: a manifest of the migration graph, written once when the image is built
(``freeze``) and checked at every start without importing Django.

Most container starts have nothing to migrate. The full path pays for Django's set-up, the
migration loader and a connection before it can say so; the fast path pays for one interpreter, the
project's settings module and one query. :func:`build` (Django set up) records every node of the
migration graph with its parents, its file's size, modification time and SHA-256, the ``replaces``
of squashed migrations, the migration directories' listings, and the settings that decide the graph
(``INSTALLED_APPS``, ``MIGRATION_MODULES``; ``DATABASES``' ``ENGINE``, ``NAME``, ``HOST`` and
``PORT`` per alias, never a user or password). One node list serves every alias: Django records
every migration in every alias's ``django_migrations``, router-skipped ones included, so the plan
on each alias is the same graph against that alias's rows.

At start, :func:`check` verifies the files (a stat each; the hash only when the modification time
moved), the settings module's values (imported on its own, without ``django.setup()``: it holds the
live connection settings and passwords, which the manifest never does), then one query per alias on
``django_migrations`` (psycopg, sqlite3 or mysqlclient), which also tells whether another replica
holds the migration lock. Squashed migrations are resolved as Django's loader resolves them.
Whatever it cannot vouch for (a stale or unreadable manifest, a missing table, a partly applied
squash, an error) it reports as a reason, and the full path decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from entrypoint import __version__

FORMAT = "django-entrypoint-manifest"
VERSION = 1
# The commands that may take the fast path; the others always take the full one.
COMMANDS = ("run", "migrate", "sidecar")
# libpq cannot wait less than 2 s; a database that is not up yet is the full path's business.
CONNECT_TIMEOUT = 2

Node = tuple[str, str]
# Records are NamedTuples, not dataclasses: this module is imported on every start, where the
# fast path's whole budget is tens of milliseconds and each dataclass costs about one to create.

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
# Keys of Django's PostgreSQL OPTIONS that configure the driver, not libpq.
_DRIVER_OPTIONS = frozenset(
    {"cursor_factory", "context", "prepare_threshold", "server_side_binding", "pool",
     "isolation_level", "autocommit", "row_factory"}
)  # fmt: skip


class Doubt(Exception):
    """The manifest cannot vouch for this start; the message says why."""


class Pending(Exception):
    """There is work to do, or another replica is at it: the full path follows, no doubt."""


class FileRecord(NamedTuple):
    """A file the graph depends on, as it was when the manifest was written."""

    path: str
    size: int
    mtime_ns: int
    sha256: str


class MigrationRecord(NamedTuple):
    """One node of the migration graph and its file."""

    app: str
    name: str
    file: FileRecord
    replaces: tuple[Node, ...] = ()
    # The node's dependencies in the graph the loader builds; None for a replaced node, which
    # the graph leaves out whenever the manifest can answer (all or none of a squash applied).
    parents: tuple[Node, ...] | None = ()


class Package(NamedTuple):
    """A migrations package: its ``__init__`` file and the entries of its directories."""

    app: str
    init: FileRecord
    listings: tuple[tuple[str, tuple[str, ...]], ...]


class Manifest(NamedTuple):
    """What ``freeze`` wrote: the graph, the files behind it and the settings that decide it."""

    settings_module: str
    installed_apps: tuple[str, ...]
    migration_modules: dict[str, str | None]
    databases: dict[str, dict[str, str]]
    migrations: tuple[MigrationRecord, ...]
    packages: tuple[Package, ...]
    absent: tuple[str, ...]
    django_version: str = ""

    @property
    def graph(self) -> dict[Node, tuple[Node, ...]]:
        """Each node of the loader's graph with its parents (replaced nodes left out)."""
        return {(m.app, m.name): m.parents for m in self.migrations if m.parents is not None}

    @property
    def replacements(self) -> list[tuple[Node, tuple[Node, ...]]]:
        """Each squashed migration with the nodes it replaces, in the loader's order."""
        return [((m.app, m.name), m.replaces) for m in self.migrations if m.replaces]

    @property
    def file_count(self) -> int:
        """How many files a check looks at."""
        return len(self.migrations) + len(self.packages)


class Verdict(NamedTuple):
    """The answer of :func:`check` on one start."""

    nothing_to_do: bool
    reason: str = ""
    # True when the manifest could not vouch (as opposed to: there is work to do).
    doubt: bool = False
    files: int = 0
    databases: tuple[str, ...] = ()
    django_version: str = ""


# --- writing (image build time, Django set up) ---------------------------------------------


def file_record(path: str) -> FileRecord:
    """Size, modification time and SHA-256 of one file."""
    stat = os.stat(path)
    return FileRecord(os.path.abspath(path), stat.st_size, stat.st_mtime_ns, sha256_of(path))


def sha256_of(path: str) -> str:
    """The hex SHA-256 of a file's content."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def listing(directory: str) -> tuple[str, ...]:
    """The entries of a migrations directory that could be migrations, sorted.

    Django skips names starting with ``_`` or ``~``; dot files are editor and VCS litter. Any
    other entry counts, so that a file added or removed is noticed whatever its kind.
    """
    return tuple(sorted(name for name in os.listdir(directory) if name[:1] not in "_~."))


def build(settings_module: str) -> Manifest:
    """The manifest of the project Django is set up with (reads the disk, never a database)."""
    from django import get_version
    from django.apps import apps
    from django.conf import settings
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    # Without a connection every squash counts as not applied, so the graph is the one the
    # loader builds whenever all or none of each squash is applied: the only states checked.
    loader = MigrationLoader(None, ignore_no_migrations=True)
    migrations = []
    for (app, name), migration in loader.disk_migrations.items():
        module = sys.modules[type(migration).__module__]
        replaces = tuple((str(a), str(n)) for a, n in (migration.replaces or ()))
        node = loader.graph.node_map.get((app, name))
        parents = None if node is None else tuple(sorted(p.key for p in node.parents))
        migrations.append(MigrationRecord(app, name, _module_file(module), replaces, parents))
    packages = []
    absent: list[str] = []
    for app_config in apps.get_app_configs():
        module_name, _explicit = MigrationLoader.migrations_module(app_config.label)
        if module_name is None:
            continue
        if app_config.label in loader.migrated_apps:
            package = sys.modules[module_name]
            directories = [os.path.abspath(p) for p in package.__path__]
            packages.append(
                Package(
                    app_config.label,
                    _module_file(package),
                    tuple((d, listing(d)) for d in directories),
                )
            )
        else:
            absent.extend(_would_be_package(module_name))
    databases = {}
    for alias in connections:
        entry = connections.settings[alias]
        databases[alias] = {
            "ENGINE": str(entry.get("ENGINE") or ""),
            "vendor": connections[alias].vendor,
            "NAME": str(entry.get("NAME") or ""),
            "HOST": str(entry.get("HOST") or ""),
            "PORT": str(entry.get("PORT") or ""),
        }
    return Manifest(
        settings_module=settings_module,
        installed_apps=tuple(settings.INSTALLED_APPS),
        migration_modules=dict(getattr(settings, "MIGRATION_MODULES", {}) or {}),
        databases=databases,
        migrations=tuple(migrations),
        packages=tuple(packages),
        absent=tuple(absent),
        django_version=get_version(),
    )


def _module_file(module: Any) -> FileRecord:
    path = getattr(module, "__file__", None)
    if not path:
        msg = f"module {module.__name__} has no file; the manifest needs one per migration"
        raise ValueError(msg)
    return file_record(path)


def _would_be_package(module_name: str) -> list[str]:
    """Files whose appearance would give an unmigrated app a migrations package."""
    from importlib.util import find_spec

    parent, _, last = module_name.rpartition(".")
    try:
        spec = find_spec(parent) if parent else None
    except (ImportError, ValueError):
        return []
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    found = []
    for location in locations:
        base = os.path.join(os.path.abspath(location), last)
        found += [os.path.join(base, "__init__.py"), f"{base}.py"]
    return found


def to_json(manifest: Manifest) -> dict[str, Any]:
    """The manifest as a JSON-ready dict."""

    def file(record: FileRecord) -> dict[str, Any]:
        return {
            "path": record.path,
            "size": record.size,
            "mtime_ns": record.mtime_ns,
            "sha256": record.sha256,
        }

    return {
        "format": FORMAT,
        "version": VERSION,
        "written_by": f"django-entrypoint {__version__}",
        "django_version": manifest.django_version,
        "settings_module": manifest.settings_module,
        "settings": {
            "INSTALLED_APPS": list(manifest.installed_apps),
            "MIGRATION_MODULES": manifest.migration_modules,
        },
        "databases": manifest.databases,
        "migrations": [
            {
                "app": m.app,
                "name": m.name,
                **({"replaces": [list(node) for node in m.replaces]} if m.replaces else {}),
                **({} if m.parents is None else {"parents": [list(p) for p in m.parents]}),
                "file": file(m.file),
            }
            for m in manifest.migrations
        ],
        "packages": [
            {
                "app": p.app,
                "init": file(p.init),
                "directories": [{"path": d, "entries": list(names)} for d, names in p.listings],
            }
            for p in manifest.packages
        ],
        "absent": list(manifest.absent),
    }


def dumps(manifest: Manifest) -> str:
    """The manifest as JSON text."""
    return json.dumps(to_json(manifest), indent=1) + "\n"


class Written(NamedTuple):
    """What :func:`freeze` wrote."""

    text: str
    migrations: int
    files: int


def freeze(settings_module: str, output: str) -> Written:
    """Build the manifest (Django set up) and write it to ``output`` (``-``: only return it).

    Refuses a graph with conflicting leaf nodes, as ``migrate`` would. The file is replaced
    atomically, so a start never reads half a manifest.
    """
    from entrypoint.errors import ConfigError
    from entrypoint.migrate import check_conflicts

    check_conflicts()
    built = build(settings_module)
    text = dumps(built)
    if output != "-":
        temporary = f"{output}.{os.getpid()}.tmp"
        try:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(temporary, output)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            msg = (
                f"cannot write the manifest to {output}: {exc.strerror or exc}; choose a "
                "writable path with --output or ENTRYPOINT_MANIFEST"
            )
            raise ConfigError(msg) from None
    return Written(text, len(built.migrations), built.file_count)


# --- reading --------------------------------------------------------------------------------


def load(path: str) -> Manifest:
    """Read a manifest file; raise Doubt saying what is wrong with it."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read())
    except OSError as exc:
        msg = f"the manifest {path} cannot be read ({exc.strerror or exc})"
        raise Doubt(msg) from exc
    except ValueError as exc:
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        msg = f"the manifest {path} is not valid JSON{where}; write it again with freeze"
        raise Doubt(msg) from exc
    return from_json(data, path)


def from_json(data: Any, path: str = "manifest") -> Manifest:
    """Validate and convert what :func:`to_json` wrote; raise Doubt on anything else."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        msg = f"{path} is not a django-entrypoint manifest"
        raise Doubt(msg)
    if data.get("version") != VERSION:
        msg = f"{path} has manifest version {data.get('version')!r}; this release reads {VERSION}"
        raise Doubt(msg)
    try:
        settings = data["settings"]
        return Manifest(
            settings_module=_str(data["settings_module"]),
            installed_apps=tuple(_str(app) for app in settings["INSTALLED_APPS"]),
            migration_modules={
                _str(k): None if v is None else _str(v)
                for k, v in settings["MIGRATION_MODULES"].items()
            },
            databases={
                _str(alias): {_str(k): _str(v) for k, v in entry.items()}
                for alias, entry in data["databases"].items()
            },
            migrations=tuple(_migration(m) for m in data["migrations"]),
            packages=tuple(
                Package(
                    _str(p["app"]),
                    _file(p["init"]),
                    tuple(
                        (_str(d["path"]), tuple(_str(e) for e in d["entries"]))
                        for d in p["directories"]
                    ),
                )
                for p in data["packages"]
            ),
            absent=tuple(_str(p) for p in data["absent"]),
            django_version=str(data.get("django_version", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        msg = f"{path} is damaged ({type(exc).__name__}: {exc}); write it again with freeze"
        raise Doubt(msg) from exc


def _str(value: Any) -> str:
    if not isinstance(value, str):
        msg = f"expected a string, got {type(value).__name__}"
        raise TypeError(msg)
    return value


def _file(data: Any) -> FileRecord:
    # Exact type checks, not isinstance: a path must never be an int (os.stat and open would
    # take it for a file descriptor of this process), a size never a bool.
    path, size, mtime_ns, digest = data["path"], data["size"], data["mtime_ns"], data["sha256"]
    if type(path) is not str or type(digest) is not str:
        msg = "path and sha256 must be strings"
        raise TypeError(msg)
    if type(size) is not int or type(mtime_ns) is not int:
        msg = "size and mtime_ns must be integers"
        raise TypeError(msg)
    return FileRecord(path, size, mtime_ns, digest)


def _nodes(data: Any) -> tuple[Node, ...]:
    nodes = tuple((a, n) for a, n in data)
    for app, name in nodes:
        if type(app) is not str or type(name) is not str:
            msg = "nodes must be pairs of strings"
            raise TypeError(msg)
    return nodes


def _migration(data: Any) -> MigrationRecord:
    # The hot loop of a large manifest (thousands of entries): plain lookups, few calls.
    app, name = data["app"], data["name"]
    if type(app) is not str or type(name) is not str:
        msg = "app and name must be strings"
        raise TypeError(msg)
    replaces = _nodes(data["replaces"]) if "replaces" in data else ()
    parents = _nodes(data["parents"]) if "parents" in data else None
    return MigrationRecord(app, name, _file(data["file"]), replaces, parents)


# --- checking (every start, without Django) ---------------------------------------------------


def check_files(manifest: Manifest) -> int:
    """Raise Doubt unless every file and directory is as it was; return how many were checked.

    A file whose size and modification time (to the nanosecond) are unchanged is taken as
    unchanged; one whose modification time moved (a checkout, a copy) is hashed.
    """
    for package in manifest.packages:
        for directory, entries in package.listings:
            try:
                now = listing(directory)
            except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
                reason = getattr(exc, "strerror", None) or exc
                msg = f"the migrations directory {directory} cannot be listed ({reason})"
                raise Doubt(msg) from exc
            if now != entries:
                added = sorted(set(now) - set(entries))
                removed = sorted(set(entries) - set(now))
                change = ", ".join(
                    [*(f"{n} added" for n in added[:3]), *(f"{n} removed" for n in removed[:3])]
                )
                msg = f"migration files changed in {directory} since the manifest: {change}"
                raise Doubt(msg)
    for path in manifest.absent:
        if os.path.exists(path):
            msg = f"{path} appeared since the manifest was written"
            raise Doubt(msg)
    for record in (*(p.init for p in manifest.packages), *(m.file for m in manifest.migrations)):
        _check_file(record)
    return manifest.file_count


def _check_file(record: FileRecord) -> None:
    try:
        stat = os.stat(record.path)
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        reason = getattr(exc, "strerror", None) or exc
        msg = f"{record.path} is gone since the manifest was written ({reason})"
        raise Doubt(msg) from exc
    if stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns:
        return
    try:
        same = stat.st_size == record.size and sha256_of(record.path) == record.sha256
    except OSError as exc:
        msg = f"{record.path} cannot be read ({exc.strerror})"
        raise Doubt(msg) from exc
    if not same:
        msg = f"{record.path} changed since the manifest was written"
        raise Doubt(msg)


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


def applied_nodes(
    replacements: Sequence[tuple[Node, Sequence[Node]]], recorded: Iterable[Node]
) -> set[Node]:
    """The nodes Django counts as applied, given the rows of ``django_migrations``.

    As Django's loader does: a squashed migration counts as applied exactly when every node it
    replaces is recorded (its own row alone does not count). Where only some are, Django drops
    the squash from the graph and falls back to the replaced nodes, a graph the manifest does
    not hold: Doubt. So does a squash of squashes, whose outcome depends on the loader's order.
    """
    applied = set(recorded)
    squashes = {key for key, _ in replacements}
    for key, replaced in replacements:
        if any(node in squashes for node in replaced):
            msg = f"{key[0]}.{key[1]} replaces another squashed migration"
            raise Doubt(msg)
        done = [node in applied for node in replaced]
        if all(done):
            applied.add(key)
        elif any(done):
            msg = f"the squashed migration {key[0]}.{key[1]} is partly applied"
            raise Doubt(msg)
        else:
            applied.discard(key)
    return applied


def leaf_nodes(graph: Mapping[Node, Sequence[Node]]) -> list[Node]:
    """Django's leaf nodes: those without a child in their own app, sorted."""
    inner = {
        parent for node, parents in graph.items() for parent in parents if parent[0] == node[0]
    }
    return sorted(node for node in graph if node not in inner)


def unapplied(graph: Mapping[Node, Sequence[Node]], applied: set[Node]) -> list[Node]:
    """What Django's ``migration_plan`` on the leaf nodes would apply, in no particular order,
    given the nodes :func:`applied_nodes` counts as applied.

    Like Django, a leaf that is applied adds nothing, even when one of its ancestors is not (a
    history ``migrate`` itself calls inconsistent); an unapplied leaf adds itself and every
    unapplied ancestor, however deep.
    """
    planned: list[Node] = []
    seen: set[Node] = set()
    for leaf in leaf_nodes(graph):
        if leaf in applied:
            continue
        stack = [leaf]
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            if node not in applied:
                planned.append(node)
            stack.extend(graph.get(node, ()))
    return planned


_NO_MIGRATIONS = "there is no django_migrations table yet"
# How a run ends before Django's post-migrate work was done (as entrypoint.audit.UNFINISHED; the
# fast path does not import the audit module).
UNFINISHED = frozenset({"interrupted", "failed", "running"})


def inconsistency(
    graph: Mapping[Node, Sequence[Node]], rows: set[Node], applied: set[Node]
) -> tuple[Node, Node] | None:
    """A recorded migration and a dependency of it that is neither recorded nor counted as
    applied (``applied``, from :func:`applied_nodes`: a squash whose replaced migrations are all
    recorded), as Django's ``check_consistent_history`` finds them, which makes its migrate
    refuse; or None."""
    applied = rows | applied
    for node in sorted(rows):
        for parent in graph.get(node, ()):
            if parent not in applied:
                return node, parent
    return None


class Recorded(NamedTuple):
    """What one query on an alias found: the rows, whether the migration lock is taken, and how
    the latest run in the audit trail ended."""

    nodes: set[Node]
    locked: bool = False
    last_status: str | None = None


# The latest run's status rides along as one ('', status) row: no app label is empty.
_LAST_RUN = (
    "SELECT '', status FROM (SELECT status FROM entrypoint_migration_run WHERE db_alias = %s "
    "ORDER BY seq DESC LIMIT 1) last_run"
)
_NO_AUDIT = "there is no audit table yet (the database was migrated without the entrypoint)"


def _recorded(rows: Iterable[tuple[Any, Any]]) -> Recorded:
    nodes: set[Node] = set()
    locked, status = False, None
    for app, name in rows:
        if app is None:
            locked = True
        elif app == "":
            status = str(name)
        else:
            nodes.add((str(app), str(name)))
    return Recorded(nodes, locked=locked, last_status=status)


def postgres_params(entry: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters of a DATABASES entry, as Django's PostgreSQL backend builds them."""
    options = dict(entry.get("OPTIONS") or {})
    if options.get("assume_role"):
        # Django sets the role after connecting, and with it the search path may change.
        msg = "OPTIONS has assume_role"
        raise Doubt(msg)
    options.pop("assume_role", None)
    name = entry.get("NAME")
    params: dict[str, Any] = {}
    if name:
        params["dbname"] = str(name)
    elif name is None:
        options.pop("service", None)
        params["dbname"] = "postgres"
    params.update({key: value for key, value in options.items() if key not in _DRIVER_OPTIONS})
    for key, libpq in (("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
        if entry.get(key):
            params[libpq] = str(entry[key])
    if entry.get("PORT"):
        params["port"] = str(entry["PORT"])
    params["connect_timeout"] = CONNECT_TIMEOUT
    return params


# Every row of django_migrations, the latest run's status, and one (NULL, NULL) row when a
# session holds the lock.
_POSTGRES_QUERY = f"""
    SELECT app, name FROM django_migrations
    UNION ALL
    {_LAST_RUN}
    UNION ALL
    SELECT NULL, NULL WHERE %s AND EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND granted AND objsubid = 1
          AND classid::bigint = %s AND objid::bigint = %s
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database()))
"""


def recorded_postgres(params: Mapping[str, Any], alias: str, lock_name: str | None) -> Recorded:
    """One query: the applied nodes, the latest run's status, and whether the migration lock
    named ``lock_name`` is held."""
    import psycopg

    from entrypoint.locks.postgres import lock_key

    unsigned = lock_key(lock_name or "") & 0xFFFFFFFFFFFFFFFF
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            rows = conn.execute(
                _POSTGRES_QUERY,
                (alias, lock_name is not None, unsigned >> 32, unsigned & 0xFFFFFFFF),
            ).fetchall()
    except psycopg.errors.UndefinedTable as exc:
        msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
        raise Pending(msg) from exc
    except psycopg.Error as exc:
        from entrypoint.wait import connect_error_reason

        msg = f"the query failed ({connect_error_reason(exc)})"
        raise Doubt(msg) from exc
    return _recorded(rows)


def recorded_sqlite(entry: Mapping[str, Any], alias: str, lock: bool) -> Recorded:
    """One query on the SQLite file (read-only), and whether its lock file is locked."""
    import sqlite3
    from urllib.parse import quote

    name = entry.get("NAME")
    options = entry.get("OPTIONS") or {}
    if not name or str(name) == ":memory:" or str(name).startswith("file:") or options.get("uri"):
        msg = "an in-memory or URI SQLite database has no fast path"
        raise Doubt(msg)
    path = os.path.abspath(str(name))
    if not os.path.exists(path):
        msg = "the SQLite file does not exist yet"
        raise Pending(msg)
    locked = lock and _flocked(path)
    try:
        conn = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=1.0)
        try:
            sql = f"SELECT app, name FROM django_migrations UNION ALL {_LAST_RUN}"
            rows = conn.execute(sql.replace("%s", "?"), (alias,)).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        if "no such table" in str(exc):
            msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
            raise Pending(msg) from exc
        msg = f"the query failed ({type(exc).__name__}: {exc})"
        raise Doubt(msg) from exc
    found = _recorded(rows)
    return found._replace(locked=locked)


def mysql_params(entry: Mapping[str, Any]) -> dict[str, Any]:
    """mysqlclient parameters of a DATABASES entry, as Django's MySQL backend builds them."""
    params: dict[str, Any] = {"charset": "utf8mb4", "connect_timeout": CONNECT_TIMEOUT}
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


# Every row of django_migrations, the latest run's status, and one (NULL, NULL) row when a
# session holds the lock.
_MYSQL_QUERY = f"""
    SELECT app, name FROM django_migrations
    UNION ALL
    {_LAST_RUN}
    UNION ALL
    SELECT NULL, NULL FROM DUAL WHERE %s AND IS_USED_LOCK(%s) IS NOT NULL
"""


def recorded_mysql(params: Mapping[str, Any], alias: str, lock_name: str | None) -> Recorded:
    """One query: the applied nodes, the latest run's status, and whether the ``GET_LOCK`` lock
    ``lock_name`` is taken."""
    try:
        import MySQLdb
    except ImportError as exc:
        msg = "mysqlclient is not installed"
        raise Doubt(msg) from exc
    try:
        conn = MySQLdb.connect(**params)
        try:
            cursor = conn.cursor()
            cursor.execute(_MYSQL_QUERY, (alias, lock_name is not None, lock_name or ""))
            rows = cursor.fetchall()
        finally:
            conn.close()
    except MySQLdb.Error as exc:
        code = exc.args[0] if exc.args else None
        if code == 1146:  # ER_NO_SUCH_TABLE
            msg = _NO_AUDIT if "entrypoint_migration_run" in str(exc) else _NO_MIGRATIONS
            raise Pending(msg) from exc
        reason = exc.args[1] if len(exc.args) > 1 else type(exc).__name__
        msg = f"the query failed ({reason})"
        raise Doubt(msg) from exc
    return _recorded(rows)


def _flocked(database_path: str) -> bool:
    import fcntl

    from entrypoint.locks.sqlite import lock_path

    try:
        fd = os.open(lock_path(database_path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken just now
    return False


def check_database(
    manifest: Manifest,
    alias: str,
    entry: Mapping[str, Any],
    *,
    lock_mode: str = "auto",
    lock_key: str | None = None,
) -> None:
    """Raise Pending or Doubt unless ``alias`` has every node of the manifest applied."""
    engine = str(entry.get("ENGINE") or "")
    vendor = vendor_of(manifest, engine)
    lock = lock_mode != "off"
    if vendor == "postgresql":
        from entrypoint.log import register_secret

        register_secret(entry.get("PASSWORD"))
        name = lock_key or str(entry.get("NAME") or "")
        found = recorded_postgres(postgres_params(entry), alias, name if lock else None)
    elif vendor == "sqlite":
        found = recorded_sqlite(entry, alias, lock)
    elif vendor == "mysql":
        from entrypoint.locks.mysql import lock_name
        from entrypoint.log import register_secret

        register_secret(entry.get("PASSWORD"))
        name = lock_name(str(entry.get("NAME") or ""), lock_key)
        found = recorded_mysql(mysql_params(entry), alias, name if lock else None)
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
    if found.last_status in UNFINISHED:
        # Its post-migrate work (content types, permissions) may be missing: migrate does it.
        # A run still "running" while nobody holds the lock is one whose process died.
        ended = "without finishing" if found.last_status == "running" else found.last_status
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
) -> Verdict:
    """Check files, settings and each alias's rows; the answer says whether anything is left."""
    files = 0
    try:
        files = check_files(manifest)
        check_settings(manifest, values)
        databases = values.get("DATABASES") or {}
        aliases = aliases_of(requested, databases)
        for alias in aliases:
            check_database(
                manifest, alias, databases[alias], lock_mode=lock_mode, lock_key=lock_key
            )
    except Doubt as exc:
        return Verdict(False, str(exc), doubt=True)
    except Pending as exc:
        return Verdict(False, str(exc), files=files)
    except Exception as exc:  # anything unforeseen is a doubt, never a failed start
        return Verdict(False, f"unexpected {type(exc).__name__}: {exc}", doubt=True)
    return Verdict(True, files=files, databases=aliases, django_version=manifest.django_version)


def check(settings: Any) -> Verdict:
    """The whole fast-path check for one start with these :class:`~entrypoint.config.Settings`."""
    if not settings.settings_module:
        return Verdict(False, "DJANGO_SETTINGS_MODULE is not set", doubt=True)
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
    )


def fast_path(command: str, settings: Any, reporter: Any) -> bool:
    """Take the fast path when the manifest vouches that nothing is left to migrate.

    True: the run is done and reported ready (``run`` goes on to the exec, ``migrate`` exits 0,
    ``sidecar`` serves health).
    False: the full path follows; the reason was logged once (``fast_path_skipped``).
    """
    if command not in COMMANDS or not settings.manifest:
        return False
    started = time.monotonic()
    verdict = check(settings)
    seconds = round(time.monotonic() - started, 4)
    if not verdict.nothing_to_do:
        reporter.event(
            "fast_path_skipped",
            level="warning" if verdict.doubt else "info",
            reason=verdict.reason,
            seconds=seconds,
        )
        return False
    reporter.run_info(settings.release, django_version=verdict.django_version or "unknown")
    for alias in verdict.databases:
        reporter.event("nothing_to_migrate", database=alias, fast_path=True)
    reporter.event("ready", applied=0, seconds=seconds, fast_path=True, files=verdict.files)
    reporter.phase("ready")
    return True
