"""Health endpoints: the pure WSGI app, the health child over real sockets, and its life across
the exec of a real program."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from entrypoint.errors import ConfigError
from entrypoint.health.app import make_wsgi_app
from entrypoint.health.metrics import HealthMetrics, build_metrics
from entrypoint.health.probe import CachedAppCheck, probe
from entrypoint.health.process import HealthProcess
from entrypoint.health.state import HealthState, RunPhase, apply_message, summarize_error
from tests.support.pgcluster import free_port, free_ports

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

SECRET_ERROR = (
    "OperationalError: connection to postgres://u:secret@h/db failed: "
    'FATAL: password authentication failed for user "u" in INSERT INTO shop_item VALUES (1)'
)

# ---------------------------------------------------------------------------------------------
# helpers


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def get(
    port: int, path: str, method: str = "GET", host: str = "127.0.0.1", timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One real HTTP request: status, headers (lower-cased names) and body."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


def readyz(port: int) -> tuple[int, dict[str, object]]:
    """Status and decoded JSON body of ``/readyz``."""
    status, _, body = get(port, "/readyz")
    return status, json.loads(body)


def readyz_becomes(port: int, status: int, timeout: float = 5.0) -> dict[str, object]:
    """Wait until ``/readyz`` answers ``status``; its body then."""
    seen: list[tuple[int, dict[str, object]]] = []

    def check() -> bool:
        try:
            seen.append(readyz(port))
        except OSError:
            return False
        return seen[-1][0] == status

    assert wait_for(check, timeout), f"/readyz never answered {status}; last: {seen[-1:]}"
    return seen[-1][1]


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (absent, or a zombie nobody has reaped yet)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` field (VmRSS, RssAnon, ...) of ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def kill_health_child(pid: int) -> None:
    """SIGKILL ``pid`` if it is still a health child (never some unrelated reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    if b"entrypoint.health.server" in cmdline:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send raw bytes and end the sending side, then read until the server closes.

    A server that refuses the request may answer and reset the connection before the last byte
    is acknowledged; ending the sending side of a connection that is already reset fails with
    ENOTCONN, which is the same reset, so what arrived until then is the answer.
    """
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
    return answer


def call(
    app: WSGIApplication, path: str, method: str = "GET", **environ: str
) -> tuple[int, dict[str, str], bytes]:
    """Call a WSGI app directly, as a server would: status, headers and body."""
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: object = None
    ) -> Callable[[bytes], object]:
        started.append((status, headers))
        return lambda data: None

    body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": method, **environ}, start_response))
    status, headers = started[0]
    return int(status.split()[0]), dict(headers), body


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def state() -> HealthState:
    """A fresh health state."""
    return HealthState()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry, so no test sees another's metrics."""
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> HealthMetrics:
    """The entrypoint's metrics in the fresh registry."""
    return build_metrics(registry)


class Processes:
    """Every process a test starts, so that teardown can end them all."""

    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.healths: list[HealthProcess] = []
        self.health_pids: list[int] = []

    def health(self, addr: str = "127.0.0.1", port: int | None = None) -> HealthProcess:
        """Start a health child through the real ``HealthProcess.start``."""
        process = HealthProcess.start(addr, free_port() if port is None else port)
        self.healths.append(process)
        return process

    def popen(self, command: list[str], cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``command`` with pipes for stdin and stdout."""
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd)
        self.popens.append(process)
        return process

    def end_all(self) -> None:
        """Stop the health children, kill the rest, reap what is ours."""
        for health in self.healths:
            health.stop()
        for popen in self.popens:
            if popen.poll() is None:
                popen.kill()
            popen.wait(5)
        for pid in self.health_pids:
            kill_health_child(pid)


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Processes started by the test, all ended in teardown."""
    started = Processes()
    try:
        yield started
    finally:
        started.end_all()


@pytest.fixture
def health(processes: Processes) -> HealthProcess:
    """A real health child on a free port, stopped in teardown."""
    return processes.health()


# ---------------------------------------------------------------------------------------------
# the pure WSGI app


def test_livez_answers_ok(state: HealthState, registry: CollectorRegistry) -> None:
    """/livez is 200 with {"status": "ok"} whatever the phase."""
    state.phase = RunPhase.FAILED
    status, headers, body = call(make_wsgi_app(state, registry), "/livez")
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    assert headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    ("phase", "database"),
    [
        ("waiting_for_database", "default"),
        ("waiting_for_lock", "default"),
        ("migrating", "replica"),
    ],
)
def test_readyz_is_503_with_the_phase_until_ready(
    state: HealthState,
    metrics: HealthMetrics,
    registry: CollectorRegistry,
    phase: str,
    database: str,
) -> None:
    """Before ready, /readyz is 503 and names the phase and the database in progress."""
    assert apply_message(state, metrics, {"type": "phase", "phase": phase, "database": database})
    status, headers, body = call(make_wsgi_app(state, registry), "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "not_ready",
        "phase": phase,
        "database": database,
        "exec": False,
    }
    assert headers["Cache-Control"] == "no-store"


def test_readyz_starts_waiting_for_the_database(
    state: HealthState, registry: CollectorRegistry
) -> None:
    """A new state is not ready and waiting for the database."""
    status, _, body = call(make_wsgi_app(state, registry), "/readyz")
    assert status == 503
    assert json.loads(body)["phase"] == "waiting_for_database"


def test_readyz_is_200_once_ready(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """After the `ready` message /readyz is 200 with status and phase ready."""
    apply_message(state, metrics, {"type": "phase", "phase": "migrating", "database": "default"})
    apply_message(state, metrics, {"type": "ready"})
    status, _, body = call(make_wsgi_app(state, registry), "/readyz")
    assert status == 200
    assert json.loads(body) == {
        "status": "ready",
        "phase": "ready",
        "database": "default",
        "exec": False,
    }


def test_failed_shows_class_and_migration_never_the_message(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """A failed run is 503 `failed` naming the exception class and migration, no DSN or SQL."""
    apply_message(state, metrics, {"type": "phase", "phase": "migrating", "database": "default"})
    apply_message(
        state,
        metrics,
        {"type": "migration_failed", "database": "default", "app": "shop", "name": "0002_price"},
    )
    apply_message(state, metrics, {"type": "failed", "error": SECRET_ERROR})
    app = make_wsgi_app(state, registry)
    status, _, body = call(app, "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "failed",
        "phase": "failed",
        "database": "default",
        "exec": False,
        "error": "OperationalError",
        "migration": "shop.0002_price",
    }
    _, _, exposition = call(app, "/metrics")
    for shown in (body, exposition):
        for leak in (b"secret", b"postgres://", b"password", b"INSERT"):
            assert leak not in shown


@pytest.mark.parametrize(
    ("error", "summary"),
    [
        ("OperationalError: could not connect", "OperationalError"),
        ("psycopg.errors.UniqueViolation: duplicate key", "psycopg.errors.UniqueViolation"),
        ("ProgrammingError", "ProgrammingError"),
        ("postgres://u:secret@h/db refused", "error"),
        ('relation "x" already exists', "error"),
        ("", "error"),
    ],
)
def test_error_summary_keeps_only_a_class_name(error: str, summary: str) -> None:
    """Only a leading CapWords (dotted) class name survives; anything else becomes `error`."""
    assert summarize_error(error) == summary


def test_database_label_cannot_carry_a_dsn(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """A database label shaped like a URL is mangled before it reaches a body or a metric."""
    apply_message(
        state, metrics, {"type": "phase", "phase": "migrating", "database": "p://u:secret@h"}
    )
    _, _, body = call(make_wsgi_app(state, registry), "/readyz")
    assert json.loads(body)["database"] == "p___u_secret_h"
    assert b"@" not in body


def test_head_has_the_status_and_headers_but_no_body(
    state: HealthState, registry: CollectorRegistry
) -> None:
    """HEAD answers like GET (status, length) with an empty body."""
    app = make_wsgi_app(state, registry)
    get_status, get_headers, get_body = call(app, "/readyz")
    status, headers, body = call(app, "/readyz", "HEAD")
    assert (status, body) == (get_status, b"")
    assert headers["Content-Length"] == str(len(get_body)) == get_headers["Content-Length"]
    assert call(app, "/livez", "HEAD")[0] == 200


def test_unknown_path_is_404(state: HealthState, registry: CollectorRegistry) -> None:
    """Paths other than the three endpoints are 404, whatever the method."""
    app = make_wsgi_app(state, registry)
    for path, method in (("/", "GET"), ("/readyz/", "GET"), ("/health", "POST")):
        assert call(app, path, method)[0] == 404


def test_other_methods_are_405_with_allow(state: HealthState, registry: CollectorRegistry) -> None:
    """POST, PUT, DELETE, OPTIONS on an endpoint are 405 and say GET and HEAD are allowed."""
    app = make_wsgi_app(state, registry)
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        status, headers, _ = call(app, "/readyz", method)
        assert status == 405
        assert headers["Allow"] == "GET, HEAD"


def test_metrics_follow_prometheus_conventions(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """/metrics exposes every entrypoint series, prefixed, in base units, counters as _total."""
    for message in (
        {"type": "run_info", "release": "v42", "django_version": "5.2.1", "version": "0.1.0"},
        {"type": "phase", "phase": "waiting_for_database", "database": "default"},
        {"type": "db_wait", "database": "default", "seconds": 1.5},
        {"type": "phase", "phase": "waiting_for_lock", "database": "default"},
        {"type": "lock_holder_change", "database": "default"},
        {"type": "lock_wait", "database": "default", "seconds": 4.25},
        {"type": "lock_lost", "database": "default"},
        {"type": "held", "database": "default", "count": 2},
        {"type": "migration_applied", "database": "default", "app": "a", "name": "1", "seconds": 3},
        {"type": "migration_failed", "database": "default", "app": "a", "name": "2"},
        {"type": "ready"},
    ):
        assert apply_message(state, metrics, message), message
    status, headers, body = call(make_wsgi_app(state, registry), "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }
    families = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    db = (("database", "default"),)
    assert samples[("entrypoint_phase", (("phase", "ready"),))] == 1
    assert samples[("entrypoint_phase", (("phase", "migrating"),))] == 0
    assert samples[("entrypoint_ready", ())] == 1
    assert samples[("entrypoint_database_wait_seconds", db)] == 1.5
    assert samples[("entrypoint_lock_wait_seconds", db)] == 4.25
    assert samples[("entrypoint_migrations_applied_total", db)] == 1
    assert samples[("entrypoint_migration_duration_seconds_count", db)] == 1
    assert samples[("entrypoint_migration_duration_seconds_sum", db)] == 3
    assert samples[("entrypoint_migration_duration_seconds_bucket", (*db, ("le", "300.0")))] == 1
    assert samples[("entrypoint_migration_failures_total", db)] == 1
    assert samples[("entrypoint_lock_holder_changes_total", db)] == 1
    assert samples[("entrypoint_lock_lost_total", db)] == 1
    assert samples[("entrypoint_migrations_held_total", db)] == 2
    info = (("django_version", "5.2.1"), ("release", "v42"), ("version", "0.1.0"))
    assert samples[("entrypoint_run_info", info)] == 1
    assert all(name.startswith("entrypoint_") for name in families)
    for name, kind in families.items():
        if kind == "counter":
            assert (f"{name}_total", db) in samples, name
    assert families["entrypoint_migration_duration_seconds"] == "histogram"


def test_metrics_phase_is_a_state_set(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """Exactly one entrypoint_phase series is 1 at any time, and it is the current phase."""
    for phase in ("waiting_for_lock", "migrating", "failed"):
        apply_message(state, metrics, {"type": "phase", "phase": phase, "database": "default"})
        values = {
            sample.labels["phase"]: sample.value
            for family in text_string_to_metric_families(
                call(make_wsgi_app(state, registry), "/metrics")[2].decode()
            )
            if family.name == "entrypoint_phase"
            for sample in family.samples
        }
        assert values == {p.value: (1.0 if p == phase else 0.0) for p in RunPhase}


def test_metrics_speak_openmetrics_when_asked(
    state: HealthState, registry: CollectorRegistry, metrics: HealthMetrics
) -> None:
    """An OpenMetrics Accept header gets the OpenMetrics format."""
    status, headers, body = call(
        make_wsgi_app(state, registry), "/metrics", HTTP_ACCEPT="application/openmetrics-text"
    )
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")


def test_bad_messages_change_nothing(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """Unknown types and messages with missing or wrong fields are refused and leave no trace."""
    before = call(make_wsgi_app(state, registry), "/metrics")[2]
    for message in (
        {},
        {"type": "nonsense"},
        {"type": "phase", "phase": "dancing"},
        {"type": "db_wait", "database": "default", "seconds": "12"},
        {"type": "db_wait", "database": "default", "seconds": float("nan")},
        {"type": "lock_wait", "database": "default", "seconds": -1},
        {"type": "lock_wait", "seconds": 1},
        {"type": "held", "database": "default", "count": True},
        {"type": "held", "database": "default", "count": -3},
        {"type": "migration_applied", "database": "default", "seconds": None},
        {"type": "migration_failed", "database": "default", "app": 1, "name": "x"},
        {"type": "lock_holder_change", "database": ""},
    ):
        assert not apply_message(state, metrics, message), message
    assert state.phase is RunPhase.WAITING_FOR_DATABASE
    assert call(make_wsgi_app(state, registry), "/metrics")[2] == before


def test_app_check_decides_readiness_only_after_exec_with_a_url(
    state: HealthState, metrics: HealthMetrics, registry: CollectorRegistry
) -> None:
    """A failing app check makes ready 503 `app_not_ready`, but only once exec'd with a URL."""
    answers: list[bool] = []

    def app_check() -> bool:
        answers.append(False)
        return False

    app = make_wsgi_app(state, registry, app_check=app_check)
    apply_message(state, metrics, {"type": "ready"})
    assert call(app, "/readyz")[0] == 200
    apply_message(state, metrics, {"type": "exec", "app_health_url": None})
    assert call(app, "/readyz")[0] == 200
    assert answers == []
    apply_message(state, metrics, {"type": "exec", "app_health_url": "http://127.0.0.1:8000/up"})
    status, _, body = call(app, "/readyz")
    assert status == 503
    assert json.loads(body) == {
        "status": "app_not_ready",
        "phase": "ready",
        "database": None,
        "exec": True,
    }
    ok_app = make_wsgi_app(state, registry, app_check=lambda: True)
    assert call(ok_app, "/readyz")[0] == 200


def test_cached_app_check_asks_the_app_at_most_once_per_ttl(state: HealthState) -> None:
    """The app server is asked again only after the ttl; 2xx and 3xx count as healthy."""
    asked: list[str] = []
    codes = iter([302, 500, None])
    now = [100.0]

    def status(url: str, timeout: float) -> int | None:
        asked.append(url)
        return next(codes)

    check = CachedAppCheck(state, ttl=1.0, status=status, clock=lambda: now[0])
    assert check() is True
    assert asked == []  # no URL handed over: nothing to ask
    state.app_health_url = "http://app/healthz"
    assert [check(), check()] == [True, True]
    now[0] += 0.5
    assert check() is True
    now[0] += 0.6
    assert check() is False
    now[0] += 1.0
    assert check() is False
    assert asked == ["http://app/healthz"] * 3


# ---------------------------------------------------------------------------------------------
# the real health child


@pytest.mark.timeout(30)
def test_readyz_follows_the_run_over_http(health: HealthProcess) -> None:
    """Over real HTTP, /readyz follows the messages: 503 per phase, then 200, metrics too."""
    assert readyz(health.port) == (
        503,
        {"status": "not_ready", "phase": "waiting_for_database", "database": None, "exec": False},
    )
    health.send("run_info", release="v7", django_version="5.2", version="0.1.0")
    for phase in ("waiting_for_database", "waiting_for_lock", "migrating"):
        health.send("phase", phase=phase, database="default")

        def reached(phase: str = phase) -> bool:
            status, body = readyz(health.port)
            return status == 503 and body["phase"] == phase

        assert wait_for(reached), phase
    health.send("migration_applied", database="default", app="shop", name="0001", seconds=0.2)
    health.send("ready")
    body = readyz_becomes(health.port, 200)
    assert body["status"] == "ready"
    status, _, exposition = get(health.port, "/metrics")
    assert status == 200
    assert b'entrypoint_migrations_applied_total{database="default"} 1.0' in exposition
    assert b'release="v7"' in exposition
    assert get(health.port, "/livez")[0] == 200


@pytest.mark.timeout(30)
def test_failed_run_is_503_failed_over_http(health: HealthProcess) -> None:
    """A `failed` message turns /readyz 503 `failed` without the secret in the error text."""
    health.send("migration_failed", database="default", app="shop", name="0003_x")
    health.send("failed", error=SECRET_ERROR + " " + "x" * 10_000)
    assert wait_for(lambda: readyz(health.port)[1]["status"] == "failed")
    status, _, raw = get(health.port, "/readyz")
    assert status == 503
    assert b"secret" not in raw
    assert json.loads(raw)["error"] == "OperationalError"
    assert json.loads(raw)["migration"] == "shop.0003_x"
    assert get(health.port, "/readyz", "HEAD")[::2] == (503, b"")


@pytest.mark.timeout(30)
def test_failed_accepts_the_exception_itself(health: HealthProcess) -> None:
    """`send("failed", error=exc)` shows the exception's class, never its message."""

    class InconsistentMigrationHistory(Exception):
        pass

    health.send("failed", error=InconsistentMigrationHistory("postgres://u:secret@h/db"))
    assert wait_for(lambda: readyz(health.port)[1].get("error") == "InconsistentMigrationHistory")


@pytest.mark.timeout(30)
def test_stdlib_names_in_the_working_directory_do_not_shadow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, processes: Processes
) -> None:
    """A project package named like a stdlib module (an app called `email`) cannot break health."""
    for name in ("email", "json", "calendar"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise SystemExit('shadowed stdlib')\n")
    monkeypatch.chdir(tmp_path)
    health = processes.health()
    health.send("ready")
    readyz_becomes(health.port, 200)


@pytest.mark.timeout(30)
def test_bind_failure_is_a_config_error_naming_the_variables() -> None:
    """A port already taken gives ConfigError (exit 64) naming the variables, address, reason."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            HealthProcess.start("127.0.0.1", port)
    assert str(caught.value) == (
        f"ENTRYPOINT_HEALTH_ADDR/ENTRYPOINT_HEALTH_PORT: cannot serve health on 127.0.0.1:{port} "
        "(Address already in use); choose a free local address and port, "
        "or set ENTRYPOINT_HEALTH_PORT=0 to turn the health server off"
    )
    assert caught.value.exit_code == 64


@pytest.mark.timeout(30)
def test_address_that_is_not_local_is_a_config_error() -> None:
    """An address this host does not have is refused with the OS reason."""
    with pytest.raises(ConfigError) as caught:
        HealthProcess.start("192.0.2.1", free_port())
    assert "cannot serve health on 192.0.2.1:" in str(caught.value)
    assert "(Cannot assign requested address)" in str(caught.value)


@pytest.mark.timeout(30)
def test_ipv6_any_address_serves_both_families(processes: Processes) -> None:
    """`::` listens dual-stack: answered on ::1 and on 127.0.0.1."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    process = processes.health("::")
    assert process.host == "::"
    assert get(process.port, "/livez", host="::1")[0] == 200
    assert get(process.port, "/livez", host="127.0.0.1")[0] == 200


@pytest.mark.timeout(30)
def test_child_ends_when_the_pipe_closes_before_exec(health: HealthProcess) -> None:
    """stop() closes the pipe: the child exits 0 at once and the port is free again."""
    started = time.monotonic()
    health.stop()
    assert health.returncode == 0
    assert time.monotonic() - started < 2.0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", health.port))


@pytest.mark.timeout(30)
def test_sigterm_ends_the_child_with_status_0(health: HealthProcess) -> None:
    """SIGTERM to the health child ends it with exit status 0."""
    os.kill(health.pid, signal.SIGTERM)
    assert wait_for(lambda: health.returncode is not None, 3.0)
    assert health.returncode == 0


@pytest.mark.timeout(30)
def test_dead_child_is_reaped_and_send_never_raises(health: HealthProcess) -> None:
    """A killed child is reaped (no zombie) and later sends and stop() raise nothing."""
    os.kill(health.pid, signal.SIGKILL)
    # The reaper thread's wait() sets the status just after the kernel lets go of the process.
    assert wait_for(lambda: health.returncode is not None, 3.0)
    assert health.returncode == -signal.SIGKILL
    assert not Path(f"/proc/{health.pid}").exists()
    for n in range(1000):
        health.send("migration_applied", database="default", app="a", name=str(n), seconds=0.1)
    health.send("ready")
    health.stop()


@pytest.mark.timeout(30)
def test_child_ignores_bad_lines_on_its_pipe(processes: Processes) -> None:
    """Garbage, non-objects and unknown types on stdin are skipped; later messages still apply."""
    port = free_port()
    child = processes.popen(
        [sys.executable, "-m", "entrypoint.health.server", "127.0.0.1", str(port)]
    )
    assert child.stdout is not None
    assert child.stdin is not None
    assert child.stdout.readline() == f"listening 127.0.0.1 {port}\n".encode()
    child.stdin.write(
        b"not json\n\xff\xfe\x00\n[1, 2]\n42\n{}\n"
        b'{"type": "phase", "phase": 7}\n{"type": "teleport"}\n'
        + b"x" * 200_000
        + b'\n{"type": "phase", "phase": "migrating", "database": "default"}\n'
        + b'{"type": "ready"}\n'
    )
    child.stdin.flush()
    readyz_becomes(port, 200)
    child.stdin.close()
    assert child.wait(3) == 0


@pytest.mark.timeout(30)
def test_child_ends_when_the_entrypoint_is_killed_before_exec(
    tmp_path: Path, processes: Processes
) -> None:
    """SIGKILL of the entrypoint while it migrates takes the health child down within 2 s."""
    port = free_port()
    script = tmp_path / "entrypoint_stand_in.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import time
            from entrypoint.health.process import HealthProcess
            health = HealthProcess.start("127.0.0.1", {port})
            health.send("phase", phase="migrating", database="default")
            print(health.pid, flush=True)
            time.sleep(60)
            """
        )
    )
    parent = processes.popen([sys.executable, str(script)])
    assert parent.stdout is not None
    health_pid = int(parent.stdout.readline())
    processes.health_pids.append(health_pid)
    readyz_becomes(port, 503)
    parent.kill()
    parent.wait(5)
    assert wait_for(lambda: process_gone(health_pid), 2.0)


# ---------------------------------------------------------------------------------------------
# across the exec

EXEC_SCRIPT = """
import os, sys
from entrypoint.health.process import HealthProcess

port, app_url, *program = sys.argv[1:]
health = HealthProcess.start("127.0.0.1", int(port))
health.send("run_info", release="r1", django_version="5.2", version="0.1.0")
health.send("phase", phase="migrating", database="default")
health.send("migration_applied", database="default", app="shop", name="0001", seconds=0.5)
health.send("ready")
print(os.getpid(), health.pid, flush=True)
health.handoff(app_url or None)
os.execvp(sys.executable, [sys.executable, *program])
"""


def start_and_exec(
    tmp_path: Path,
    processes: Processes,
    port: int,
    app_url: str,
    program: list[str],
) -> tuple[subprocess.Popen[bytes], int]:
    """Run a stand-in entrypoint that execs ``program``; its process and the health child's pid.

    Returns once ``/proc/<pid>/cmdline`` no longer names the stand-in: the exec has happened.
    """
    script = tmp_path / "entrypoint_stand_in.py"
    script.write_text(EXEC_SCRIPT)
    process = processes.popen(
        [sys.executable, str(script), str(port), app_url, *program], cwd=tmp_path
    )
    assert process.stdout is not None
    app_pid, health_pid = map(int, process.stdout.readline().split())
    processes.health_pids.append(health_pid)
    assert app_pid == process.pid

    def execed() -> bool:
        return script.name.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()

    assert wait_for(execed, 5.0)
    return process, health_pid


def report_memory(health_pid: int) -> None:
    """Print the health child's memory as the kernel counts it."""
    rollup = Path(f"/proc/{health_pid}/smaps_rollup").read_text()
    pss = next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    print(
        f"\nhealth child after exec: VmRSS {status_kb(health_pid, 'VmRSS')} kB "
        f"(RssAnon {status_kb(health_pid, 'RssAnon')} kB, "
        f"RssFile {status_kb(health_pid, 'RssFile')} kB), Pss {pss} kB"
    )


@pytest.mark.timeout(60)
def test_health_outlives_the_exec_and_ends_with_the_program(
    tmp_path: Path, processes: Processes
) -> None:
    """After the exec /readyz stays 200, the program inherits no pipe, and health ends with it."""
    port = free_port()
    waiter = "import sys; sys.stdin.read()"
    app, health_pid = start_and_exec(tmp_path, processes, port, "", ["-c", waiter])
    body = readyz_becomes(port, 200)
    assert body == {"status": "ready", "phase": "ready", "database": "default", "exec": True}
    # The exec'd program holds only its standard streams (once its own start-up is over, which
    # opens files too): no pipe to the health child was inherited.
    fds = f"/proc/{app.pid}/fd"
    assert wait_for(lambda: sorted(os.listdir(fds), key=int) == ["0", "1", "2"]), os.listdir(fds)
    for _ in range(20):
        get(port, "/readyz")
        get(port, "/metrics")
    report_memory(health_pid)
    assert status_kb(health_pid, "VmRSS") < 40_000
    assert app.stdin is not None
    app.stdin.close()  # the program exits normally
    assert app.wait(5) == 0
    assert wait_for(lambda: process_gone(health_pid), 2.0)


@pytest.mark.timeout(60)
def test_readiness_follows_the_app_server_and_ends_when_it_is_killed(
    tmp_path: Path, processes: Processes
) -> None:
    """With an app health URL, /readyz waits for the exec'd server; SIGKILL of it ends health."""
    port, app_port = free_ports(2)
    program = ["-m", "http.server", str(app_port), "--bind", "127.0.0.1"]
    app_url = f"http://127.0.0.1:{app_port}/"
    app, health_pid = start_and_exec(tmp_path, processes, port, app_url, program)
    body = readyz_becomes(port, 200, timeout=10.0)
    assert body["status"] == "ready"
    assert get(app_port, "/")[0] == 200
    report_memory(health_pid)
    app.kill()
    app.wait(5)
    assert wait_for(lambda: process_gone(health_pid), 2.0)


@pytest.mark.timeout(60)
def test_readiness_is_app_not_ready_while_the_app_does_not_answer(
    tmp_path: Path, processes: Processes
) -> None:
    """After the exec, an app health URL that does not answer keeps /readyz 503 app_not_ready."""
    port = free_port()
    app_url = f"http://127.0.0.1:{free_port()}/healthz"
    start_and_exec(tmp_path, processes, port, app_url, ["-c", "import sys; sys.stdin.read()"])
    body = readyz_becomes(port, 503)
    assert body == {
        "status": "app_not_ready",
        "phase": "ready",
        "database": "default",
        "exec": True,
    }


# ---------------------------------------------------------------------------------------------
# robustness of the server


@pytest.mark.timeout(30)
def test_malformed_request_is_400_and_server_carries_on(
    health: HealthProcess, capfd: pytest.CaptureFixture[str]
) -> None:
    """Junk gets a 4xx/5xx status line or a closed connection; probes still answer; no logs."""
    for junk, expected in (
        (b"\x00\xff\xfe garbage\r\n\r\n", b"HTTP/1.0 400 "),
        (b"GET\r\n\r\n", b"HTTP/1.0 400 "),
        (b"GET /readyz HTTP/9.9 extra words\r\n\r\n", b"HTTP/1.0 400 "),
        (b"GET /readyz HTTP/2.0\r\n\r\n", b"HTTP/1.0 505 "),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 150 + b"\r\n", b"HTTP/1.0 431 "),
        (b"\x16\x03\x01 a TLS hello, never ended", b""),
    ):
        answer = raw_exchange(health.port, junk)
        assert answer.startswith(expected), (junk, answer)
        assert expected or answer == b""
    for _ in range(5):
        assert get(health.port, "/readyz")[0] == 503
    assert capfd.readouterr().err == ""


@pytest.mark.timeout(30)
def test_oversized_headers_are_cut_off(health: HealthProcess) -> None:
    """A 100 KB header is refused (431 or a reset) and the server keeps answering."""
    big = b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    answer = raw_exchange(health.port, big)
    assert answer == b"" or answer.startswith(b"HTTP/1.0 431"), answer[:80]
    long_line = b"GET /" + b"r" * 50_000 + b" HTTP/1.1\r\n\r\n"
    answer = raw_exchange(health.port, long_line)
    assert answer == b"" or answer.startswith(b"HTTP/1.0 431"), answer[:80]
    assert get(health.port, "/livez")[0] == 200


@pytest.mark.timeout(30)
def test_slow_client_is_cut_off_while_others_are_served(health: HealthProcess) -> None:
    """A client sending one byte per 0.5 s is cut off with 408; probes are served meanwhile."""
    request = b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: slow\r\n\r\n"
    answers: list[bytes] = []
    seconds: list[float] = []

    def trickle() -> None:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", health.port), timeout=15) as sock:
            for byte in request:
                # Stop as soon as the server has said something (or hung up).
                readable, _, _ = select.select([sock], [], [], 0.5)
                if readable:
                    break
                sock.sendall(bytes([byte]))
            answers.append(sock.recv(4096))
        seconds.append(time.monotonic() - started)

    slow = threading.Thread(target=trickle)
    slow.start()
    time.sleep(1.0)
    for _ in range(5):
        assert get(health.port, "/livez", timeout=2.0)[0] == 200
    slow.join(30)
    assert answers[0].startswith(b"HTTP/1.0 408"), answers
    # The whole request would take len(request) / 2 = 30 s; it was cut off long before that.
    assert seconds[0] < 10
    assert get(health.port, "/livez")[0] == 200


@pytest.mark.timeout(60)
def test_burst_of_concurrent_probes_is_served(health: HealthProcess) -> None:
    """200 concurrent /readyz all get an answer; the median and p99 latency are printed."""
    health.send("ready")
    readyz_becomes(health.port, 200)
    clients = 200
    barrier = threading.Barrier(clients)
    latencies: list[float] = []
    failures: list[BaseException] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        started = time.perf_counter()
        try:
            status = get(health.port, "/readyz", timeout=20)[0]
        except OSError as exc:
            with lock:
                failures.append(exc)
            return
        with lock:
            latencies.append(time.perf_counter() - started)
            statuses.append(status)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert statuses == [200] * clients
    ordered = sorted(latencies)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    median = statistics.median(ordered)
    print(
        f"\nburst of {clients} concurrent /readyz: median {median * 1000:.1f} ms,"
        f" p99 {p99 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"
    )
    print(f"health child VmRSS after the burst: {status_kb(health.pid, 'VmRSS')} kB")
    assert get(health.port, "/readyz")[0] == 200


# ---------------------------------------------------------------------------------------------
# probe


@pytest.mark.timeout(30)
def test_probe_is_true_only_when_ready(health: HealthProcess) -> None:
    """probe() is False while /readyz is 503 and True once it is 200."""
    url = f"http://127.0.0.1:{health.port}/readyz"
    assert probe(url) is False
    health.send("ready")
    assert wait_for(lambda: probe(url))
    assert probe(f"http://127.0.0.1:{health.port}/nowhere") is False


def test_probe_is_false_when_nothing_listens() -> None:
    """A refused connection is False, not an exception."""
    assert probe(f"http://127.0.0.1:{free_port()}/readyz") is False


def test_probe_is_false_on_timeout() -> None:
    """A server that accepts but never answers makes probe() False after its timeout."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        started = time.monotonic()
        assert probe(f"http://127.0.0.1:{mute.getsockname()[1]}/readyz", timeout=0.3) is False
        assert time.monotonic() - started < 3


def test_probe_is_false_on_garbage_and_bad_urls() -> None:
    """A non-HTTP answer, a bad URL or another scheme is False, not an exception."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def answer_garbage() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"\x00garbage\r\n\r\n")

        thread = threading.Thread(target=answer_garbage)
        thread.start()
        assert probe(f"http://127.0.0.1:{port}/readyz") is False
        thread.join(5)
    for url in (
        "",
        "not a url",
        "ftp://127.0.0.1/readyz",
        "http://127.0.0.1:99999/",
        "http://[::1",
    ):
        assert probe(url) is False
