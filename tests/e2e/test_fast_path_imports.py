"""The no-op fast path stays light: it takes the fast path without importing Django, imports no
installed package but the log library (and the database's driver), and no more of the
entrypoint's own modules than its budget.

Measured with the interpreter's own import log (``PYTHONPROFILEIMPORTTIME``), which names every
module imported. Import time itself is reported by ``bench/run.py``, never asserted here.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from tests.support.processes import Launcher, sqlite_databases

#: The entrypoint's own modules the fast path may import: 32 when the budget was set; a new
#: module on this path must earn its place.
OWN_MODULES_BUDGET = 34
#: Installed distributions the fast path may import on SQLite.
ALLOWED = {"django-entrypoint", "structlog"}


def imported(stderr: str) -> list[str]:
    """The modules named by the interpreter's import log, in order."""
    names = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.append(name)
    return names


def test_the_fast_path_imports_no_django_and_stays_within_its_budget(
    launcher: Launcher, tmp_path: Path
) -> None:
    """After ``freeze``, a start with nothing pending reports ready on the fast path having
    imported no module of Django (nor of any package but the log library) and at most the
    budgeted number of its own."""
    env = launcher.env(sqlite_databases(tmp_path))
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
    assert [m for m in modules if m == "django" or m.startswith("django.")] == []
    owners = importlib.metadata.packages_distributions()
    installed = {dist for name in modules for dist in owners.get(name.split(".")[0], [])}
    # setuptools' editable-install hook runs at interpreter start, before the entrypoint.
    assert installed - {"setuptools"} <= ALLOWED
    own = {m for m in modules if m == "entrypoint" or m.startswith("entrypoint.")}
    assert len(own) <= OWN_MODULES_BUDGET, sorted(own)
