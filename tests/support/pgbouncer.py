"""A PgBouncer of a test's own in front of a PostgreSQL server: transaction pooling with a pool of
one server connection, as a busy pool reuses them, on a free port of loopback.

Needs the ``pgbouncer`` binary (Debian's package); as root it runs as the ``postgres`` system
user, since PgBouncer refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

from tests.support.pgcluster import free_port, port_answers


class Bouncer:
    """One PgBouncer process; a context manager that stops it and removes its files."""

    def __init__(self, server_host: str, server_port: int, *, pool_mode: str = "transaction"):
        self.server_host = server_host
        self.server_port = server_port
        self.pool_mode = pool_mode
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="entrypoint-pgbouncer-"))
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Bouncer:
        """Write the configuration and start PgBouncer; return once it accepts connections."""
        users = self.root / "userlist.txt"
        users.write_text('"postgres" ""\n"root" ""\n')
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={self.server_host} port={self.server_port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.root}\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            "default_pool_size = 1\nmax_client_conn = 200\n"
            "admin_users = postgres\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        argv = [shutil.which("pgbouncer") or "pgbouncer", str(ini)]
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            for path in (users, ini):
                shutil.chown(path, "postgres")
            user = pwd.getpwnam("postgres")
            argv = ["runuser", "-u", user.pw_name, "--", *argv]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not port_answers("127.0.0.1", self.port, timeout=0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
                self.__exit__(None, None, None)
                msg = f"pgbouncer did not start: {err.strip()[-500:]}"
                raise RuntimeError(msg)
            time.sleep(0.05)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop PgBouncer and remove its files."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, user: str = "postgres") -> str:
        """A client URL of ``database`` through the pooler."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str, user: str = "postgres") -> psycopg.Connection[object]:
        """A pooled autocommit client connection."""
        return psycopg.connect(self.url(database, user), autocommit=True, prepare_threshold=None)

    def admin(self, command: str) -> list[dict[str, str]]:
        """The rows of one command of PgBouncer's admin console (``SHOW CLIENTS``...), which
        speaks only the simple query protocol."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True) as conn:
            result = conn.pgconn.exec_(command.encode())
            names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
            return [
                {names[j]: (result.get_value(i, j) or b"").decode() for j in range(result.nfields)}
                for i in range(result.ntuples)
            ]
