"""What the health child serves, once its socket listens (see :mod:`entrypoint.health.server`).

Requests are served on one asyncio event loop, read with h11 and answered by the pure WSGI app
of :mod:`entrypoint.health`. A connection costs a socket and about a kilobyte, never a thread,
so thousands of slow or idle clients cannot crowd out a probe: a request head must arrive whole
within :data:`HEAD_DEADLINE` and :data:`MAX_HEAD_BYTES`, and when the connections reach their
bound the one that has waited longest on its client is closed to admit the newcomer.

No Django here, and nothing imported that is not needed: this process lives as long as the
container does.
"""

from __future__ import annotations

import contextlib
import errno
import http
import io
import json
import os
import signal
import socket
import sys
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from entrypoint.health.app import make_wsgi_app
from entrypoint.health.metrics import HealthMetrics, build_metrics
from entrypoint.health.probe import CachedAppCheck
from entrypoint.health.state import PUSH_TIMEOUT, HealthState, apply_message

if TYPE_CHECKING:
    # asyncio, h11 and the worker pool are imported where they are used.
    import asyncio
    from concurrent.futures import Future, ThreadPoolExecutor
    from wsgiref.types import WSGIApplication, WSGIEnvironment

    import h11

# A request's line and headers must arrive whole within this many seconds, bytes and header
# lines; probes send a few hundred bytes at once, so anything slower or bigger is cut off
# (slowloris, junk). A client that does not take its answer within the same time is dropped.
HEAD_DEADLINE = 5.0
MAX_HEAD_BYTES = 8192
MAX_HEADERS = 100
# Heads still arriving may hold this many bytes in all; past it, the oldest are closed. Without
# it, a bound's worth of clients each stalling just under MAX_HEAD_BYTES would hold 16 MB.
HEAD_BUFFER_BUDGET = 512 * 1024
# Connections accepted per wake-up of the listening socket, so a flood of new connections
# cannot keep the loop from reading the heads of those already accepted.
ACCEPT_BATCH = 64
# How often the parent pid is compared with the one at start.
PARENT_POLL_SECONDS = 0.1
MAX_MESSAGE_BYTES = 65536


