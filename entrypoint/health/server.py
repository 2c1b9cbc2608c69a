"""The health child: ``python -m entrypoint.health.server ADDR PORT [--push URL INSTANCE]``.

It binds first and prints ``listening HOST PORT`` (or ``error REASON``) as its only line of
output, and only then imports what serves (:mod:`entrypoint.health.serving`, with
prometheus_client): the entrypoint waits for that line before it goes on to the exec, and the
kernel queues a probe that comes meanwhile. It then serves ``/livez``, ``/readyz`` and
``/metrics`` while a thread applies the messages the entrypoint writes on its stdin (see
:mod:`entrypoint.health`). End of that pipe before an ``exec`` message means the entrypoint is
done: the child exits. After ``exec`` it serves until its parent, now the app server under the
same pid, ends. SIGTERM ends it with status 0.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import sys
import threading

from entrypoint.errors import describe_os_error
from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType

# Connections open at once, at most. Each costs about 1 kB while it waits on its client, so a
# full house adds about 2 MB to the 27 MB the process needs at rest: the child shares the
# container's memory limit with the app server, and no client may grow it much. Probes are few
# and quick, so the bound is for the slow, and when it is reached the oldest of them goes.
# The file-descriptor limit may lower it.
MAX_CONNECTIONS = 2048
# Descriptors kept free for everything else the process holds: standard streams, the pipe, the
# listening socket, the event loop's own, the app server check's connection.
RESERVED_FDS = 32
# The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
BACKLOG = 4096


def connection_bound(soft: int, hard: int) -> tuple[int, int]:
    """The soft ``RLIMIT_NOFILE`` to ask for given the current limits, and the connection bound.

    The soft limit is raised toward the hard one only as far as :data:`MAX_CONNECTIONS` needs;
    the bound is what the resulting limit leaves after :data:`RESERVED_FDS`.
    """
    infinity = resource.RLIM_INFINITY
    wanted = MAX_CONNECTIONS + RESERVED_FDS
    if hard != infinity:
        wanted = min(wanted, hard)
    target = soft if soft == infinity or soft >= wanted else wanted
    room = MAX_CONNECTIONS if target == infinity else target - RESERVED_FDS
    return target, max(1, min(MAX_CONNECTIONS, room))


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit as far as allowed; the connection bound."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target, bound = connection_bound(soft, hard)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            _, bound = connection_bound(soft, soft)
    return bound


def listen(addr: str, port: int) -> socket.socket:
    """A non-blocking socket listening on ``addr:port`` (a name, an IPv4 or an IPv6 address).

    On IPv6 it is dual-stack where the host allows, so ``::`` also answers on IPv4.
    """
    infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def main(argv: list[str]) -> int:
    """Serve health for ``ADDR PORT`` until the entrypoint or the app server after it ends."""
    push = tuple(argv[3:5]) if len(argv) == 5 and argv[2] == "--push" else None
    if len(argv) not in (2, 5) or not argv[1].isdigit() or (len(argv) == 5 and push is None):
        sys.stderr.write(
            "usage: python -m entrypoint.health.server ADDR PORT [--push URL INSTANCE]\n"
        )
        return 64
    addr, port = argv[0], int(argv[1])
    parent = os.getppid()
    terminated = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        terminated.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C in a terminal reaches the whole process group; the child ends with its parent.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    bound = raise_fd_limit()
    try:
        listener = listen(addr, port)
    except OSError as exc:
        reason = describe_os_error(exc).replace("\n", " ")
        os.write(1, f"error {reason}\n".encode())
        return 1
    host, bound_port = listener.getsockname()[:2]
    os.write(1, f"listening {host!s} {bound_port}\n".encode())
    # The entrypoint closes its end after that line, unless a push's outcome is owed to it:
    # nothing else may go there.
    reply = os.dup(1) if push is not None else None
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)

    # Only now the serving part and what it imports (prometheus_client, the WSGI app, the
    # state): the entrypoint goes on at the line above, and the kernel queues any probe that
    # comes meanwhile on the listening socket.
    from entrypoint.health.serving import run

    return run(listener, bound=bound, parent=parent, terminated=terminated, push=push, reply=reply)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    # The pipe thread is blocked in read, and the app worker perhaps in the app server check;
    # leave without waiting for them.
    os._exit(code)
