"""Health endpoints: the state they report, the pure WSGI app, the metrics, and the handle on
the small child process that serves them and outlives the exec of the app server.

The entrypoint becomes the app server through ``os.execvp``, so nothing in its own process can
keep answering probes. The health server therefore runs in a child (:mod:`entrypoint.health.server`)
started before the database wait and fed over a pipe, one JSON object per line::

    phase               {phase, database}
    db_wait             {database, seconds}
    lock_wait           {database, seconds}
    lock_holder_change  {database}
    lock_lost           {database}
    migration_applied   {database, app, name, seconds}
    migration_failed    {database, app, name}
    held                {database, count}
    migrations_missing  {database, count}    wait mode: migrations still missing
    migrations_wait     {database, seconds}  wait mode: how long it waited for them
    run_info            {release, django_version, version}
    ready               {}
    failed              {error}          only the exception class name of ``error`` is kept
    exec                {app_health_url}

Unknown types and malformed lines are ignored. This module must stay importable without Django
and light to import: the child imports it and should stay small for the life of the container.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

import contextlib
import json
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import IO

from entrypoint.errors import ConfigError, EntrypointError
from entrypoint.health.state import MAX_LABEL, PUSH_TIMEOUT, summarize_error


class HealthProcess:
    """The entrypoint's handle on the health child: start it, feed it, hand it over at the exec."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        host: str,
        port: int,
        replies: IO[bytes] | None = None,
    ) -> None:
        self._process = process
        self.host = host
        self.port = port
        # The child's stdout, kept open only when it owes a last line (its push's outcome).
        self._replies = replies
        self._send_lock = threading.RLock()
        self._handed_off = False
        stdin = process.stdin
        self._pipe: IO[bytes] | None = stdin
        if stdin is not None:
            # A stuck child must never stall a migration: a full pipe drops the message instead.
            os.set_blocking(stdin.fileno(), False)
        # Reaps the child the moment it ends, so it never lingers as a zombie of the entrypoint.
        threading.Thread(target=process.wait, name="entrypoint-health-reaper", daemon=True).start()

    @property
    def pid(self) -> int:
        """The health child's process id."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit status once it has ended, else None."""
        return self._process.returncode

    @classmethod
    def start(
        cls, addr: str, port: int, *, timeout: float = 5.0, push_url: str | None = None
    ) -> HealthProcess:
        """Start the health child on ``addr:port`` and return once it listens.

        With ``push_url`` the child pushes its metrics to that Prometheus Pushgateway when the
        entrypoint ends without an exec (a Job's metrics outlive it); :meth:`stop` returns the
        outcome.

        Raises :class:`ConfigError` when the address cannot be served (in use, not local,
        unknown host), :class:`EntrypointError` when the child does not come up in ``timeout``.
        """
        import subprocess  # the health child never starts a process: keep it out of its imports

        if not 0 < port < 65536:
            message = f"health port must be between 1 and 65535, got {port}"
            raise ValueError(message)
        # The pipes are close-on-exec on this side, so the app server started by the later
        # exec inherits neither end. -P: a project package in the working directory named like
        # a stdlib module (an app called `email` or `calendar`) must not shadow the child's.
        argv = [sys.executable, "-P", "-m", "entrypoint.health.server", addr, str(port)]
        if push_url:
            argv += ["--push", push_url, socket.gethostname()]
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=_child_environment()
        )
        line = ""
        listening = False
        if process.stdout is not None:
            try:
                line = _read_line(process.stdout, timeout)
                words = line.split(maxsplit=2)
                listening = words[:1] == ["listening"] and len(words) == 3 and words[2].isdigit()
            finally:
                if not (listening and push_url):
                    process.stdout.close()
        where = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
        words = line.split(maxsplit=2)
        if listening:
            replies = process.stdout if push_url else None
            return cls(process, words[1], int(words[2]), replies)
        if words[:1] == ["error"]:
            _end(process)  # it exits on its own right after reporting
            reason = line.partition(" ")[2].strip() or "unknown reason"
            message = (
                f"ENTRYPOINT_HEALTH_ADDR/ENTRYPOINT_HEALTH_PORT: cannot serve health on {where} "
                f"({reason}); choose a free local address and port, "
                "or set ENTRYPOINT_HEALTH_PORT=0 to turn the health server off"
            )
            raise ConfigError(message)
        if process.poll() is None:
            process.kill()
            process.wait()
            what = f"did not report listening within {timeout:g} s"
        else:
            what = f"exited with status {process.returncode} before listening"
        message = (
            f"the health server for {where} {what}; see its output above, "
            "or set ENTRYPOINT_HEALTH_PORT=0 to turn the health server off"
        )
        raise EntrypointError(message)

    def send(self, kind: str, **fields: object) -> None:
        """Send one message to the child; never raises and never blocks for long.

        For ``failed``, ``error`` may be the exception itself; only its class name is sent.
        """
        if kind == "failed":
            error = fields.get("error")
            if isinstance(error, BaseException):
                error = type(error).__name__
            fields["error"] = summarize_error(error) if isinstance(error, str) else "error"
        encoded = _encode(kind, fields)
        if len(encoded) > select.PIPE_BUF:
            encoded = _encode(kind, {k: _shorten(v) for k, v in fields.items()})
        # Writes up to PIPE_BUF are atomic: a message arrives whole or not at all.
        if len(encoded) > select.PIPE_BUF:
            return
        with self._send_lock:
            if self._pipe is None:
                return
            with contextlib.suppress(OSError, ValueError):
                os.write(self._pipe.fileno(), encoded)

    def handoff(self, app_health_url: str | None = None) -> None:
        """Just before the exec: tell the child the app server takes over, and let go of it."""
        self.send("exec", app_health_url=app_health_url)
        self._handed_off = True
        self._close_pipe()

    def stop(self, timeout: float = 2.0) -> str | None:
        """End the child: close its pipe and wait briefly, then terminate it if it lingers.

        Returns the outcome of the child's push to the Pushgateway (``pushed STATUS`` or
        ``push_failed REASON``) when it owed one, else None.
        """
        self._close_pipe()
        outcome = None
        if self._handed_off:
            # After a hand-off the child no longer ends on EOF; this is an exec that failed.
            self._process.terminate()
        elif self._replies is not None:
            # The push has its own timeout; wait a little longer for its outcome.
            outcome = _read_line(self._replies, PUSH_TIMEOUT + 2.0) or "push_failed no answer"
        if self._replies is not None:
            self._replies.close()
            self._replies = None
        _end(self._process, timeout)
        return outcome

    def __enter__(self) -> HealthProcess:
        """Use as a context manager that stops the child on the way out."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the child."""
        self.stop()

    def _close_pipe(self) -> None:
        with self._send_lock:
            pipe, self._pipe = self._pipe, None
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _encode(kind: str, fields: Mapping[str, object]) -> bytes:
    data = json.dumps({**fields, "type": kind}, default=str, separators=(",", ":"))
    return data.encode() + b"\n"


def _shorten(value: object) -> object:
    return value[:MAX_LABEL] if isinstance(value, str) else value


def _child_environment() -> dict[str, str] | None:
    # With -P the child no longer sees the working directory; when that is where this package
    # comes from (a source checkout), name it explicitly.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cwd = os.getcwd()
    elsewhere = {os.path.abspath(entry) for entry in sys.path if entry} - {cwd}
    if root in elsewhere:
        return None
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _end(process: subprocess.Popen[bytes], timeout: float = 2.0) -> None:
    import subprocess

    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(1.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _read_line(stream: IO[bytes], timeout: float) -> str:
    # The first line the child prints, without ever waiting past ``timeout``.
    deadline = time.monotonic() + timeout
    fd = stream.fileno()
    data = b""
    while b"\n" not in data and len(data) < 4096:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\n")[0].decode("utf-8", "replace")
