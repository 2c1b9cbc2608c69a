"""Checking a pull request without a database: the migrations that exist at a git revision count
as applied (``check --base REF``, ``plan --base REF``), so what is pending is exactly what the
change adds.

The migration files at REF are listed from git (``git ls-tree``), never checked out. An app whose
migrations directory is not inside the repository (an installed package) counts as fully
applied: a change of this repository does not add its migrations. No database connection is
opened: :func:`offline` makes any attempt fail at once, and what needs one (the recorded history,
the server's version) is left out or assumed.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from entrypoint.errors import ConfigError
from entrypoint.plan.types import Node


def migrations_directories(loader: Any) -> dict[str, Path]:
    """Each app label with migrations, and the directory its migrations are loaded from."""
    import importlib

    from django.apps import apps

    found: dict[str, Path] = {}
    for config in apps.get_app_configs():
        module_name, _explicit = loader.migrations_module(config.label)
        if module_name is None:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        paths = list(getattr(module, "__path__", []) or [])
        if paths:
            found[config.label] = Path(paths[0]).resolve()
    return found


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60, check=False
    )


def repository_of(directory: Path) -> Path:
    """The top of the git work tree holding ``directory``; ConfigError when there is none."""
    try:
        done = _git(directory, "rev-parse", "--show-toplevel")
    except FileNotFoundError:
        msg = "--base needs git, which is not installed; install git or drop --base"
        raise ConfigError(msg) from None
    if done.returncode != 0:
        msg = (
            f"--base needs a git repository, and {directory} is not in one; run the check in a "
            "clone of the project (actions/checkout with fetch-depth: 0)"
        )
        raise ConfigError(msg)
    return Path(done.stdout.strip()).resolve()


def _project_directory() -> Path:
    """Where the project is: its settings module's directory, else the working directory."""
    import sys

    from django.conf import settings

    module = sys.modules.get(str(getattr(settings, "SETTINGS_MODULE", "") or ""))
    path = getattr(module, "__file__", None)
    return Path(path).resolve().parent if path else Path(os.getcwd())


def nodes_at(ref: str, loader: Any) -> set[Node]:
    """The migrations that exist at git revision ``ref``, plus every migration of an app whose
    directory is not in the repository (see the module docstring)."""
    directories = migrations_directories(loader)
    if not directories:
        return set()
    root = repository_of(_project_directory())
    verified = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if verified.returncode != 0:
        msg = (
            f"--base {ref!r} is not a revision of the repository at {root}; fetch it (git fetch "
            "origin main) or name a branch, tag or commit that exists"
        )
        raise ConfigError(msg)
    inside = {app: path for app, path in directories.items() if path.is_relative_to(root)}
    nodes: set[Node] = {node for node in loader.disk_migrations if node[0] not in inside}
    if not inside:
        return nodes
    relative = {app: path.relative_to(root).as_posix() for app, path in inside.items()}
    listed = _git(root, "ls-tree", "-r", "--name-only", ref, "--", *sorted(set(relative.values())))
    if listed.returncode != 0:
        msg = f"git ls-tree {ref} failed: {listed.stderr.strip() or listed.returncode}"
        raise ConfigError(msg)
    by_directory: dict[str, list[str]] = {}
    for app, rel in relative.items():
        by_directory.setdefault(rel, []).append(app)
    for line in listed.stdout.splitlines():
        directory, _, filename = line.rpartition("/")
        if directory not in by_directory or not filename.endswith(".py"):
            continue
        name = filename[: -len(".py")]
        if name.startswith(("_", "~")):
            continue
        for app in by_directory[directory]:
            nodes.add((app, name))
    return nodes


def base_executor(ref: str) -> Any:
    """A MigrationExecutor without a database whose applied migrations are those at ``ref``
    (a squash counts as applied when all it replaces does, as Django's loader counts it)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(None)
    loader = executor.loader
    applied = nodes_at(ref, loader)
    for key, migration in loader.replacements.items():
        if all(tuple(node) in applied for node in migration.replaces):
            applied.add(key)
    loader.applied_migrations = {
        node: loader.graph.nodes[node] for node in applied if node in loader.graph.nodes
    }
    return executor


class NoDatabase(Exception):
    """A database connection was attempted where none may be opened."""


@contextmanager
def offline(aliases: list[str]) -> Iterator[None]:
    """Inside the block, opening any connection of ``aliases`` fails at once (with Django's
    ``OperationalError``, which callers that can do without a database already handle)."""
    from django.db import connections
    from django.db.utils import OperationalError

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        msg = "no database is opened with --base"
        raise OperationalError(msg)

    wrappers = [connections[alias] for alias in aliases]
    for wrapper in wrappers:
        wrapper.connect = refuse  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings():
            # makemigrations warns when it cannot check the history on a database: expected.
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        for wrapper in wrappers:
            del wrapper.connect


def assumed_server(vendor: str) -> Any:
    """The server a plan's table-lock notes are judged for without a connection: PostgreSQL as
    is; MySQL of unknown version, so that the notes of older servers are kept."""
    from entrypoint.plan.locknotes import Server

    if vendor == "postgresql":
        return Server("postgresql")
    if vendor == "mysql":
        return Server("mysql")
    return None
