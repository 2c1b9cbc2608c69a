"""A small PostgreSQL client for the no-op fast path's one read and the migration lock's
connection: the frontend/backend protocol (version 3) over a socket, without libpq.

Importing psycopg costs a no-op start more than everything else it does together (it brings
asyncio, ssl and its type system along); the fast path needs one round trip of a few read-only
statements, and a replica waiting for the lock a few statements and ``NOTIFY``. This client
speaks just that: the start-up message, the authentication methods of a plain server (trust,
password, md5, SCRAM-SHA-256), TLS when the server offers it, the extended query protocol with
text parameters (several statements pipelined behind one Sync), notifications, and the socket
options of a long-lived connection (keepalives, ``tcp_user_timeout``).

Anything it does not do exactly as libpq would (a parameter or environment variable it does not
know, a service file, a client certificate directory, a password it must look up, Kerberos
credentials (libpq would encrypt with GSSAPI), a SCRAM password that needs SASLprep, several
hosts) raises :class:`Unsupported` before or while
connecting, and the caller uses psycopg instead: the fast path gets slower, never different.
"""

from __future__ import annotations

import _socket
import os
import struct
from collections.abc import Mapping, Sequence

from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any

#: libpq parameters this client honours the way libpq does; any other is Unsupported.
KNOWN = frozenset(
    {
        "dbname",
        "user",
        "password",
        "host",
        "port",
        "connect_timeout",
        "sslmode",
        "application_name",
        "options",
        "client_encoding",
        # Socket options, applied as libpq applies them.
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
    }
)
_PROTOCOL = 196608  # 3.0
_SSL_REQUEST = 80877103
_DEFAULT_PORT = 5432


class Unsupported(Exception):
    """The connection needs something only libpq does: use psycopg."""


class ConnectFailed(Exception):
    """The server could not be reached, or refused the connection (the text says why)."""


