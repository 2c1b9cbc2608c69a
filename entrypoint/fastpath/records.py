"""The records of a manifest: the files behind the migration graph, its nodes, its migrations
packages, and the manifest itself. NamedTuples, not dataclasses: they are built on every start,
where the fast path's whole budget is tens of milliseconds and each dataclass costs about one to
create.
"""

from __future__ import annotations

from entrypoint.light import NamedTuple
from entrypoint.plan.types import Node


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
    #: Other files the graph depends on: the modules that define the apps' configs (their
    #: labels and names), and plain ``migrations`` modules that leave an app unmigrated.
    files: tuple[FileRecord, ...] = ()
    #: The swappable-model settings (``AUTH_USER_MODEL``, ...), which decide where a swappable
    #: dependency points: each one's value, or None when the settings module does not set it.
    swappable: dict[str, str | None] = {}

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
        return len(self.migrations) + len(self.packages) + len(self.files)
