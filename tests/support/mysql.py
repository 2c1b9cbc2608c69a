"""Fixtures for MySQL/MariaDB: a real server found, a fresh database per test, and a throw-away
server for the tests that need to start one late.

The server comes from ``TEST_MYSQL_URL`` (``mysql://USER:PASSWORD@HOST:PORT/``) when set, else
from 127.0.0.1:3306 (user root, empty password) when one answers there. Otherwise the tests that
use it are skipped with how to run them, or fail when ``TEST_MYSQL_REQUIRED=1`` (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit

import pytest

from tests.support import optional
from tests.support.pgcluster import port_answers

HOW_TO_RUN = (
    "no MySQL/MariaDB server: set TEST_MYSQL_URL=mysql://USER:PASSWORD@HOST:3306/ or run "
    "a server on 127.0.0.1:3306 (root, empty password)"
)


@dataclass(frozen=True)
class MySQLServer:
    """Where an administrative MySQL/MariaDB account connects."""

    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None, **extra: Any) -> Any:
        """An autocommit mysqlclient connection."""
        import MySQLdb

        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user}
        if self.password:
            params["password"] = self.password
        if database:
            params["database"] = database
        params.update(extra)
        conn = MySQLdb.connect(connect_timeout=5, **params)
        conn.autocommit(True)
        return conn

    def query(
        self, sql: str, params: tuple[Any, ...] = (), database: str | None = None
    ) -> list[Any]:
        """Run one statement and return its rows."""
        conn = self.connect(database)
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params or None)
            return list(cursor.fetchall()) if cursor.description else []
        finally:
            conn.close()


def _unavailable(reason: str) -> NoReturn:
    optional.unavailable(optional.PARTS["mysql"], reason)


def _find_server() -> MySQLServer | None:
    url = os.environ.get("TEST_MYSQL_URL")
    if url:
        parts = urlsplit(url)
        return MySQLServer(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
        )
    if port_answers("127.0.0.1", 3306):
        return MySQLServer("127.0.0.1", 3306, "root", "")
    return None


@pytest.fixture(scope="session")
def mysql_server() -> MySQLServer:
    """A real MySQL/MariaDB server with an account that may create databases."""
    try:
        import MySQLdb
    except ImportError:
        _unavailable("the MySQL driver mysqlclient is not installed")
    server = _find_server()
    if server is None:
        _unavailable(HOW_TO_RUN)
    try:
        server.connect().close()
    except MySQLdb.Error as exc:
        _unavailable(f"{HOW_TO_RUN} ({exc.args[-1]})")
    return server


@dataclass
class MySQLDatabase:
    """A fresh database of one test."""

    server: MySQLServer
    name: str

    def django(self, **extra: Any) -> dict[str, Any]:
        """A Django DATABASES entry for this database."""
        entry: dict[str, Any] = {
            "ENGINE": "django.db.backends.mysql",
            "NAME": self.name,
            "USER": self.server.user,
            "PASSWORD": self.server.password,
            "HOST": self.server.host,
            "PORT": str(self.server.port),
        }
        entry.update(extra)
        return entry

    def connect(self, **extra: Any) -> Any:
        """An autocommit connection to this database."""
        return self.server.connect(self.name, **extra)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run one statement in this database and return its rows."""
        return self.server.query(sql, params, database=self.name)


def _drop(server: MySQLServer, name: str) -> None:
    conn = server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s", (name,))
        for (ident,) in cursor.fetchall():
            try:
                cursor.execute(f"KILL {int(ident)}")
            except Exception:  # noqa: S110 - it ended by itself meanwhile
                pass
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture
def mysql_factory(mysql_server: MySQLServer) -> Iterator[Any]:
    """Make fresh databases; all are dropped after the test."""
    made: list[str] = []

    def make() -> MySQLDatabase:
        name = f"ep_{uuid.uuid4().hex[:10]}"
        mysql_server.query(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        made.append(name)
        return MySQLDatabase(mysql_server, name)

    yield make
    for name in made:
        _drop(mysql_server, name)


@pytest.fixture
def mysql_db(mysql_factory: Any) -> MySQLDatabase:
    """A fresh MySQL/MariaDB database for this test."""
    return mysql_factory()  # type: ignore[no-any-return]


def find_mariadbd() -> tuple[str, str] | None:
    """The server binary and the data-directory installer, or None."""
    server = shutil.which("mariadbd") or shutil.which("mysqld")
    if server is None:
        for candidate in ("/usr/sbin/mariadbd", "/usr/sbin/mysqld"):
            if os.path.exists(candidate):
                server = candidate
                break
    installer = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server is None or installer is None:
        return None
    return server, installer


class ThrowAwayMariaDB:
    """A MariaDB data directory of its own and its server on a chosen TCP port."""

    def __init__(self, port: int) -> None:
        found = find_mariadbd()
        if found is None:
            msg = "mariadbd and mariadb-install-db are needed for a throw-away server"
            raise RuntimeError(msg)
        self.server, installer = found
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="entrypoint-mariadb-"))
        self.data = self.root / "data"
        self.process: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                installer,
                "--no-defaults",
                f"--datadir={self.data}",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
                f"--user={_user()}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        """Start the server in the background on 127.0.0.1:port; do not wait for it."""
        with (self.root / "log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.server,
                    "--no-defaults",
                    f"--datadir={self.data}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={self.root / 'sock'}",
                    f"--pid-file={self.root / 'pid'}",
                    f"--user={_user()}",
                    "--innodb-buffer-pool-size=16M",
                    "--skip-log-bin",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def wait_accepting(self, timeout: float = 30) -> float:
        """Block until the port accepts connections; return that moment (monotonic)."""
        deadline = time.monotonic() + timeout
        while not port_answers("127.0.0.1", self.port, timeout=0.05):
            if time.monotonic() > deadline:
                msg = f"the throw-away MariaDB did not start; see {self.root / 'log'}"
                raise RuntimeError(msg)
            time.sleep(0.01)
        return time.monotonic()

    def destroy(self) -> None:
        """Stop the server and remove its data directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name
