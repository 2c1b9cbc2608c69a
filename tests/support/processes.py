"""Real entrypoint processes for the tests: started in their own session with their output in
files, their JSON log events parsed, killed at the end; and the checks every bad-input test
makes of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.paths import REPO, TESTPROJ


def parse_events(text: str) -> list[dict[str, Any]]:
    """The JSON log events among lines of output (other lines are skipped)."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


@dataclass
class Proc:
    """A real entrypoint process with its output captured to files."""

    popen: subprocess.Popen[bytes]
    out: Path
    err: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def wait(self, timeout: float = 60) -> int:
        """Wait for the exit code."""
        return self.popen.wait(timeout=timeout)

    def stdout(self) -> str:
        """What it printed on standard output so far."""
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        """What it printed on standard error so far (the JSON log lines and error line)."""
        return self.err.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events so far."""
        return parse_events(self.stderr())

    def wait_for_event(self, name: str, timeout: float = 30, **match: Any) -> dict[str, Any]:
        """Block until a log event with this name (and these fields) appears."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                    return event
            if self.popen.poll() is not None:
                break
            time.sleep(0.02)
        for event in self.events():
            if event.get("event") == name and all(event.get(k) == v for k, v in match.items()):
                return event
        msg = f"no {name} event {match} within {timeout}s; stderr:\n{self.stderr()[-3000:]}"
        raise AssertionError(msg)

    def error_lines(self) -> list[str]:
        """Standard error lines that are not JSON log events."""
        return [line for line in self.stderr().splitlines() if not line.startswith("{")]


class Launcher:
    """Starts entrypoint processes on the test project; kills all of them at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[Proc] = []

    def env(self, databases: dict[str, Any] | None = None, **extra: str) -> dict[str, str]:
        """The environment of a process: the test project, JSON logs, no health server."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ENTRYPOINT_", "TESTPROJ_"))
        }
        env.update(
            PYTHONPATH=os.pathsep.join([str(TESTPROJ), str(REPO)]),
            DJANGO_SETTINGS_MODULE="testproj.settings",
            ENTRYPOINT_LOG_FORMAT="json",
            ENTRYPOINT_HEALTH_PORT="0",
            TESTPROJ_DIR=str(self.tmp_path),
            PYTHONUNBUFFERED="1",
        )
        if databases is not None:
            env["TESTPROJ_DATABASES"] = json.dumps(databases)
        env.update(extra)
        return env

    def start(
        self,
        args: list[str],
        env: dict[str, str],
        cwd: Path = TESTPROJ,
        prefix: list[str] | None = None,
    ) -> Proc:
        """Start ``python -m entrypoint ARGS`` in its own session (after ``prefix``, such as
        ``ip netns exec NAME``, when given)."""
        n = len(self.procs)
        out, err = self.tmp_path / f"proc{n}.out", self.tmp_path / f"proc{n}.err"
        with out.open("wb") as fout, err.open("wb") as ferr:
            popen = subprocess.Popen(
                [*(prefix or []), sys.executable, "-m", "entrypoint", *args],
                env=env,
                cwd=cwd,
                stdout=fout,
                stderr=ferr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(popen, out, err)
        self.procs.append(proc)
        return proc

    def run(self, args: list[str], env: dict[str, str], timeout: float = 60) -> Proc:
        """Start and wait for the exit."""
        proc = self.start(args, env)
        proc.wait(timeout)
        return proc

    def cleanup(self) -> None:
        """Kill every process group still alive."""
        for proc in self.procs:
            if proc.popen.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(10)


def sqlite_databases(tmp_path: Path, name: str = "db.sqlite3") -> dict[str, Any]:
    """A DATABASES dict with one SQLite file in the test's directory."""
    return {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / name)}}


def migrations_on_disk(*apps: str) -> set[tuple[str, str]]:
    """(app, name) of every migration file of the test project's apps."""
    found = set()
    for app in apps:
        for path in (TESTPROJ / app / "migrations").glob("0*.py"):
            found.add((app, path.stem))
    return found


# A password put in bad-input tests' settings: it must never appear in any output.
SECRET = "hunter2-Secret"


ERROR_PREFIX = "django-entrypoint: error: "


def run_bad(launcher: Launcher, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the entrypoint; return its exit code and its one error line (asserting there is one,
    and that no secret and no traceback appear anywhere in its output)."""
    proc = launcher.run(args, env, timeout=60)
    everything = proc.stdout() + proc.stderr()
    assert SECRET not in everything
    assert "Traceback" not in everything
    lines = proc.error_lines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(ERROR_PREFIX)
    return proc.popen.returncode, lines[0][len(ERROR_PREFIX) :]
