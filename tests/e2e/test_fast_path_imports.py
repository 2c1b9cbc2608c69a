"""The no-op fast path stays light: it takes the fast path without importing Django, imports no
installed package at all (its log lines are its own, its PostgreSQL client too), and no more of
the entrypoint's own modules than its budget.

Measured with the interpreter's own import log (``PYTHONPROFILEIMPORTTIME``), which names every
module imported. Import time itself is reported by ``bench/run.py``, never asserted here.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import Launcher, sqlite_databases

#: The entrypoint's own modules the fast path may import: 30 on SQLite and 28 on PostgreSQL when
#: the budget was set (the command line read without argparse, the zero-config manifest in); a
#: new module on this path must earn its place.
OWN_MODULES_BUDGET = 32
#: Installed distributions the fast path may import.
ALLOWED = {"django-entrypoint"}


def imported(stderr: str) -> list[str]:
    """The modules named by the interpreter's import log, in order."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


@pytest.mark.parametrize("vendor", ["sqlite", "postgresql"])
def test_the_fast_path_imports_no_django_and_stays_within_its_budget(
    launcher: Launcher, tmp_path: Path, vendor: str, pg_factory: Any
) -> None:
    """After ``freeze``, a start with nothing pending reports ready on the fast path having
    imported no module of Django, of psycopg, of structlog or of any other package, and at most
    the budgeted number of its own."""
    databases = (
        sqlite_databases(tmp_path) if vendor == "sqlite" else {"default": pg_factory().django()}
    )
    env = launcher.env(databases)
    assert launcher.run(["migrate"], env).popen.returncode == 0
    manifest = tmp_path / "manifest.json"
    assert launcher.run(["freeze", "--output", str(manifest)], env).popen.returncode == 0
    start = launcher.run(
        ["migrate"], {**env, "ENTRYPOINT_MANIFEST": str(manifest), "PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert start.popen.returncode == 0, start.stderr()[-2000:]
    [ready] = [e for e in start.events() if e["event"] == "ready"]
    assert ready["fast_path"] is True
    modules = imported(start.stderr())
    assert "entrypoint.pipeline.run" in modules  # the log is the fast path's own
    assert "psycopg" not in modules
    assert [m for m in modules if m == "django" or m.startswith("django.")] == []
    owners = importlib.metadata.packages_distributions()
    installed = {dist for name in modules for dist in owners.get(name.split(".")[0], [])}
    # setuptools' editable-install hook runs at interpreter start, before the entrypoint.
    assert installed - {"setuptools"} <= ALLOWED
    # Nor the standard library's costlier modules, that the start does without (sqlite3
    # imports datetime itself); the test project's settings import none of them.
    spared = {"typing", "socket", "dataclasses", "inspect", "random"}
    if vendor == "postgresql":
        spared.add("datetime")
    assert not spared & set(modules), sorted(spared & set(modules))
    own = {m for m in modules if m == "entrypoint" or m.startswith("entrypoint.")}
    assert len(own) <= OWN_MODULES_BUDGET, sorted(own)