@dataclass(frozen=True)
class Answer:
    """What the WSGI app answered: status code, reason phrase, headers and the whole body."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


_INTERNAL_ERROR = Answer(
    500,
    "Internal Server Error",
    [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "15")],
    b"internal error\n",
)


def call_app(app: WSGIApplication, environ: WSGIEnvironment) -> Answer:
    """Call ``app`` with ``environ`` and collect its whole answer; a 500 when it raises.

    Nothing is sent before the app has finished, so a second ``start_response`` (with
    ``exc_info``) simply replaces the first. The error itself is not printed: a broken app would
    otherwise write a traceback at every probe for the life of the container.
    """
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        started[:] = [(status, list(headers))]
        return chunks.append

    try:
        output: Iterable[bytes] = app(environ, start_response)
        try:
            chunks.extend(output)
        finally:
            close = getattr(output, "close", None)
            if close is not None:
                close()
        status, headers = started[-1]
        code, _, reason = status.partition(" ")
        return Answer(int(code), reason, headers, b"".join(chunks))
    except Exception:
        return _INTERNAL_ERROR


def wsgi_environ(
    request: h11.Request, server: tuple[str, int], peer: tuple[str, int] | None
) -> WSGIEnvironment:
    """The WSGI environ of one parsed request (PEP 3333), with an empty body."""
    target = request.target.decode("latin-1")
    _, absolute, rest = target.partition("://")
    if absolute and not target.startswith("/"):
        # Absolute form, as sent to a proxy (http://host:port/readyz): the path follows the
        # authority. Split by hand: urlsplit raises on what h11 lets through (http://[::1).
        ends = [at for at in (rest.find("/"), rest.find("?")) if at >= 0]
        target = rest[min(ends) :] if ends else ""
        target = target if target.startswith("/") else f"/{target}"
    path, _, query = target.partition("?")
    environ: WSGIEnvironment = {
        "REQUEST_METHOD": request.method.decode("latin-1"),
        "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, "latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version.decode('latin-1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if peer is not None:
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = str(peer[0]), str(peer[1])
    for raw_name, raw_value in request.headers:
        name = raw_name.decode("latin-1")
        # X-Forwarded_For and X-Forwarded-For would land on the same key: drop the odd one.
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        value = raw_value.decode("latin-1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def head_is_whole(head: bytes) -> bool:
    """Whether ``head`` holds the blank line that ends a request head, as h11 looks for it.

    Either line end counts (CRLF or a bare LF); a head that starts with one has no request
    line, which h11 reports once it is handed the bytes.
    """
    return head.startswith((b"\n", b"\r\n")) or b"\n\n" in head or b"\n\r\n" in head


def _refusal(status: int) -> bytes:
    # The request could not be read, so its HTTP version is unknown: answer in the oldest.
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        status, phrase = 400, "Bad Request"
    return f"HTTP/1.0 {status} {phrase}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


class _Connection:
    """One accepted client: its socket, the head so far, and what is left to send it."""

    __slots__ = ("deadline", "fd", "head", "outgoing", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.head = b""
        self.deadline = 0.0
        self.outgoing: bytes | memoryview = b""


class Server:
    """Serves a WSGI app on a listening socket from one event loop, one request per connection.

    ``bound`` is the most connections open at once; ``may_block`` says which requests the app
    may take long to answer, which then run in a worker thread; ``deadline`` is how long a
    client may take to send its head, and again to take its answer.

    Every open connection is in ``_open``; those waiting on their client (for the rest of a
    head, or to take its answer) are also in ``_waiting``, in the order their deadlines fall,
    which is the order they started waiting in, as every wait lasts ``deadline``.
    That order serves both the deadline sweep and the choice of whom to close when full. It is
    an ``OrderedDict`` because its oldest entry is looked up after every removal from the
    front, which a plain dict answers by skipping over the holes those removals left.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        listener: socket.socket,
        app: WSGIApplication,
        *,
        bound: int,
        may_block: Callable[[WSGIEnvironment], bool] = lambda environ: False,
        deadline: float = HEAD_DEADLINE,
    ) -> None:
        self._loop = loop
        self._listener = listener
        self._app = app
        self._bound = bound
        self._may_block = may_block
        self._deadline = deadline
        host, port = listener.getsockname()[:2]
        self._address = (str(host), int(port))
        self._open: dict[int, _Connection] = {}
        # Bytes of heads still arriving, in all (see HEAD_BUFFER_BUDGET).
        self._buffered = 0
        self._waiting: OrderedDict[int, _Connection] = OrderedDict()
        self._accepting = False
        self._closed = False
        self._sweep: asyncio.TimerHandle | None = None
        self._worker: ThreadPoolExecutor | None = None

    @property
    def connections(self) -> int:
        """Connections open right now."""
        return len(self._open)

    def start(self) -> None:
        """Start accepting connections."""
        self._resume_accepting()

    def close(self) -> None:
        """Stop accepting and close every connection and the listening socket."""
        self._pause_accepting()
        self._closed = True
        for connection in list(self._open.values()):
            self._drop(connection)
        if self._sweep is not None:
            self._sweep.cancel()
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
        self._listener.close()

    # -- accepting ----------------------------------------------------------------------------

    def _resume_accepting(self) -> None:
        if not self._accepting and not self._closed:
            self._accepting = True
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def _pause_accepting(self) -> None:
        if self._accepting:
            self._accepting = False
            self._loop.remove_reader(self._listener.fileno())

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of descriptors or memory despite the bound: make room, or wait a little.
                scarce = exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
                if scarce and not self._evict_oldest():
                    self._pause_accepting()
                    self._loop.call_later(0.1, self._resume_accepting)
                    return
                continue  # or the client gave up before it was accepted (ECONNABORTED, ...)
            newcomer = self._admit(sock)
            if len(self._open) > self._bound and not self._evict_oldest(spare=newcomer):
                # Every other connection is being answered; new ones wait in the backlog until
                # one closes (answers take microseconds, or the app server check's timeout).
                self._pause_accepting()
                return

    def _admit(self, sock: socket.socket) -> _Connection:
        sock.setblocking(False)
        connection = _Connection(sock)
        self._open[connection.fd] = connection
        self._wait(connection)
        self._loop.add_reader(connection.fd, self._read, connection)
        return connection

    def _evict_oldest(self, spare: _Connection | None = None) -> bool:
        """Close the connection that has waited longest on its client; False when none does."""
        for connection in self._waiting.values():
            if connection is spare:
                return False
            if connection.outgoing:
                self._drop(connection)
            else:
                self._refuse(connection, 503)
            return True
        return False

    # -- waiting on clients -------------------------------------------------------------------

    def _wait(self, connection: _Connection) -> None:
        connection.deadline = self._loop.time() + self._deadline
        self._waiting[connection.fd] = connection
        if self._sweep is None:
            self._sweep = self._loop.call_at(connection.deadline, self._expire)

    def _unwait(self, connection: _Connection) -> None:
        if self._waiting.pop(connection.fd, None) is not None:
            self._buffered -= len(connection.head)

    def _expire(self) -> None:
        self._sweep = None
        now = self._loop.time()
        while self._waiting:
            connection = next(iter(self._waiting.values()))
            if connection.deadline > now:
                self._sweep = self._loop.call_at(connection.deadline, self._expire)
                return
            if connection.outgoing:
                self._drop(connection)
            else:
                self._refuse(connection, 408)

    # -- reading the head ---------------------------------------------------------------------

    def _read(self, connection: _Connection) -> None:
        try:
            data = connection.sock.recv(MAX_HEAD_BYTES - len(connection.head))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(connection)
            return
        if not data:
            # The client hung up before a whole head: nobody is left to read an answer.
            self._drop(connection)
            return
        head = connection.head = connection.head + data
        self._buffered += len(data)
        if not head_is_whole(head):
            if len(head) >= MAX_HEAD_BYTES:
                self._refuse(connection, 431)
            else:
                while self._buffered > HEAD_BUFFER_BUDGET and self._evict_oldest():
                    pass
            return
        self._unwait(connection)
        connection.head = b""
        import h11

        # The parser comes only now that the head is whole: it costs about 0.9 kB, as much as
        # all the rest of a connection, and under attack most connections never finish a head.
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        parser.receive_data(head)
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            self._refuse(connection, exc.error_status_hint)
            return
        if not isinstance(event, h11.Request):  # a whole head is a request or an error
            self._refuse(connection, 400)
            return
        try:
            self._dispatch(connection, parser, event)
        except Exception:
            # A request that trips anything costs that request, never the server or a
            # descriptor; and nothing is printed, which every probe would then repeat.
            self._refuse(connection, 500)

    # -- answering ----------------------------------------------------------------------------

    def _dispatch(
        self, connection: _Connection, parser: h11.Connection, request: h11.Request
    ) -> None:
        if request.http_version not in (b"1.0", b"1.1"):
            self._refuse(connection, 505)
            return
        if len(request.headers) > MAX_HEADERS:
            self._refuse(connection, 431)
            return
        # One request per connection: whatever else the client sends is never read.
        self._loop.remove_reader(connection.fd)
        peer: tuple[str, int] | None = None
        with contextlib.suppress(OSError):
            peer = connection.sock.getpeername()[:2]
        environ = wsgi_environ(request, self._address, peer)
        if not self._may_block(environ):
            self._respond(connection, parser, request, call_app(self._app, environ))
            return
        # The answer depends on a call that may wait (the app server check): one worker thread
        # makes that call, so the loop goes on serving everyone else meanwhile.
        if self._worker is None:
            from concurrent.futures import ThreadPoolExecutor

            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-app")
        pending = self._worker.submit(call_app, self._app, environ)

        def answered(done: Future[Answer]) -> None:
            answer = done.result() if not done.cancelled() else _INTERNAL_ERROR
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are exiting
                self._loop.call_soon_threadsafe(self._respond, connection, parser, request, answer)

        pending.add_done_callback(answered)

    def _respond(
        self,
        connection: _Connection,
        parser: h11.Connection,
        request: h11.Request,
        answer: Answer,
    ) -> None:
        if self._open.get(connection.fd) is not connection:
            return  # closed while the answer was being made
        import h11

        try:
            data = parser.send(
                h11.Response(
                    status_code=answer.status,
                    reason=answer.reason,
                    # Probes do not reuse connections (the kubelet turns keep-alive off), and a
                    # server that never waits for a second request has no idle keep-alive
                    # connections to look after.
                    headers=[*answer.headers, ("Connection", "close")],
                )
            )
            if answer.body and request.method != b"HEAD":
                data += parser.send(h11.Data(data=answer.body))
            data += parser.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            self._refuse(connection, 500)  # the app's headers do not make a valid answer
            return
        self._send(connection, data)

    def _send(self, connection: _Connection, data: bytes | memoryview) -> None:
        try:
            sent = connection.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(connection)
            return
        if sent == len(data):
            self._drop(connection)
            return
        # The client is slow to take its answer: finish when it can take more, within the same
        # deadline as a head.
        first = not connection.outgoing
        connection.outgoing = memoryview(data)[sent:]
        if first:
            self._wait(connection)
            self._loop.add_writer(connection.fd, self._write, connection)

    def _write(self, connection: _Connection) -> None:
        self._send(connection, connection.outgoing)

    def _refuse(self, connection: _Connection, status: int) -> None:
        with contextlib.suppress(OSError):
            connection.sock.send(_refusal(status))
        self._drop(connection)

    def _drop(self, connection: _Connection) -> None:
        if self._open.pop(connection.fd, None) is None:
            return
        self._unwait(connection)
        self._loop.remove_reader(connection.fd)
        if connection.outgoing:
            self._loop.remove_writer(connection.fd)
        connection.sock.close()
        if not self._accepting and len(self._open) < self._bound:
            self._resume_accepting()


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


