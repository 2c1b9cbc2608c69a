"""Every command the README and docs/ show is run here, or named with the reason it cannot be:
the docs' own django-entrypoint commands run against the example project (a git repository with
a change on top, SQLite), and their output has the shape the docs promise.

A command added to the docs without being run here, or listed below, fails
:func:`test_every_command_of_the_docs_is_run_or_accounted_for`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support.gitproject import pull_request
from tests.support.paths import REPO
from tests.support.processes import Launcher, Proc

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

#: Commands the docs show that this suite does not run, each with why (and what covers it).
NOT_RUN = {
    "python3 -m venv": "the README's opening commands: CI runs them (.ci/readme-command)",
    "pip install": "installs from the network or a wheel you built",
    "pip download": "fetches wheels for an offline image build",
    "ruff ": "CI runs the linters",
    "mypy": "CI runs the type checker",
    "python -m pytest": "this suite itself",
    "python -m bench.": "benchmarks, minutes long, run by hand (docs/performance.md)",
    "docker ": "needs a Docker engine: tests/e2e/test_container.py builds and runs the image",
    "sudo docker/": "builds a base image: .ci/docker-engine runs it",
    "docker/k8s/": "needs a cluster: the container test runs the manifests' commands",
    "kubectl ": "needs a cluster: the manifests are validated in tests/unit/test_assets.py",
    "curl ": "asks a running container: the container test asks the same endpoints",
    "ENTRYPOINT_PHASE=pre-deploy docker": "needs a Docker engine",
    "ENTRYPOINT_MIGRATE=wait django-entrypoint run": (
        "waits for another run's migrations: tests/integration/test_roles.py runs it"
    ),
}


def doc_commands() -> list[tuple[str, str]]:
    """(file, command) for each command the docs show: the lines of ``sh`` blocks (joined where
    a line ends with a backslash) and the ``$ `` lines of other blocks."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for fence, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S):
            lines = body.replace("\\\n", " ").splitlines()
            for raw in lines:
                line = raw.strip()
                if fence in ("sh", "console", "bash") and line and not line.startswith("#"):
                    found.append((path.name, re.sub(r"\s+#.*$", "", line)))
                elif line.startswith("$ "):
                    found.append((path.name, line[2:]))
    return found


def runnable(command: str) -> bool:
    """Whether this suite runs ``command`` (below)."""
    return command.startswith("django-entrypoint ") or "django-entrypoint --settings" in command


def test_every_command_of_the_docs_is_run_or_accounted_for() -> None:
    """No command in the docs goes untried: each is run by this module or listed in NOT_RUN."""
    unaccounted = [
        (name, command)
        for name, command in doc_commands()
        if not runnable(command) and not any(command.startswith(p) for p in NOT_RUN)
    ]
    assert unaccounted == []


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project in git (a change on top of ``main``), migrated up to ``main``."""
    root = tmp_path_factory.mktemp("docs") / "repo"
    return pull_request(root)


def run_doc_command(launcher: Launcher, project: Path, command: str, summary: Path) -> Proc:
    """Run one of the docs' django-entrypoint commands in the project, as a reader would."""
    command = command.replace('"$GITHUB_STEP_SUMMARY"', str(summary)).replace("origin/main", "main")
    redirect = None
    if ">>" in command:
        command, _, target = command.partition(">>")
        redirect = Path(target.strip())
    argv = shlex.split(command)
    assert argv[0] == "django-entrypoint"
    env = launcher.env(
        DJANGO_SETTINGS_MODULE="example.settings",
        DATABASE_URL=f"sqlite:///{project / 'docs.sqlite3'}",
    )
    env["PYTHONPATH"] = f"{project}{os.pathsep}{REPO}"
    proc = launcher.start(argv[1:], env, cwd=project)
    proc.wait(120)
    if redirect is not None:
        with redirect.open("a") as out:
            out.write(proc.stdout())
    return proc


def test_the_docs_django_entrypoint_commands_run_with_the_output_they_show(
    launcher: Launcher, project: Path, tmp_path: Path
) -> None:
    """Each django-entrypoint command the docs show runs on the example project: it exits as a
    gate or a report does (0, or 1 for a check that found something) and prints what its format
    promises (a table, JSON, annotations, a job summary)."""
    commands = [c for _, c in doc_commands() if c.startswith("django-entrypoint ")]
    assert commands
    summary = tmp_path / "summary.md"
    for command in commands:
        if command == "django-entrypoint wait-migrated":
            # It waits for another run's migrations: that run comes first, as in a deploy.
            done = run_doc_command(launcher, project, "django-entrypoint migrate", summary)
            assert done.popen.returncode == 0, done.stderr()[-2000:]
        proc = run_doc_command(launcher, project, command, summary)
        code = proc.popen.returncode
        assert code in (0, 1), f"{command}: exit {code}\n{proc.stderr()[-2000:]}"
        out = proc.stdout()
        if "--format json" in command:
            json.loads(out)
        elif "--format github" in command:
            assert all(line.startswith("::") for line in out.splitlines()), out
        elif "--format markdown" in command:
            assert summary.read_text().startswith("### Migrations")
        elif command == "django-entrypoint wait-migrated":
            assert code == 0, proc.stderr()[-2000:]
        elif " history" in command:
            assert out.splitlines()[0].startswith("RUN ") or out == "no runs recorded yet\n"
        elif " plan" in command:
            assert out.strip(), command
            for line in out.splitlines():
                assert line.startswith(("default  ", "    - ", "    ! ")) or line == (
                    "nothing to migrate"
                ), line


def test_the_readme_example_command_serves_the_example_project(
    launcher: Launcher, tmp_path: Path
) -> None:
    """The README's first command, from ``django-entrypoint`` on (the venv is this suite's):
    the example project on SQLite migrates, is ready, and its app server answers on port 8000;
    SIGTERM ends it."""
    line = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "readme-command"), "example"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    command = line.split("cd docker/example && ", 1)[1]
    argv = shlex.split(command)
    assert argv[0] == "django-entrypoint"
    env = launcher.env(ENTRYPOINT_HEALTH_PORT="0")
    env.pop("DJANGO_SETTINGS_MODULE")
    env["PYTHONPATH"] = str(REPO)
    # The README runs it in the activated venv, where `python` is this interpreter.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    example = tmp_path / "example"
    shutil.copytree(
        REPO / "docker" / "example",
        example,
        ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"),
    )
    proc = launcher.start(argv[1:], env, cwd=example)
    deadline = time.monotonic() + 60
    body = b""
    while time.monotonic() < deadline and proc.popen.poll() is None:
        try:
            with urllib.request.urlopen("http://127.0.0.1:8000/", timeout=1) as answer:
                body = answer.read()
                break
        except OSError:
            time.sleep(0.2)
    assert body, proc.stderr()[-2000:]
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)