class ServerError(Exception):
    """A statement failed on the server: its SQLSTATE and message (``fatal``: the server ends
    the session with it)."""

    def __init__(self, sqlstate: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.fatal = fatal


Rows = list[tuple[str | None, ...]]


def unsupported_reason(params: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """Why this client would not connect as libpq does with ``params``; None when it would."""
    unknown = sorted(set(params) - KNOWN)
    if unknown:
        return f"libpq parameter {unknown[0]}"
    variables = sorted(name for name in environ if name.startswith("PG"))
    if variables:
        return f"environment variable {variables[0]}"
    host = str(params.get("host") or "")
    if not host or "," in host or host.startswith("@"):
        return "the default, several or an abstract socket host"
    if str(params.get("sslmode") or "prefer") not in {"disable", "allow", "prefer", "require"}:
        return f"sslmode {params.get('sslmode')}"
    encoding = str(params.get("client_encoding") or "UTF8").upper().replace("-", "")
    if encoding not in {"UTF8", "UNICODE"}:
        return f"client_encoding {params.get('client_encoding')}"
    if os.path.isdir(os.path.expanduser("~/.postgresql")):
        return "~/.postgresql (client certificates, root certificates)"
    default_cache = f"/tmp/krb5cc_{os.geteuid()}"  # noqa: S108 - Kerberos's own default path
    if "KRB5CCNAME" in environ or os.path.exists(default_cache):
        return "Kerberos credentials (GSSAPI encryption)"
    return None


class Connection:
    """One connection; :meth:`run` sends statements, :meth:`wait_notify` waits for a
    ``NOTIFY``, :meth:`close` says goodbye. Safe to share between threads (one call at a time).

    ``io_timeout`` bounds every read and write once connected (by default the connect timeout:
    the fast path's query must not hang); None leaves them to the socket options (keepalives,
    ``tcp_user_timeout``), as libpq does, for a connection that waits. A call interrupted half
    way (a signal) or a connection the server ended leaves the connection closed: its protocol
    would be out of step.
    """

    def __init__(self, params: Mapping[str, Any], *, io_timeout: float | None = -1.0) -> None:
        from _thread import allocate_lock

        self.params = dict(params)
        self.sock: Any = None
        self._buffer = b""
        self._lock = allocate_lock()
        self._io_timeout = io_timeout
        self._steady: float | None = None
        self.notifications = 0

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (or was never opened)."""
        return self.sock is None

    def fileno(self) -> int:
        """The socket's file descriptor."""
        if self.sock is None:
            msg = "the connection is closed"
            raise ConnectFailed(msg)
        return int(self.sock.fileno())

    def connect(self) -> None:
        """Open the socket, negotiate TLS as ``sslmode`` asks, start up and authenticate."""
        reason = unsupported_reason(self.params, os.environ)
        if reason is not None:
            raise Unsupported(reason)
        timeout = float(self.params.get("connect_timeout") or 10)
        host = str(self.params["host"])
        port = int(self.params.get("port") or _DEFAULT_PORT)
        try:
            if host.startswith("/"):
                sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
            else:
                sock = _tcp(host, port, timeout)
        except OSError as exc:
            msg = f"connection to {host} port {port} failed: {exc.strerror or exc}"
            raise ConnectFailed(msg) from exc
        self.sock = sock
        try:
            if not host.startswith("/"):
                _socket_options(sock, self.params)
            self._negotiate_tls(host)
            self._start_up()
            if self._io_timeout is None or self._io_timeout >= 0:
                self.sock.settimeout(self._io_timeout)
            self._steady = self.sock.gettimeout()
        except (OSError, struct.error) as exc:
            self.close()
            msg = f"connection to {host} port {port} failed: {exc}"
            raise ConnectFailed(msg) from exc
        except BaseException:
            self.close()
            raise

    def _negotiate_tls(self, host: str) -> None:
        mode = str(self.params.get("sslmode") or "prefer")
        if mode in {"disable", "allow"}:
            return
        self.sock.sendall(struct.pack("!ii", 8, _SSL_REQUEST))
        answer = self._recv_exactly(1)
        if answer == b"N":
            if mode == "require":
                msg = "server does not support SSL, but SSL was required"
                raise ConnectFailed(msg)
            return
        if answer != b"S":
            msg = "the server answered the SSL request with something else"
            raise ConnectFailed(msg)
        import ssl

        # libpq's prefer and require encrypt without verifying the server (verification is
        # verify-ca and verify-full, which libpq alone does here).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(
            self.sock, server_hostname=None if host[:1] == "/" else host
        )

    def _start_up(self) -> None:
        user = str(self.params.get("user") or _os_user())
        fields = {
            "user": user,
            "database": str(self.params.get("dbname") or user),
            "client_encoding": str(self.params.get("client_encoding") or "UTF8"),
        }
        for key in ("application_name", "options"):
            if self.params.get(key):
                fields[key] = str(self.params[key])
        body = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in fields.items()) + b"\0"
        self.sock.sendall(struct.pack("!ii", len(body) + 8, _PROTOCOL) + body)
        self._authenticate(user)
        while True:
            kind, payload = self._read()
            if kind == b"Z":
                return
            if kind == b"E":
                raise ConnectFailed(_error(payload).message)

    def _authenticate(self, user: str) -> None:
        scram: _Scram | None = None
        while True:
            kind, payload = self._read()
            if kind == b"E":
                raise ConnectFailed(_error(payload).message)
            if kind != b"R":
                msg = f"unexpected message {kind!r} during authentication"
                raise ConnectFailed(msg)
            (code,) = struct.unpack("!i", payload[:4])
            if code == 0:  # AuthenticationOk
                return
            if code == 3:  # cleartext password
                self._send(b"p", self._password().encode() + b"\0")
            elif code == 5:  # md5
                import hashlib

                salt = payload[4:8]
                inner = hashlib.md5((self._password() + user).encode()).hexdigest()  # noqa: S324 - the protocol's own
                outer = hashlib.md5(inner.encode() + salt).hexdigest()  # noqa: S324 - the protocol's own
                self._send(b"p", f"md5{outer}".encode() + b"\0")
            elif code == 10:  # SASL: the mechanisms the server offers
                mechanisms = payload[4:].split(b"\0")
                if b"SCRAM-SHA-256" not in mechanisms:
                    msg = "a SASL mechanism other than SCRAM-SHA-256"
                    raise Unsupported(msg)
                scram = _Scram(self._password())
                first = scram.first()
                self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
            elif code == 11 and scram is not None:  # SASL continue: the server's first
                self._send(b"p", scram.final(payload[4:]))
            elif code == 12 and scram is not None:  # SASL final: the server's signature
                scram.verify(payload[4:])
            else:
                msg = f"authentication method {code}"
                raise Unsupported(msg)

    def _password(self) -> str:
        password = self.params.get("password")
        if not password:
            # libpq would look in the password file: leave that to it.
            msg = "a password from the password file"
            raise Unsupported(msg)
        return str(password)

    def run(
        self, statements: Sequence[tuple[str, Sequence[Any]]], *, each: bool = False
    ) -> list[Rows | ServerError]:
        """Run the statements (``%s`` placeholders, text parameters) in one round trip; each
        gives its rows as text, or the server's error. After an error the server skips the
        rest, which then give that error too; with ``each``, every statement is on its own
        (a Sync after each) and an error skips nothing."""
        with self._lock:
            if self.sock is None:
                msg = "the connection is closed"
                raise ConnectFailed(msg)
            try:
                return self._run(statements, each)
            except BaseException:
                self.close()
                raise

    def _run(
        self, statements: Sequence[tuple[str, Sequence[Any]]], each: bool
    ) -> list[Rows | ServerError]:
        out = b""
        for query, args in statements:
            text = _numbered(query).encode()
            out += _message(b"P", b"\0" + text + b"\0" + struct.pack("!h", 0))
            bind = b"\0\0" + struct.pack("!hh", 0, len(args))
            for arg in args:
                if arg is None:
                    bind += struct.pack("!i", -1)
                else:
                    value = _text(arg).encode()
                    bind += struct.pack("!i", len(value)) + value
            bind += struct.pack("!h", 0)
            out += _message(b"B", bind)
            out += _message(b"E", b"\0" + struct.pack("!i", 0))
            if each:
                out += _message(b"S", b"")
        if not each:
            out += _message(b"S", b"")
        syncs = len(statements) if each else 1
        try:
            self.sock.sendall(out)
            results: list[Rows | ServerError] = []
            rows: Rows = []
            failed: ServerError | None = None
            while syncs:
                kind, payload = self._read()
                if kind == b"A":
                    continue  # a NOTIFY, counted for wait_notify
                if kind == b"D":
                    rows.append(_data_row(payload))
                elif kind in (b"C", b"I"):
                    results.append(rows)
                    rows = []
                elif kind == b"E":
                    failed = _error(payload)
                    if failed.fatal:
                        raise ConnectFailed(failed.message)
                    results.append(failed)
                elif kind == b"Z":
                    syncs -= 1
        except (OSError, struct.error) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            msg = f"the connection failed: {reason}"
            raise ConnectFailed(msg) from exc
        while len(results) < len(statements):
            results.append(failed or ServerError("", "not run"))
        return results

    def settle(self, params: Mapping[str, Any]) -> None:
        """Make an open connection a long-lived one: the keepalive and ``tcp_user_timeout``
        parameters applied to its socket, no timeout on reads and writes."""
        with self._lock:
            if self.sock is None:
                msg = "the connection is closed"
                raise ConnectFailed(msg)
            if self.sock.family != _socket.AF_UNIX:
                _socket_options(self.sock, params)
            self._io_timeout = None
            self._steady = None
            self.sock.settimeout(None)

    def wait_notify(self, seconds: float) -> bool:
        """Wait at most ``seconds`` for a ``NOTIFY`` on a channel this connection listens to;
        True when one came (or had come since the last call)."""
        import time

        with self._lock:
            if self.sock is None:
                msg = "the connection is closed"
                raise ConnectFailed(msg)
            try:
                deadline = time.monotonic() + seconds
                while not self.notifications:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self.sock.settimeout(left)
                    try:
                        kind, payload = self._read()
                    except TimeoutError:
                        return bool(self.notifications)
                    if kind == b"E":
                        raise ConnectFailed(_error(payload).message)
                self.notifications = 0
                return True
            except ConnectFailed:
                self.close()
                raise
            except OSError as exc:
                self.close()
                msg = f"the connection failed: {exc.strerror or exc}"
                raise ConnectFailed(msg) from exc
            except BaseException:
                self.close()
                raise
            finally:
                if self.sock is not None:
                    self.sock.settimeout(self._steady)

    def close(self) -> None:
        """Send Terminate and close the socket; never raises."""
        if self.sock is None:
            return
        try:
            self.sock.sendall(_message(b"X", b""))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        self.sock = None

    def _send(self, kind: bytes, body: bytes) -> None:
        self.sock.sendall(_message(kind, body))

    def _recv_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                msg = "the server closed the connection"
                raise ConnectFailed(msg)
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _read(self) -> tuple[bytes, bytes]:
        while True:
            header = self._recv_exactly(5)
            kind = header[:1]
            (length,) = struct.unpack("!i", header[1:])
            payload = self._recv_exactly(length - 4)
            if kind == b"A":
                self.notifications += 1
            if kind not in (b"N", b"S", b"K", b"1", b"2"):  # notices, status, keys, parsed
                return kind, payload


