"""Django's own answer, for the fast path's property tests: a Django process set up on a project
that says, on request, what its migrate would plan on the database as it is now."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

Node = tuple[str, str]

# Asks Django for its plan on leaf nodes and whether it takes the history; one JSON line per
# request.
_ORACLE = """
import json, sys
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
MigrationRecorder(connection).ensure_schema()
print("ready", flush=True)
from django.db.migrations.exceptions import InconsistentMigrationHistory
for _line in sys.stdin:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    try:
        executor.loader.check_consistent_history(connection)
    except InconsistentMigrationHistory:
        consistent = False
    else:
        consistent = True
    print(json.dumps({"plan": [[m.app_label, m.name] for m, _ in plan],
                      "consistent": consistent}), flush=True)
"""


class Oracle:
    """A Django process on a project answering "what is your plan now?"."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ORACLE],
            env=env,
            cwd=cwd,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def plan(self) -> tuple[list[Node], bool]:
        """Django's plan on the database as it is now, and whether Django's migrate would take
        the history (``check_consistent_history``)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("plan\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        return [(app, name) for app, name in answer["plan"]], answer["consistent"]

    def close(self) -> None:
        """End the process."""
        self.process.kill()
        self.process.wait(10)
