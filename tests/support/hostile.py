"""A hostile client of the health server, as anyone on the pod's network could be: slowloris
connections that send half a request head and stall, and junk or oversized heads.

Run it as its own process, so that its work never competes with the probes being measured for
the same interpreter::

    python -m tests.support.hostile PORT [--host HOST] [--slowloris N] [--junk N] [--seconds S]

It holds ``--slowloris`` connections open for the whole attack, opening a new one whenever the
server closes one (which it does with 408 at its head deadline, or to admit someone else), and
sends ``--junk`` junk requests spread evenly over ``--seconds``. It prints ``ready`` once every
slowloris connection is open and runs until SIGTERM or SIGINT; then it waits for the answers to
the junk still in flight and prints one JSON line of what it saw (connections opened, answers by
first line, closes without answer).

:func:`attacking` runs it from a test or a benchmark, and :func:`probe_every` probes meanwhile
as a kubelet does: a new connection each time, a fixed period, a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

# Half a probe's head: the request line and a header, never the blank line that ends it.
HALF_HEAD = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow"
JUNK = (
    b"\x00\xff\xfe garbage\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET /readyz HTTP/9.9 extra words\r\n\r\n",
    b"GET /readyz HTTP/2.0\r\n\r\n",
    b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 150 + b"\r\n",
    b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    b"GET /" + b"r" * 50_000 + b" HTTP/1.1\r\n\r\n",
    b"\x16\x03\x01 a TLS hello, never ended",
)
# Junk requests in flight at once, at most.
JUNK_IN_FLIGHT = 32
# How long the junk still in flight at the end may take to be answered.
DRAIN_SECONDS = 5.0


@dataclass
class Tally:
    """What the attack saw, by kind of connection."""

    opened: Counter[str] = field(default_factory=Counter)
    answers: Counter[str] = field(default_factory=Counter)
    refused: int = 0

    def answer(self, kind: str, data: bytes) -> None:
        """Count the first line the server sent (or a close without one) for ``kind``."""
        line = data.split(b"\r\n", 1)[0].decode("latin-1") if data else "closed"
        self.answers[f"{kind}: {line}"] += 1

    def as_dict(self) -> dict[str, object]:
        """The tally as JSON-ready data."""
        return {"opened": dict(self.opened), "answers": dict(self.answers), "refused": self.refused}


class _Client:
    """One connection of the attack and what is left to send on it."""

    __slots__ = ("connected", "kind", "received", "sock", "unsent")

    def __init__(self, sock: socket.socket, kind: str, payload: bytes) -> None:
        self.sock = sock
        self.kind = kind
        self.unsent = memoryview(payload)
        self.received = b""
        self.connected = False


class Attack:
    """Slowloris connections held open and junk sent at a steady pace, on one selector."""

    def __init__(self, host: str, port: int, slowloris: int, junk: int, seconds: float) -> None:
        self.address = (host, port)
        self.slowloris = slowloris
        self.junk = junk
        self.seconds = seconds
        self.selector = selectors.DefaultSelector()
        self.tally = Tally()
        self.holding = 0
        self.junk_sent = 0
        self.junk_open = 0
        self.stopped = False

    def open(self, kind: str, payload: bytes) -> None:
        """Start a non-blocking connection that will send ``payload``."""
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        code = sock.connect_ex(self.address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            self.tally.refused += 1
            return
        client = _Client(sock, kind, payload)
        self.selector.register(sock, selectors.EVENT_WRITE, client)
        self.tally.opened[kind] += 1
        if kind == "slowloris":
            self.holding += 1
        else:
            self.junk_open += 1

    def run(self, on_ready: Callable[[], object] = lambda: None) -> Tally:
        """Attack until :meth:`stop`, then collect the junk's answers; what was seen."""
        for _ in range(self.slowloris):
            self.open("slowloris", HALF_HEAD)
        while self.holding and not self.stopped and self._connecting():
            self._step(0.05)
        on_ready()
        started = time.monotonic()
        while not self.stopped:
            elapsed = time.monotonic() - started
            due = min(self.junk, int(self.junk * elapsed / self.seconds) + 1)
            while self.junk_sent < due and self.junk_open < JUNK_IN_FLIGHT:
                self.open("junk", JUNK[self.junk_sent % len(JUNK)])
                self.junk_sent += 1
            for _ in range(self.slowloris - self.holding):  # a refused one waits a turn
                self.open("slowloris", HALF_HEAD)
            self._step(0.01)
        drained = time.monotonic() + DRAIN_SECONDS
        while self.junk_open and time.monotonic() < drained:
            self._step(0.01)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.selector.close()
        return self.tally

    def stop(self) -> None:
        """End the attack at the next turn of its loop."""
        self.stopped = True

    def _connecting(self) -> bool:
        return any(
            not key.data.connected or key.data.unsent for key in self.selector.get_map().values()
        )

    def _step(self, timeout: float) -> None:
        for key, events in self.selector.select(timeout):
            client: _Client = key.data
            if events & selectors.EVENT_WRITE:
                self._send(client)
            elif events & selectors.EVENT_READ:
                self._receive(client)

    def _send(self, client: _Client) -> None:
        client.connected = True
        try:
            sent = client.sock.send(client.unsent)
        except BlockingIOError:
            return
        except OSError:
            self._close(client, b"")
            return
        client.unsent = client.unsent[sent:]
        if not client.unsent:
            if client.kind == "junk":
                with contextlib.suppress(OSError):
                    client.sock.shutdown(socket.SHUT_WR)
            self.selector.modify(client.sock, selectors.EVENT_READ, client)

    def _receive(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            client.received += chunk
            return
        self._close(client, client.received)

    def _close(self, client: _Client, answer: bytes) -> None:
        self.selector.unregister(client.sock)
        client.sock.close()
        self.tally.answer(client.kind, answer)
        if client.kind == "slowloris":
            self.holding -= 1
        else:
            self.junk_open -= 1


def raise_fd_limit(needed: int) -> None:
    """Raise the soft descriptor limit to ``needed``; SystemExit naming the limits if it cannot."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            message = (
                f"the attack needs {needed} file descriptors; the hard limit is {hard} "
                "(raise it with `ulimit -Hn` or the container's nofile limit)"
            )
            raise SystemExit(message)
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@dataclass
class Probes:
    """What a series of probes saw: each latency, each status (None: no answer in time)."""

    latencies: list[float] = field(default_factory=list)
    statuses: list[int | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    peak_rss_kb: int = 0

    def percentile(self, share: float) -> float:
        """The latency below which ``share`` (0.5, 0.99) of the probes answered, in seconds.

        Probes without an answer count as taking forever.
        """
        ordered = sorted(self.latencies) + [float("inf")] * len(self.errors)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field (VmRSS, VmHWM, ...) of ``/proc/<pid>/status``; 0 once it has ended."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def probe_once(port: int, host: str, path: str, timeout: float) -> tuple[int, float]:
    """One GET on a new connection: its status and the seconds from connect to the last byte."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        answer.read()
        return answer.status, time.perf_counter() - started
    finally:
        connection.close()


def probe_every(
    port: int,
    *,
    period: float,
    timeout: float,
    seconds: float,
    pid: int | None = None,
    host: str = "127.0.0.1",
    path: str = "/readyz",
) -> Probes:
    """Probe ``path`` every ``period`` for ``seconds``; with ``pid``, its peak RSS meanwhile."""
    probes = Probes()
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < seconds:
        try:
            status, latency = probe_once(port, host, path, timeout)
        except (OSError, http.client.HTTPException) as exc:
            probes.statuses.append(None)
            probes.errors.append(f"{type(exc).__name__}: {exc}")
        else:
            probes.statuses.append(status)
            probes.latencies.append(latency)
        if pid is not None:
            probes.peak_rss_kb = max(probes.peak_rss_kb, status_kb(pid, "VmRSS"))
        count += 1
        time.sleep(max(0.0, started + count * period - time.monotonic()))
    return probes


@contextlib.contextmanager
def attacking(
    port: int, *, slowloris: int, junk: int, seconds: float, host: str = "127.0.0.1"
) -> Iterator[dict[str, object]]:
    """Run the attack in its own process while the body runs; the dict gets its tally after.

    Enters once every slowloris connection is open; the junk is spread over ``seconds``; the
    attack ends with the body.
    """
    argv = [sys.executable, "-m", "tests.support.hostile", str(port), "--host", host]
    argv += ["--slowloris", str(slowloris), "--junk", str(junk), "--seconds", str(seconds)]
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(argv, cwd=repo, stdout=subprocess.PIPE, text=True)
    tally: dict[str, object] = {}
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line.strip() != "ready":
            process.wait(5)
            message = f"the attack did not start (exit {process.returncode}): {line!r}"
            raise RuntimeError(message)
        yield tally
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        tally.update(json.loads(out.strip().splitlines()[-1]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main(argv: list[str]) -> int:
    """Run the attack from the command line; print ``ready`` and then the tally."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--slowloris", type=int, default=1000)
    parser.add_argument("--junk", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    raise_fd_limit(args.slowloris + JUNK_IN_FLIGHT + 64)
    attack = Attack(args.host, args.port, args.slowloris, args.junk, args.seconds)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        attack.stop()

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, on_sigterm)
    tally = attack.run(on_ready=lambda: print("ready", flush=True))
    print(json.dumps(tally.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