async def serve(
    listener: socket.socket,
    app: WSGIApplication,
    state: HealthState,
    metrics: HealthMetrics,
    *,
    bound: int,
    parent: int,
    terminated: threading.Event,
) -> None:
    """Serve until SIGTERM, the end of the pipe before an exec, or the end of ``parent``."""
    import asyncio

    loop = asyncio.get_running_loop()
    stopped = loop.create_future()

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    loop.add_signal_handler(signal.SIGTERM, stop)
    if terminated.is_set():  # SIGTERM came before the loop could take it over
        stop()

    def on_eof() -> None:
        with state.lock:
            execed = state.execed
        if not execed:
            loop.call_soon_threadsafe(stop)

    def watch_parent() -> None:
        # No PR_SET_PDEATHSIG: it fires when the *thread* that started this process ends,
        # which would take health down with any short-lived thread; comparing the parent pid
        # is exact.
        if os.getppid() != parent:
            stop()
        else:
            loop.call_later(PARENT_POLL_SECONDS, watch_parent)

    def waits_on_the_app(environ: WSGIEnvironment) -> bool:
        if environ.get("PATH_INFO") != "/readyz":
            return False
        with state.lock:
            return state.app_health_url is not None

    server = Server(loop, listener, app, bound=bound, may_block=waits_on_the_app)
    server.start()
    threading.Thread(
        target=read_messages, args=(0, state, metrics, on_eof), name="pipe", daemon=True
    ).start()
    loop.call_later(PARENT_POLL_SECONDS, watch_parent)
    try:
        await stopped
    finally:
        server.close()


