"""A pull request's check without a database: ``check --base REF`` and ``plan --base REF``
count the migrations at the git revision REF as applied, classify exactly what the change adds,
and open no connection (a listener on the configured database port counts none)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gitproject import line_of, pull_request
from tests.support.paths import REPO
from tests.support.processes import ERROR_PREFIX, Launcher, Proc


class Listener:
    """A TCP port that counts the connections made to it (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    """Where the project's database seems to be."""
    made = Listener()
    yield made
    made.sock.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example project in a git repository, a change adding three migrations on top."""
    return pull_request(tmp_path / "repo")


def run(launcher: Launcher, project: Path, listener: Listener, *args: str) -> Proc:
    """The entrypoint in the project, its database on the listener."""
    env = launcher.env(
        DJANGO_SETTINGS_MODULE="example.settings",
        DATABASE_URL=f"postgres://app@127.0.0.1:{listener.port}/app",
    )
    env["PYTHONPATH"] = f"{project}:{REPO}"
    proc = launcher.start(list(args), env, cwd=project)
    proc.wait(60)
    return proc


def test_plan_base_classifies_exactly_what_the_change_adds(
    launcher: Launcher, project: Path, listener: Listener
) -> None:
    """The three migrations the change adds are pending, classified with their table-lock notes
    as for PostgreSQL, from the SQL they would run; nothing else is, and no connection is
    opened."""
    proc = run(launcher, project, listener, "plan", "--base", "main", "--format", "json")
    assert proc.popen.returncode == 0, proc.stderr()[-2000:]
    rows = json.loads(proc.stdout())
    assert [(row["name"], row["phase"]) for row in rows] == [
        ("0004_note_views", "pre-deploy"),
        ("0005_views_bigint", "pre-deploy"),
        ("0006_remove_note_body", "post-deploy"),
    ]
    assert [lock["effect"] for lock in rows[1]["locks"]] == ["rewrite"]
    # judged from the SQL it runs, written without a server
    assert 'ALTER COLUMN "views" TYPE bigint' in rows[1]["locks"][0]["note"]
    assert rows[2]["needs_mark"] is True
    assert listener.accepted == 0


def test_check_base_annotates_each_problem_on_its_operation(
    launcher: Launcher, project: Path, listener: Listener
) -> None:
    """``check --base main --phase pre-deploy --format github``: exit 1 with one annotation per
    problem, each on the migration file and the line of the operation it is about; the
    migrations the change adds are not reported as unapplied; no connection is opened."""
    proc = run(
        launcher,
        project,
        listener,
        "--phase",
        "pre-deploy",
        "check",
        "--base",
        "main",
        "--format",
        "github",
    )
    assert proc.popen.returncode == 1, proc.stderr()[-2000:]
    annotations = proc.stdout().splitlines()
    migrations = project / "notes" / "migrations"
    line = line_of(migrations / "0006_remove_note_body.py", "migrations.RunPython(count")
    rewrite = line_of(migrations / "0005_views_bigint.py", "migrations.AlterField(")
    assert annotations == [
        f"::error file=site/notes/migrations/0006_remove_note_body.py,line={line},"
        "title=Deploy phase::notes.0006_remove_note_body: RunPython count needs an explicit mark "
        "(entrypoint_phase): what it does to data cannot be judged from outside; set "
        'entrypoint_phase = "pre-deploy" or "post-deploy" on its Migration class',
        f"::warning file=site/notes/migrations/0005_views_bigint.py,line={rewrite},"
        "title=Table lock::notes.0005_views_bigint: AlterField notes.Note.views: "
        '`ALTER TABLE "notes_note" ALTER COLUMN "views" TYPE bigint USING "views"::bigint`: '
        "int4 to int8 is not binary-coercible; PostgreSQL rewrites the table and its indexes "
        "under an ACCESS EXCLUSIVE lock; reads and writes wait until it is done",
    ]
    assert listener.accepted == 0


def test_check_base_warns_without_failing_under_phase_all(
    launcher: Launcher, project: Path, listener: Listener
) -> None:
    """Without a phase policy the missing mark and the table rewrite are warnings on their
    operations' lines, and the gate passes."""
    proc = run(launcher, project, listener, "check", "--base", "main", "--format", "github")
    assert proc.popen.returncode == 0, proc.stderr()[-2000:]
    migrations = project / "notes" / "migrations"
    rewrite = line_of(migrations / "0005_views_bigint.py", "migrations.AlterField(")
    data = line_of(migrations / "0006_remove_note_body.py", "migrations.RunPython(count")
    heads = [line.split("::")[1] for line in proc.stdout().splitlines()]
    assert heads == [
        f"warning file=site/notes/migrations/0005_views_bigint.py,line={rewrite},title=Table lock",
        f"warning file=site/notes/migrations/0006_remove_note_body.py,line={data},"
        "title=Deploy phase mark",
        "notice title=django-entrypoint check",
    ]
    assert listener.accepted == 0


def test_base_counts_every_migration_of_the_revision_as_applied(
    launcher: Launcher, project: Path, listener: Listener
) -> None:
    """At the change's own revision nothing is pending, and the gate passes."""
    proc = run(launcher, project, listener, "check", "--base", "HEAD")
    assert proc.popen.returncode == 0, proc.stderr()[-2000:]
    assert proc.stdout() == "ok: no problem found on default\n"
    assert listener.accepted == 0


def test_a_revision_that_does_not_exist_is_one_line(
    launcher: Launcher, project: Path, listener: Listener
) -> None:
    """A REF git does not know: exit 64, saying how to fetch it."""
    proc = run(launcher, project, listener, "plan", "--base", "origin/nope")
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        f"{ERROR_PREFIX}--base 'origin/nope' is not a revision of the repository at "
        f"{project.parent}; fetch it (git fetch origin main) or name a branch, tag or commit "
        "that exists"
    ]


def test_a_project_outside_git_is_one_line(
    launcher: Launcher, tmp_path: Path, listener: Listener
) -> None:
    """Without a git repository: exit 64, saying to run in a clone."""
    project = pull_request(tmp_path / "repo")
    (project.parent / ".git").rename(tmp_path / "git-elsewhere")
    proc = run(launcher, project, listener, "check", "--base", "main")
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        f"{ERROR_PREFIX}--base needs a git repository, and {project / 'example'} is not in one; "
        "run the "
        "check in a clone of the project (actions/checkout with fetch-depth: 0)"
    ]
