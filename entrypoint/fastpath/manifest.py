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
import json
import os
import sys

from entrypoint import __version__
from entrypoint.fastpath.files import file_record, listing
from entrypoint.fastpath.records import FileRecord, Manifest, MigrationRecord, Package
from entrypoint.fastpath.verdict import Doubt
from entrypoint.light import TYPE_CHECKING, NamedTuple
from entrypoint.plan.types import Node

if TYPE_CHECKING:
    from typing import Any

FORMAT = "django-entrypoint-manifest"


VERSION = 2


def build(settings_module: str, loader: Any = None) -> Manifest:
    """The manifest of the project Django is set up with (reads the disk, never a database).

    The graph is the one ``migrate`` loads (its loader refuses what ``migrate`` refuses), and
    every app is looked at as that loader looks at it: an app whose ``MIGRATION_MODULES`` entry
    is None, whose ``migrations`` module is missing, is a plain module (no ``__path__``, as
    django-prometheus's metrics module ``migrations.py``) or a namespace package (a directory
    without ``__init__``) has no migrations, and the manifest records what would change that.
    ``loader``, one Django built already for ``migrate``, is used when its graph is the one
    written here (no squash partly applied where it read the history).
    """
    from django import get_version
    from django.conf import settings
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    # Without a connection every squash counts as not applied, so the graph is the one the
    # loader builds whenever all or none of each squash is applied: the only states checked.
    # A loader that read a history where a squash is partly applied has the replaced nodes in
    # its stead: not that graph.
    if loader is None or any(key not in loader.graph.node_map for key in loader.replacements):
        loader = MigrationLoader(None, ignore_no_migrations=False)
    migrations = []
    for (app, name), migration in loader.disk_migrations.items():
        module = sys.modules[type(migration).__module__]
        replaces = tuple((str(a), str(n)) for a, n in (migration.replaces or ()))
        node = loader.graph.node_map.get((app, name))
        parents = None if node is None else tuple(sorted(p.key for p in node.parents))
        migrations.append(MigrationRecord(app, name, _module_file(module), replaces, parents))
    packages, files, absent = _apps(loader)
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
        absent=tuple(dict.fromkeys(absent)),
        django_version=get_version(),
        files=tuple({record.path: record for record in files}.values()),
        swappable=_swappable(),
    )


def _apps(loader: Any) -> tuple[list[Package], list[FileRecord], list[str]]:
    """Per app: its migrations package, or what keeps it without one; and its config's file."""
    from django.apps import apps

    packages: list[Package] = []
    files: list[FileRecord] = []
    absent: list[str] = []
    for app_config in apps.get_app_configs():
        config_files, config_absent = _config_files(app_config)
        files += config_files
        absent += config_absent
        module_name, _explicit = loader.migrations_module(app_config.label)
        if module_name is None:  # MIGRATION_MODULES says None: nothing on disk decides it
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
            continue
        module_file, candidates = _unmigrated(module_name)
        if module_file is not None:
            files.append(module_file)
        absent += candidates
    return packages, files, absent


def _config_files(app_config: Any) -> tuple[list[FileRecord], list[str]]:
    """The files that decide an app's label and name: the module of its ``AppConfig`` and the
    app's ``apps`` submodule, or where that submodule would appear."""
    files = []
    config_module = sys.modules.get(type(app_config).__module__)
    if config_module is not None and config_module.__name__ != "django.apps.config":
        path = getattr(config_module, "__file__", None)
        if path:
            files.append(file_record(path))
    absent = []
    base = os.path.join(os.path.abspath(app_config.path), "apps")
    for candidate in (f"{base}.py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            files.append(file_record(candidate))
        else:
            absent.append(candidate)
    return files, absent


def _unmigrated(module_name: str) -> tuple[FileRecord | None, list[str]]:
    """An app without a migrations package: the plain module standing in its place, if any,
    and every file whose appearance could turn ``module_name`` into a package or a module."""
    from importlib.machinery import all_suffixes
    from importlib.util import find_spec

    parent, _, last = module_name.rpartition(".")
    try:
        spec = find_spec(parent) if parent else None
        found = find_spec(module_name)
    except (ImportError, ValueError):
        return None, []
    if parent:
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
    else:
        locations = [p or os.getcwd() for p in sys.path if os.path.isdir(p or os.getcwd())]
    module_file = None
    origin = getattr(found, "origin", None) if found is not None else None
    if found is not None and found.submodule_search_locations is None and origin:
        module_file = file_record(origin)  # a plain module: Django's loader skips the app
    candidates = []
    for location in locations:
        base = os.path.join(os.path.abspath(location), last)
        for suffix in all_suffixes():
            candidates += [os.path.join(base, f"__init__{suffix}"), f"{base}{suffix}"]
    skip = {module_file.path} if module_file is not None else set()
    return module_file, [path for path in candidates if path not in skip]


def _swappable() -> dict[str, str | None]:
    """Each swappable-model setting with its value, None where the settings module does not
    set it (the default then stands)."""
    from django.apps import apps
    from django.conf import settings

    names = sorted(
        {
            str(model._meta.swappable)
            for model in apps.get_models(include_swapped=True)
            if model._meta.swappable
        }
    )
    return {
        name: str(getattr(settings, name)) if settings.is_overridden(name) else None
        for name in names
    }


def _module_file(module: Any) -> FileRecord:
    path = getattr(module, "__file__", None)
    if not path:
        msg = f"module {module.__name__} has no file; the manifest needs one per migration"
        raise ValueError(msg)
    return file_record(path)


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
            "swappable": manifest.swappable,
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
        "files": [file(record) for record in manifest.files],
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
    from entrypoint.engine.graph import check_conflicts
    from entrypoint.errors import ConfigError

    check_conflicts()
    try:
        built = build(settings_module)
    except ModuleNotFoundError as exc:
        # The loader migrate uses refuses an explicit MIGRATION_MODULES entry that does not
        # import: so does freeze, in one line.
        msg = (
            f"a migrations module does not import ({exc}); fix MIGRATION_MODULES or the app, "
            "as migrate needs it too"
        )
        raise ConfigError(msg) from exc
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
            files=tuple(_file(f) for f in data["files"]),
            swappable={
                _str(k): None if v is None else _str(v) for k, v in settings["swappable"].items()
            },
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