def run(
    listener: socket.socket,
    *,
    bound: int,
    parent: int,
    terminated: threading.Event,
    push: tuple[str, ...] | None,
    reply: int | None,
) -> int:
    """Serve health on ``listener`` (bound and reported by :func:`entrypoint.health.server.main`)
    until the entrypoint or the app server after it ends; then push the metrics when asked."""
    state = HealthState()
    registry = CollectorRegistry()
    metrics = build_metrics(registry)
    app = make_wsgi_app(state, registry, app_check=CachedAppCheck(state))
    import asyncio

    release_compile_memory()
    asyncio.run(
        serve(listener, app, state, metrics, bound=bound, parent=parent, terminated=terminated)
    )
    if push is not None and reply is not None:
        with state.lock:
            execed = state.execed
        if not execed:
            outcome = push_metrics(registry, push[0], push[1])
            with contextlib.suppress(OSError):
                os.write(reply, f"{outcome}\n".encode())
    return 0


def push_metrics(registry: CollectorRegistry, url: str, instance: str) -> str:
    """PUT every metric of ``registry`` to a Prometheus Pushgateway (job ``django-entrypoint``,
    grouped by ``instance``); the outcome as one line: ``pushed`` or ``push_failed REASON``."""
    from prometheus_client import push_to_gateway

    try:
        push_to_gateway(
            url,
            job="django-entrypoint",
            registry=registry,
            grouping_key={"instance": instance},
            timeout=PUSH_TIMEOUT,
        )
    except Exception as exc:  # any failure of the push is only reported
        return f"push_failed {type(exc).__name__}: {exc}".replace("\n", " ")
    return "pushed"