def _tcp(host: str, port: int, timeout: float) -> Any:
    """A TCP connection to the first address of ``host`` that answers, as libpq tries them.

    The socket is the C module's own (the :mod:`socket` wrapper builds enums of every constant
    at import, a cost a start does not need), and an ASCII host name is looked up as bytes (as
    text it would load the IDNA codec).
    """
    name: str | bytes = host.encode() if host.isascii() else host
    last: OSError | None = None
    found = _socket.getaddrinfo(name, port, 0, _socket.SOCK_STREAM)
    for family, kind, proto, _, address in found:
        sock = _socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        return sock
    raise last or OSError(f"no address for {host}")


def _socket_options(sock: Any, params: Mapping[str, Any]) -> None:
    """The keepalive and ``tcp_user_timeout`` parameters, applied to the socket as libpq does
    (keepalives on unless ``keepalives=0``, the kernel's timings unless given)."""
    options = []
    if str(params.get("keepalives", "1")) != "0":
        options.append((_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1))
        for key, name in (
            ("keepalives_idle", "TCP_KEEPIDLE"),
            ("keepalives_interval", "TCP_KEEPINTVL"),
            ("keepalives_count", "TCP_KEEPCNT"),
        ):
            if params.get(key) is not None and hasattr(_socket, name):
                options.append((_socket.IPPROTO_TCP, getattr(_socket, name), int(params[key])))
    if params.get("tcp_user_timeout") is not None and hasattr(_socket, "TCP_USER_TIMEOUT"):
        timeout = int(params["tcp_user_timeout"])
        options.append((_socket.IPPROTO_TCP, _socket.TCP_USER_TIMEOUT, timeout))
    for level, option, value in options:
        sock.setsockopt(level, option, value)


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _numbered(query: str) -> str:
    """``%s`` placeholders as ``$1``, ``$2``, ..., and ``%%`` as ``%``, as the drivers read
    them."""
    out = []
    number = 0
    pieces = query.split("%%")
    for index, piece in enumerate(pieces):
        parts = piece.split("%s")
        out.append(parts[0])
        for part in parts[1:]:
            number += 1
            out.append(f"${number}{part}")
        if index < len(pieces) - 1:
            out.append("%")
    return "".join(out)


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def _data_row(payload: bytes) -> tuple[str | None, ...]:
    (count,) = struct.unpack("!h", payload[:2])
    at = 2
    values: list[str | None] = []
    for _ in range(count):
        (size,) = struct.unpack("!i", payload[at : at + 4])
        at += 4
        if size < 0:
            values.append(None)
        else:
            values.append(payload[at : at + size].decode())
            at += size
    return tuple(values)


