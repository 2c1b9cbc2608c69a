"""PostgreSQL for the tests: how the suite finds (or starts) a server, and a fresh database of
one test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest

from tests.support.pgcluster import Cluster, find_bindir, free_port, port_answers


def server_url() -> Iterator[str]:
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


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
