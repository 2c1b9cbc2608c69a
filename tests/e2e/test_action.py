"""The GitHub Action (``action.yml`` at the repository root), its steps run here as the runner
runs them: each ``run`` step in bash with the action's inputs, its ``GITHUB_*`` files pointed at
temporary files, on a pull request of the example project (no database: ``base``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.gitproject import line_of, pull_request
from tests.support.paths import REPO

ACTION = REPO / "action.yml"


@dataclass
class Outcome:
    """What the action's steps left: their exit code, output, job summary and step outputs."""

    code: int
    stdout: str
    summary: str
    outputs: dict[str, str]


def run_action(inputs: dict[str, str], workspace: Path, tmp: Path) -> Outcome:
    """Run every ``run`` step of the action (``uses`` steps are the runner's: Python is here)."""
    action = yaml.safe_load(ACTION.read_text())
    values = {name: str(spec.get("default", "")) for name, spec in action["inputs"].items()}
    values.update(inputs)

    def expand(text: Any) -> str:
        text = str(text).replace("${{ github.action_path }}", str(REPO))
        return re.sub(r"\$\{\{ inputs\.([\w-]+) \}\}", lambda m: values[m.group(1)], text)

    summary, outputs = tmp / "summary.md", tmp / "outputs.txt"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENTRYPOINT_", "DJANGO_"))},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_OUTPUT": str(outputs),
        # The project's database is never reached: base is set.
        "DATABASE_URL": "postgres://app@127.0.0.1:1/app",
    }
    stdout, code = "", 0
    for step in action["runs"]["steps"]:
        if "run" not in step:
            continue
        step_env = {**env, **{k: expand(v) for k, v in step.get("env", {}).items()}}
        step_env["PYTHONPATH"] = str(workspace / values["working-directory"])
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", expand(step["run"])],
            cwd=workspace / expand(step.get("working-directory", ".")),
            env=step_env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        stdout += done.stdout
        code = done.returncode
        if code:
            break
    found = {}
    if outputs.exists():
        found = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    text = summary.read_text() if summary.exists() else ""
    return Outcome(code, stdout, text, found)


def test_the_action_checks_a_pull_request_with_a_summary_and_annotations(tmp_path: Path) -> None:
    """``check`` with ``base: main`` and ``phase: pre-deploy``: the job fails on the one problem,
    the summary lists the three migrations the change adds with their phases, reasons and table
    locks, every annotation names a real file and the line of the operation it is about (an
    error for the missing mark, a warning for the table rewrite), and the outputs count what was
    found."""
    project = pull_request(tmp_path / "repo")
    workspace = project.parent
    outcome = run_action(
        {
            "command": "check",
            "working-directory": "site",
            "settings": "example.settings",
            "phase": "pre-deploy",
            "base": "main",
            "install": "none",
            "project-install": "true",
        },
        workspace,
        tmp_path,
    )
    assert outcome.code == 1, outcome.stdout
    annotations = [line for line in outcome.stdout.splitlines() if line.startswith("::")]
    assert annotations
    for line in annotations:
        file = re.search(r"file=([^,]+)", line)
        number = re.search(r",line=(\d+)", line)
        assert file is not None
        assert number is not None
        assert (workspace / file.group(1)).is_file()
    migration = project / "notes" / "migrations" / "0006_remove_note_body.py"
    assert any(
        f"file=site/notes/migrations/0006_remove_note_body.py,"
        f"line={line_of(migration, 'migrations.RunPython(count')}," in line
        for line in annotations
    )
    rewrite = project / "notes" / "migrations" / "0005_views_bigint.py"
    assert any(
        line.startswith(
            f"::warning file=site/notes/migrations/0005_views_bigint.py,"
            f"line={line_of(rewrite, 'migrations.AlterField(')},title=Table lock::"
        )
        for line in annotations
    )
    assert "3 pending: 2 pre-deploy, 1 post-deploy" in outcome.summary
    for name in ("0004_note_views", "0005_views_bigint", "0006_remove_note_body"):
        assert f"`notes.{name}`" in outcome.summary
    assert ":warning: AlterField notes.Note.views" in outcome.summary
    assert "RemoveField notes.Note.body: drops a column old code still reads and writes" in (
        outcome.summary
    )
    assert outcome.outputs == {
        "problems": "1",
        "pending": "3",
        "post-deploy": "1",
        "needs-mark": "1",
        "table-locks": "1",
        "pending-names": "notes.0004_note_views notes.0005_views_bigint notes.0006_remove_note_body",
    }


def test_the_action_refuses_an_unknown_command(tmp_path: Path) -> None:
    """A command the action does not know fails the step with an annotation saying which."""
    project = pull_request(tmp_path / "repo")
    outcome = run_action(
        {
            "command": "frobnicate",
            "working-directory": "site",
            "settings": "example.settings",
            "install": "none",
            "project-install": "true",
        },
        project.parent,
        tmp_path,
    )
    assert outcome.code == 64
    assert outcome.stdout.strip() == (
        "::error title=django-entrypoint::command must be check, plan or migrate, not 'frobnicate'"
    )