def _error(payload: bytes) -> ServerError:
    fields = {}
    for item in payload.split(b"\0"):
        if item:
            fields[item[:1]] = item[1:].decode(errors="replace")
    severity = fields.get(b"V") or fields.get(b"S") or ""
    return ServerError(
        fields.get(b"C", ""),
        fields.get(b"M", "unknown error"),
        fatal=severity in {"FATAL", "PANIC"},
    )


def _os_user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


class _Scram:
    """The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), without channel binding."""

    def __init__(self, password: str) -> None:
        if not password.isascii() or not password.isprintable():
            # Such a password goes through SASLprep first, as libpq does it.
            msg = "a SCRAM password that needs SASLprep"
            raise Unsupported(msg)
        import base64

        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = f"n=,r={self.nonce}"
        self.signature = b""

    def first(self) -> bytes:
        return f"n,,{self.bare}".encode()

    def final(self, server_first: bytes) -> bytes:
        import base64
        import hashlib
        import hmac

        text = server_first.decode()
        parts = dict(item.split("=", 1) for item in text.split(","))
        nonce, salt, iterations = parts["r"], base64.b64decode(parts["s"]), int(parts["i"])
        if not nonce.startswith(self.nonce):
            msg = "the server's SCRAM nonce does not extend ours"
            raise ConnectFailed(msg)
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        message = f"{self.bare},{text},{without_proof}".encode()
        signed = hmac.digest(stored, message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signed, strict=True))
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.signature = hmac.digest(server_key, message, "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        import base64
        import hmac

        text = server_final.decode()
        if not text.startswith("v=") or not hmac.compare_digest(
            base64.b64decode(text[2:]), self.signature
        ):
            msg = "the server's SCRAM signature is wrong"
            raise ConnectFailed(msg)
