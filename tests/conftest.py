"""Fixtures: a real PostgreSQL (found or started), a fresh database per test, and real
entrypoint processes.

PostgreSQL comes from ``TEST_DATABASE_URL`` when set, else from 127.0.0.1:5432 when a server
answers there, else from a throw-away cluster this suite starts itself (see pgcluster.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.mysql_fixtures import mysql_db, mysql_factory, mysql_server  # noqa: F401 - fixtures
from tests.pgcluster import Cluster, find_bindir, free_port, port_answers
from tests.support import optional

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
TESTPROJ = TESTS / "projects" / "testproj"
EXAMPLE = REPO / "docker" / "example"


# Fixtures that mean a test needs an optional part, so that ``-m PART`` selects it too.
_PART_FIXTURES = {
    "mysql_server": "mysql",
    "mysql_factory": "mysql",
    "mysql_db": "mysql",
    "pushgateway": "pushgateway",
    "docker": "docker",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the optional parts its fixtures need."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in _PART_FIXTURES.items():
            if fixture in names and item.get_closest_marker(marker) is None:
                item.add_marker(marker)


@pytest.fixture(autouse=True)
def _optional_parts(request: pytest.FixtureRequest) -> None:
    """Skip (or, with TEST_<PART>_REQUIRED=1, fail) a test whose optional part is missing."""
    for marker in optional.PARTS:
        if request.node.get_closest_marker(marker) is not None:
            optional.check(marker)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With TEST_NO_SKIPS=1 (the extras run of .ci/run) a skipped test counts as failed."""
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and os.environ.get("TEST_NO_SKIPS") == "1"
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped, and TEST_NO_SKIPS=1 allows no skip: {report.longrepr}"


def _server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    if port_answers("127.0.0.1", 5432):
        for user in ("postgres", os.environ.get("USER", "root")):
            candidate = f"postgresql://{user}@127.0.0.1:5432/postgres"
            try:
                psycopg.connect(candidate, connect_timeout=3).close()
            except psycopg.Error:
                continue
            yield candidate
            return
    bindir = find_bindir()
    if bindir is None:
        pytest.exit(
            "no PostgreSQL for the tests: set TEST_DATABASE_URL, run one on 127.0.0.1:5432, "
            "or pip install pgserver (it bundles one)",
            returncode=4,
        )
    cluster = Cluster(bindir, free_port())
    cluster.start()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The admin URL of a real PostgreSQL server."""
    yield from _server_url()


@dataclass
class PgDatabase:
    """A fresh PostgreSQL database of one test."""

    server: str
    name: str

    @property
    def info(self) -> dict[str, Any]:
        """libpq parameters of this database."""
        params = psycopg.conninfo.conninfo_to_dict(self.server)
        params["dbname"] = self.name
        return params

    def django(self, **extra: Any) -> dict[str, Any]:
        """A Django DATABASES entry for this database."""
        info = self.info
        entry = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": self.name,
            "USER": info.get("user", ""),
            "PASSWORD": info.get("password", ""),
            "HOST": info.get("host", ""),
            "PORT": str(info.get("port", "")),
        }
        entry.update(extra)
        return entry

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection for assertions."""
        return psycopg.connect(**self.info, autocommit=True)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return its rows."""
        with self.connect() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []


def _drop(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def pg_factory(pg_server: str) -> Iterator[Any]:
    """Make fresh databases; all are dropped after the test."""
    made: list[str] = []

    def make() -> PgDatabase:
        name = f"ep_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return PgDatabase(pg_server, name)

    yield make
    for name in made:
        _drop(pg_server, name)


@pytest.fixture
def pg_db(pg_factory: Any) -> PgDatabase:
    """A fresh PostgreSQL database for this test."""
    return pg_factory()  # type: ignore[no-any-return]


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


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Start real entrypoint processes; they are killed after the test."""
    launch = Launcher(tmp_path)
    yield launch
    launch.cleanup()


@pytest.fixture(scope="module")
def empty_app_registry() -> Iterator[None]:
    """Django's app registry, ready and empty: deconstructing a relation field consults it.

    No settings are configured. When this fixture populated the registry it empties it again
    after the module, so a later test in the same process can still set Django up its own way.
    """
    from django.apps import apps

    if apps.ready:
        yield
        return
    apps.populate([])
    try:
        yield
    finally:
        apps.app_configs = {}
        apps.apps_ready = apps.models_ready = apps.ready = apps.loading = False
        apps.ready_event = threading.Event()
        apps.clear_cache()


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
