"""A throw-away PostgreSQL cluster for the tests: initdb into a temporary directory, then start
and stop the server on a chosen TCP port.

The binaries come from PATH, from a Debian-style /usr/lib/postgresql/*/bin, or from the
``pgserver`` pip package (which bundles them), so the suite also runs on a laptop with only
Python. PostgreSQL refuses to run as root: as root, the cluster runs as the ``postgres`` system
user when there is one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def find_bindir() -> Path | None:
    """A directory holding initdb and pg_ctl, or None."""
    candidates: list[Path] = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(os.path.realpath(found)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    try:
        import pgserver  # bundles a PostgreSQL build

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin")
    except ImportError:
        pass
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now: all bound at
    once, so that two of them are never the same (two calls of :func:`free_port` can be)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def port_answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Cluster:
    """One initdb'ed data directory and its server process."""

    def __init__(
        self,
        bindir: Path,
        port: int,
        password: str | None = None,
        *,
        listen: str = "127.0.0.1",
        trust: str | None = None,
    ) -> None:
        self.bindir = bindir
        self.port = port
        self.listen = listen
        self.user = None
        self.root = Path(tempfile.mkdtemp(prefix="entrypoint-pg-"))
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                msg = "running as root needs a 'postgres' system user to own the test cluster"
                raise RuntimeError(msg) from exc
            self.user = "postgres"
            shutil.chown(self.root, "postgres")
        self.data = self.root / "data"
        auth = ["-A", "trust"]
        if password is not None:
            # Password authentication over TCP, for the wrong-password tests.
            pwfile = self.root / "pw"
            pwfile.write_text(password)
            if self.user:
                shutil.chown(pwfile, self.user)
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                *auth,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ]
        )
        if trust is not None:
            # Clients from this network (a test's network namespace) connect without a password.
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {trust} trust\n")

    def _options(self) -> str:
        return f"-p {self.port} -h {self.listen} -k {self.root} -c fsync=off -c max_connections=200"

    def _run(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[bytes]:
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        return subprocess.run(argv, check=True, capture_output=True, timeout=60, **kwargs)  # type: ignore[call-overload]

    def start(self, wait: bool = True) -> None:
        """Start the server on the listen addresses and port (fsync off: a test cluster need
        not survive)."""
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                self._options(),
                "-l",
                str(self.root / "log"),
                "start",
                *(["-w"] if wait else ["-W"]),
            ]
        )
        if wait:
            deadline = time.monotonic() + 30
            while not port_answers("127.0.0.1", self.port) and time.monotonic() < deadline:
                time.sleep(0.05)

    def restart(self) -> None:
        """Restart the server the way an operator does (``pg_ctl restart -m fast``): every
        session is ended, the server comes back on the same port."""
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                self._options(),
                "-m",
                "fast",
                "-l",
                str(self.root / "log"),
                "restart",
                "-w",
            ]
        )

    def stop(self) -> None:
        """Stop the server at once."""
        try:
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            )
        except subprocess.CalledProcessError:
            pass

    def destroy(self) -> None:
        """Stop the server and remove the data directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        """The admin URL of this cluster."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
