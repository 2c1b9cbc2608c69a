"""SQLite: an OS file lock (``flock``) on a file beside the database file.

The lock file is ``<database file>.entrypoint.lock``. ``flock`` locks belong to the open file,
so a process that dies, however it dies, releases the lock with its file descriptors. There is
no release notice: waiters try again after the shared jittered back-off.

Nothing outside the process can take the lock from it (there is no session to end or to lose),
so a holder never has to check it still holds it, and a run left ``running`` under the lock
belongs to a process that died: fencing has nothing to do here.
"""

from __future__ import annotations

import fcntl
import os
import time

from entrypoint.errors import ConfigError
from entrypoint.light import TYPE_CHECKING
from entrypoint.locks import Sessionless

if TYPE_CHECKING:
    from typing import Any


def lock_path(database_path: str) -> str:
    """The lock file beside a SQLite database file."""
    return f"{os.path.abspath(database_path)}.entrypoint.lock"


class FileLock(Sessionless):
    """Exclusive ``flock`` on the lock file beside the database (held by the open file, so it
    cannot be lost while this process lives: :class:`~entrypoint.locks.Sessionless`)."""

    #: Whether the lock can be lost while this process lives (see :mod:`entrypoint.pipeline.fence`).
    losable = False

    def __init__(self, database_path: str) -> None:
        self.path = lock_path(database_path)
        self.database = os.path.abspath(database_path)
        self.description = f"sqlite:///{os.path.abspath(database_path)}"
        self.fd: int | None = None
        self.held = False

    def connect(self) -> None:
        """Open (and create) the lock file, close-on-exec."""
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            msg = (
                f"cannot open the lock file {self.path}: {exc.strerror}; make its directory "
                "writable or set ENTRYPOINT_LOCK=off"
            )
            raise ConfigError(msg) from exc

    def try_acquire(self) -> bool:
        """Take the flock without blocking; write our pid into the file when we do."""
        if self.fd is None:
            msg = "the lock file is not open"
            raise RuntimeError(msg)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        self.held = True
        return True

    def holder(self) -> str | None:
        """The pid the holder wrote into the lock file."""
        try:
            with open(self.path, encoding="ascii") as handle:
                pid = handle.read().strip()
        except OSError:
            return None
        return f"pid {pid}" if pid.isdigit() else None

    def wait_for_release(self, seconds: float) -> None:
        """Sleep; flock has no release notice."""
        if seconds > 0:
            time.sleep(seconds)

    def announce(self) -> None:
        """Nothing to say it with: waiters poll."""

    def release(self) -> None:
        """Unlock the file."""
        if self.fd is not None:
            self.held = False
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            except OSError:
                pass

    def read(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One query on the database file, opened read-only for it; empty on any error."""
        import sqlite3
        from urllib.parse import quote

        try:
            conn = sqlite3.connect(f"file:{quote(self.database)}?mode=ro", uri=True, timeout=1.0)
        except sqlite3.Error:
            return []
        try:
            return list(conn.execute(query.replace("%s", "?"), params).fetchall())
        except sqlite3.Error:
            return []
        finally:
            conn.close()

    def close(self) -> None:
        """Close the file descriptor (which also releases the lock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
