"""The health child: ``python -m entrypoint._healthd ADDR PORT``.

It binds first and prints ``listening HOST PORT`` (or ``error REASON``) as its only line of
output, then serves ``/livez``, ``/readyz`` and ``/metrics`` while a thread applies the messages
the entrypoint writes on its stdin (see :mod:`entrypoint.health`). End of that pipe before an
``exec`` message means the entrypoint is done: the child exits. After ``exec`` it serves until its
parent, now the app server under the same pid, ends. SIGTERM ends it with status 0.

No Django here, and nothing imported that is not needed: this process lives as long as the
container does.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry

from entrypoint.errors import describe_os_error
from entrypoint.health import (
    CachedAppCheck,
    HealthMetrics,
    HealthState,
    apply_message,
    build_metrics,
    make_wsgi_app,
)

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

# A request's line and headers must arrive whole within this many seconds and bytes; probes send
# a few hundred bytes at once, so anything slower or bigger is cut off (slowloris, junk).
HEAD_DEADLINE = 5.0
MAX_HEAD_BYTES = 8192
# Per socket operation while writing the answer.
IO_TIMEOUT = 5.0
# Connections served at once; more wait in the listen backlog rather than adding threads.
MAX_CONNECTIONS = 64
BACKLOG = 256
# How often the parent pid is compared with the one at start.
PARENT_POLL_SECONDS = 0.1
MAX_MESSAGE_BYTES = 65536


class _Handler(WSGIRequestHandler):
    """One request per connection, head read under a deadline and a size cap, nothing logged."""

    timeout = IO_TIMEOUT
    disable_nagle_algorithm = True  # the status line and body go out in separate writes
    # Answer junk with a status line (HTTP/0.9 would send a bare body) and no HTML page.
    default_request_version = "HTTP/1.0"
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"

    def handle(self) -> None:
        head = self._read_head()
        if head is None:
            return
        self.rfile = io.BytesIO(head)
        super().handle()

    def log_message(self, format: str, *args: object) -> None:
        """Probes arrive every few seconds for the life of the container: log none of them."""

    def _read_head(self) -> bytes | None:
        sock: socket.socket = self.connection
        deadline = time.monotonic() + HEAD_DEADLINE
        data = b""
        while True:
            ends = [(data.find(end), len(end)) for end in (b"\r\n\r\n", b"\n\n")]
            found = [at + size for at, size in ends if at >= 0]
            if found:
                return data[: min(found)]
            if len(data) > MAX_HEAD_BYTES:
                self._refuse("431 Request Header Fields Too Large")
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._refuse("408 Request Timeout")
                return None
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                self._refuse("408 Request Timeout")
                return None
            except OSError:
                return None
            finally:
                sock.settimeout(IO_TIMEOUT)
            if not chunk:
                return None
            data += chunk

    def _refuse(self, status: str) -> None:
        answer = f"HTTP/1.0 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        with contextlib.suppress(OSError):
            self.connection.sendall(answer.encode())


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A threaded WSGI server with a bounded number of connections in flight."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = BACKLOG

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse DNS lookup ``HTTPServer`` does, dual-stack on IPv6."""
        if self.address_family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Start a thread for the connection once a slot is free."""
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        """Serve the connection and free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up or sent junk is not worth a traceback."""


def make_server(addr: str, port: int, app: WSGIApplication) -> _Server:
    """Bind ``addr:port`` (a name, an IPv4 or an IPv6 address) and return the server for ``app``."""
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = infos[0]
    server = _Server((str(sockaddr[0]), int(sockaddr[1])), family)
    server.set_app(app)
    return server


def read_messages(
    fd: int, state: HealthState, metrics: HealthMetrics, on_eof: Callable[[], None]
) -> None:
    """Apply every newline-delimited JSON message read from ``fd`` until end of file."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            on_eof()
            return
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > MAX_MESSAGE_BYTES:
            pending = b""  # no message is this long: drop it rather than grow without bound
        for line in lines:
            _apply_line(line, state, metrics)


def _apply_line(line: bytes, state: HealthState, metrics: HealthMetrics) -> None:
    try:
        message = json.loads(line)
    except ValueError:
        return
    if isinstance(message, dict):
        # A message that trips anything must cost the message, never the health server.
        with contextlib.suppress(Exception):
            apply_message(state, metrics, message)


def release_compile_memory() -> None:
    """Hand back to the OS the heap that compiling this package from source left behind.

    Without bytecode on disk (``PYTHONDONTWRITEBYTECODE`` and an install that did not compile),
    every start compiles the modules above, and close to 1 MB of freed heap stays resident for
    the life of the container. With bytecode present there is nothing to return, and loading
    ctypes would cost more than it saves, so this does nothing then.
    """
    spec = sys.modules["entrypoint.health"].__spec__
    cached = spec.cached if spec is not None else None
    if sys.platform != "linux" or cached is None or os.path.exists(cached):
        return
    import ctypes  # here only: this path is the one where it pays for itself

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)  # glibc only; musl has no malloc_trim


def main(argv: list[str]) -> int:
    """Serve health for ``ADDR PORT`` until the entrypoint or the app server after it ends."""
    if len(argv) != 2 or not argv[1].isdigit():
        sys.stderr.write("usage: python -m entrypoint._healthd ADDR PORT\n")
        return 64
    addr, port = argv[0], int(argv[1])
    # No PR_SET_PDEATHSIG: it fires when the *thread* that started this process ends, which
    # would take health down with any short-lived thread; comparing the parent pid is exact.
    parent = os.getppid()
    stop = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C in a terminal reaches the whole process group; the child ends with its parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    state = HealthState()
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    app = make_wsgi_app(state, registry, app_check=CachedAppCheck(state))
    try:
        server = make_server(addr, port, app)
    except OSError as exc:
        reason = describe_os_error(exc).replace("\n", " ")
        os.write(1, f"error {reason}\n".encode())
        return 1
    host, bound_port = server.server_address[:2]
    os.write(1, f"listening {host!s} {bound_port}\n".encode())
    # The entrypoint closes its end after that line; nothing else may go there.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)

    def on_eof() -> None:
        with state.lock:
            execed = state.execed
        if not execed:
            stop.set()

    release_compile_memory()
    threading.Thread(target=server.serve_forever, name="serve", daemon=True).start()
    threading.Thread(
        target=read_messages, args=(0, state, metrics, on_eof), name="pipe", daemon=True
    ).start()
    while not stop.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            break
    server.server_close()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    # Daemon threads are blocked in accept and read; leave without waiting for them.
    os._exit(code)
