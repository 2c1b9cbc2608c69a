"""The least-privilege recipe of docs/deploy.md on a real PostgreSQL server: a schema owner that
migrates (the Job) and an application role with DML only, NOSUPERUSER and no CREATE on the
schema. The roles are made per test and dropped after it."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.e2e.test_run_health import health_env, wait_for_readyz
from tests.support.databases import drop_database
from tests.support.pgcluster import free_port
from tests.support.processes import Launcher

PREFIX = "django-entrypoint: error: "


@dataclass
class Roles:
    """A database owned by ``owner``, and ``app`` granted what the recipe grants."""

    server: str
    database: str
    owner: str
    app: str

    def django(self, role: str) -> dict[str, Any]:
        """The DATABASES entry of the database as ``role``."""
        params = psycopg.conninfo.conninfo_to_dict(self.server)
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": self.database,
            "USER": role,
            "HOST": params.get("host", "127.0.0.1"),
            "PORT": str(params.get("port", 5432)),
        }

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One query as the server's admin, in the database."""
        info = {**psycopg.conninfo.conninfo_to_dict(self.server), "dbname": self.database}
        with psycopg.connect(**info, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


# The recipe of docs/deploy.md ("Two roles"), with the names filled in.
RECIPE = """
CREATE ROLE {owner} LOGIN NOSUPERUSER;
CREATE ROLE {app} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
CREATE DATABASE {db} OWNER {owner};
"""
GRANTS = """
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT ON DATABASE {db} TO {app};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO {app};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO {app};
"""


@pytest.fixture
def roles(pg_server: str) -> Iterator[Roles]:
    """The two roles and their database, made as the recipe says; all dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    made = Roles(pg_server, f"ep_roles_{tag}", f"ep_owner_{tag}", f"ep_app_{tag}")
    names = {"owner": made.owner, "app": made.app, "db": made.database}
    with psycopg.connect(pg_server, autocommit=True) as conn:
        for statement in RECIPE.format(**names).strip().split(";\n"):
            conn.execute(statement.strip().rstrip(";"))
    try:
        info = {**psycopg.conninfo.conninfo_to_dict(pg_server), "dbname": made.database}
        with psycopg.connect(**info, autocommit=True) as conn:
            for statement in GRANTS.format(**names).strip().split(";\n"):
                conn.execute(statement.strip().rstrip(";"))
        yield made
    finally:
        drop_database(pg_server, made.database)
        with psycopg.connect(pg_server, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {made.app}")
            conn.execute(f"DROP ROLE IF EXISTS {made.owner}")


# The app exec'd after the wait: reads and writes the migrated schema as the application role.
APP = (
    "import time, django; django.setup(); from inventory.models import Product; "
    "Product.objects.create(name='from-app'); "
    "print('products', Product.objects.count(), flush=True); time.sleep(30)"
)


def test_the_application_role_waits_for_the_owners_job_then_serves(
    launcher: Launcher, roles: Roles
) -> None:
    """`run --migrate=wait` as the application role waits (503, waiting_for_migrations) while
    nothing is migrated, then, once the owner's `migrate` (the Job) has run, turns /readyz 200
    and execs the app, which reads and writes the migrated tables with DML only."""
    port = free_port()
    app_env = health_env(launcher, {"default": roles.django(roles.app)}, port)
    pod = launcher.start(["--migrate=wait", "run", "--", sys.executable, "-c", APP], app_env)
    wait_for_readyz(port, pod, phase="waiting_for_migrations")
    job = launcher.run(["migrate"], launcher.env({"default": roles.django(roles.owner)}))
    assert job.popen.returncode == 0, job.stderr()
    body = wait_for_readyz(port, pod, phase="ready", exec=True)
    assert body["http"] == 200
    pod.wait_for_event("exec")
    deadline_lines = _wait_stdout(pod, "products")
    assert deadline_lines == "products 4"  # three seeded by a migration, one by the app
    owners = roles.query("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [(roles.owner,)]
    os.killpg(pod.pid, signal.SIGTERM)
    pod.wait(10)


def test_migrate_as_the_application_role_fails_at_the_first_ddl(
    launcher: Launcher, roles: Roles
) -> None:
    """`migrate` as the application role, with a migration pending, fails at its first DDL
    with exit 70 and one line naming the migration, the missing privilege and the fix; its
    audit row says `failed`, never `running`, and the schema is as the owner left it."""
    owner = launcher.env({"default": roles.django(roles.owner)}, TESTPROJ_EXTRA_APPS="")
    assert launcher.run(["migrate"], owner).popen.returncode == 0
    app = launcher.env({"default": roles.django(roles.app)}, TESTPROJ_EXTRA_APPS="catalog")
    proc = launcher.run(["migrate"], app)
    assert proc.popen.returncode == 70, proc.stderr()
    assert proc.error_lines() == [
        f"{PREFIX}migration catalog.0001_initial failed on database 'default': "
        "InsufficientPrivilege: permission denied for schema public; the role "
        f"'{roles.app}' lacks CREATE on schema public, which only the schema owner should "
        "have: run migrate with the owner's role (the migration Job), and set "
        f"ENTRYPOINT_MIGRATE=wait on the containers that run as '{roles.app}'"
    ]
    statuses = roles.query("SELECT status FROM entrypoint_migration_run ORDER BY seq")
    assert statuses == [("succeeded",), ("failed",)]
    tables = {
        t for (t,) in roles.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    }
    assert not any(t.startswith("catalog_") for t in tables)


def test_without_grants_on_the_audit_table_migrate_stops_before_migrating(
    launcher: Launcher, roles: Roles
) -> None:
    """An application role with no grant on the audit table cannot record a run: `migrate`
    stops with exit 70 and one line naming the table, the refusal and the GRANT that fixes it,
    before anything is migrated; `wait-migrated` needs no grant on it at all."""
    owner = launcher.env({"default": roles.django(roles.owner)})
    assert launcher.run(["migrate"], owner).popen.returncode == 0
    roles.query(f"REVOKE ALL ON entrypoint_migration_run FROM {roles.app}")
    app = launcher.env({"default": roles.django(roles.app)})
    proc = launcher.run(["migrate"], app)
    assert proc.popen.returncode == 70, proc.stderr()
    assert proc.error_lines() == [
        f"{PREFIX}cannot read the audit table entrypoint_migration_run on database 'default': "
        "ProgrammingError: permission denied for table entrypoint_migration_run; GRANT SELECT, "
        "INSERT, UPDATE, DELETE ON entrypoint_migration_run to the migrating role, or migrate "
        "with the role that owns it"
    ]
    assert roles.query("SELECT count(*) FROM entrypoint_migration_run") == [(1,)]
    waited = launcher.run(["wait-migrated"], app)
    assert waited.popen.returncode == 0, waited.stderr()


def _wait_stdout(proc: Any, word: str, timeout: float = 30) -> str:
    """The first line of standard output that starts with ``word``."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.stdout().splitlines():
            if line.startswith(word):
                return str(line)
        time.sleep(0.05)
    msg = f"no {word!r} line; stdout {proc.stdout()!r}; stderr {proc.stderr()[-2000:]}"
    raise AssertionError(msg)
