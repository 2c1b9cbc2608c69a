"""Fixtures: a real PostgreSQL (found or started), a fresh database per test, real entrypoint
processes, and the optional parts' skips.

PostgreSQL comes from ``TEST_DATABASE_URL`` when set, else from 127.0.0.1:5432 when a server
answers there, else from a throw-away cluster this suite starts itself (see
``tests/support/pgcluster.py``). The helpers the fixtures hand out live in ``tests/support/``.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import optional
from tests.support.databases import PgDatabase, drop_database, server_url
from tests.support.mysql import mysql_db, mysql_factory, mysql_server  # noqa: F401 - fixtures
from tests.support.processes import Launcher

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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The admin URL of a real PostgreSQL server."""
    yield from server_url()


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
        drop_database(pg_server, name)


@pytest.fixture
def pg_db(pg_factory: Any) -> PgDatabase:
    """A fresh PostgreSQL database for this test."""
    return pg_factory()  # type: ignore[no-any-return]


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
