"""Readiness from the first instant to the end of the container, through real sockets and real
processes: phases while waiting and migrating, the hand-off across the exec, sidecar, probe,
and the Pushgateway push."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from entrypoint.locks import lock_key
from tests.support.databases import PgDatabase
from tests.support.pgcluster import free_port, free_ports, port_answers
from tests.support.processes import Launcher, Proc


def get(url: str) -> tuple[int, dict[str, Any]]:
    """GET a health URL; the status and the JSON body (an empty dict when not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as err:
        status, body = err.code, err.read()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, {}


def wait_for_readyz(port: int, proc: Proc, **expected: Any) -> dict[str, Any]:
    """Poll /readyz until its body has the expected fields."""
    deadline = time.monotonic() + 30
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        if port_answers("127.0.0.1", port, timeout=0.2):
            status, body = get(f"http://127.0.0.1:{port}/readyz")
            last = {"http": status, **body}
            if all(last.get(k) == v for k, v in expected.items()):
                return last
        time.sleep(0.05)
    msg = f"/readyz never showed {expected}; last {last}; stderr:\n{proc.stderr()[-2000:]}"
    raise AssertionError(msg)


def health_env(
    launcher: Launcher, databases: dict[str, Any], port: int, **extra: str
) -> dict[str, str]:
    """The launcher's environment with the health server on 127.0.0.1:port."""
    return launcher.env(
        databases, ENTRYPOINT_HEALTH_ADDR="127.0.0.1", ENTRYPOINT_HEALTH_PORT=str(port), **extra
    )


def test_not_ready_while_waiting_for_the_database(launcher: Launcher) -> None:
    """503 with phase waiting_for_database while the database does not answer."""
    port, dead = free_ports(2)
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "x",
        "HOST": "127.0.0.1",
        "PORT": str(dead),
    }
    proc = launcher.start(
        ["migrate"], health_env(launcher, {"default": entry}, port, ENTRYPOINT_WAIT_TIMEOUT="60")
    )
    body = wait_for_readyz(port, proc, phase="waiting_for_database")
    assert body["http"] == 503
    assert body["status"] == "not_ready"
    assert get(f"http://127.0.0.1:{port}/livez")[0] == 200


def test_not_ready_while_another_replica_holds_the_lock_then_ready(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """503 waiting_for_lock while another session holds the lock; then migrating; then 200."""
    port = free_port()
    env = health_env(launcher, {"default": pg_db.django()}, port, TESTPROJ_SLOW_SECONDS="1.5")
    with psycopg.connect(**pg_db.info, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_db.name),))
        proc = launcher.start(["sidecar"], env)
        assert wait_for_readyz(port, proc, phase="waiting_for_lock")["http"] == 503
    assert wait_for_readyz(port, proc, phase="migrating")["http"] == 503
    ready = wait_for_readyz(port, proc, phase="ready")
    assert (ready["http"], ready["status"]) == (200, "ready")
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    assert 'entrypoint_migrations_applied_total{database="default"}' in metrics
    assert "entrypoint_ready 1.0" in metrics
    assert pg_db.name not in metrics
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 0


def test_failed_after_a_failing_migration(launcher: Launcher, pg_db: PgDatabase) -> None:
    """A failing migration turns readiness `failed` (503), showing no SQL or database text."""
    port = free_port()
    env = health_env(
        launcher,
        {"default": pg_db.django()},
        port,
        TESTPROJ_EXTRA_APPS="broken",
        ENTRYPOINT_FAILURE_HOLD="10",
    )
    proc = launcher.start(["migrate"], env)
    body = wait_for_readyz(port, proc, phase="failed")
    assert body["http"] == 503
    assert body["status"] == "failed"
    text = json.dumps(body)
    assert "entrypoint_table_that_does_not_exist" not in text
    assert "SELECT" not in text
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait(5) == 143


APP = """
import http.server, os, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"app pid {os.getpid()}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


@pytest.fixture
def app_script(tmp_path: Path) -> str:
    """A tiny HTTP app server to exec."""
    path = tmp_path / "app.py"
    path.write_text(APP)
    return str(path)


def health_child(pid: int) -> int:
    """The pid of the health child of ``pid`` (the app server after the exec)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        if b"entrypoint.health.server" in cmdline:
            return int(child)
    msg = f"no health child under {pid}: {children}"
    raise AssertionError(msg)


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def gone_within(pid: int, seconds: float) -> bool:
    """True when the process ends (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("ending", ["exit", "sigkill"])
def test_readiness_outlives_the_exec_and_ends_with_the_app(
    launcher: Launcher, pg_db: PgDatabase, app_script: str, ending: str
) -> None:
    """After the exec: the app answers with the entrypoint's pid, /readyz stays 200, the health
    process holds no database connection and little memory, and it is gone within 2 s of the
    app server ending (normally or by SIGKILL)."""
    port, app_port = free_ports(2)
    env = health_env(launcher, {"default": pg_db.django()}, port)
    proc = launcher.start(["run", "--", "python", app_script, str(app_port)], env)
    wait_for_readyz(port, proc, phase="ready")
    deadline = time.monotonic() + 20
    while not port_answers("127.0.0.1", app_port) and time.monotonic() < deadline:
        time.sleep(0.05)
    with urllib.request.urlopen(f"http://127.0.0.1:{app_port}/", timeout=2) as answer:
        assert answer.read().decode() == f"app pid {proc.pid}"
    assert get(f"http://127.0.0.1:{port}/readyz")[0] == 200
    child = health_child(proc.pid)
    print(f"health process VmRSS after the exec: {rss_kib(child) / 1024:.1f} MiB")
    backends = pg_db.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (pg_db.name,),
    )
    assert backends == [(0,)]
    if ending == "exit":
        proc.popen.send_signal(signal.SIGTERM)  # the app's default SIGTERM: it exits
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)
    assert gone_within(child, 2.0)


def test_app_health_url_gates_readiness_after_the_exec(
    launcher: Launcher, pg_db: PgDatabase, tmp_path: Path
) -> None:
    """With ENTRYPOINT_APP_HEALTH_URL, readiness after the exec also needs the app to answer."""
    port, app_port = free_ports(2)
    env = health_env(
        launcher,
        {"default": pg_db.django()},
        port,
        ENTRYPOINT_APP_HEALTH_URL=f"http://127.0.0.1:{app_port}/",
    )
    # The app answers only after a delay: readiness waits for it.
    script = tmp_path / "late_app.py"
    script.write_text("import time\ntime.sleep(2)\n" + APP)
    proc = launcher.start(["run", "--", "python", str(script), str(app_port)], env)
    assert wait_for_readyz(port, proc, status="app_not_ready")["http"] == 503
    assert wait_for_readyz(port, proc, status="ready")["http"] == 200


def test_probe_command(launcher: Launcher, pg_db: PgDatabase) -> None:
    """`probe` exits 0 against ready, 1 against not ready and against nothing listening, with
    one line saying why (refused, or the status and the phase)."""
    port, other = free_ports(2)
    url = f"http://127.0.0.1:{other}/readyz"
    nothing = launcher.run(["probe", "--url", url], launcher.env())
    assert nothing.popen.returncode == 1
    assert nothing.error_lines() == [
        f"django-entrypoint: probe: {url} is not ready: the connection was refused: nothing "
        "listens there"
    ]
    with psycopg.connect(**pg_db.info, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_db.name),))
        sidecar = launcher.start(
            ["sidecar"], health_env(launcher, {"default": pg_db.django()}, port)
        )
        wait_for_readyz(port, sidecar, phase="waiting_for_lock")
        probe_env = launcher.env(ENTRYPOINT_HEALTH_PORT=str(port))
        waiting = launcher.run(["probe"], probe_env)
        assert waiting.popen.returncode == 1
        assert waiting.error_lines() == [
            f"django-entrypoint: probe: http://127.0.0.1:{port}/readyz is not ready: it "
            "answered 503, phase waiting_for_lock"
        ]
    wait_for_readyz(port, sidecar, phase="ready")
    assert launcher.run(["probe"], probe_env).popen.returncode == 0
    sidecar.popen.send_signal(signal.SIGTERM)
    assert sidecar.wait(5) == 0


@pytest.fixture
def pushgateway() -> Iterator[int]:
    """A real Prometheus Pushgateway on a free port (Debian's prometheus-pushgateway)."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    assert binary is not None  # the pushgateway marker checked it
    port = free_port()
    gateway = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not port_answers("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield port
    gateway.terminate()
    gateway.wait(10)


def test_migrate_pushes_its_metrics_to_a_pushgateway(
    launcher: Launcher, pg_db: PgDatabase, pushgateway: int
) -> None:
    """A Job's metrics outlive it: `migrate` pushes them to the Pushgateway at its end."""
    env = health_env(
        launcher,
        {"default": pg_db.django()},
        free_port(),
        ENTRYPOINT_PUSHGATEWAY_URL=f"http://127.0.0.1:{pushgateway}",
        ENTRYPOINT_RELEASE="v1.2.3",
    )
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 0, proc.stderr()
    pushed = (
        urllib.request.urlopen(f"http://127.0.0.1:{pushgateway}/metrics", timeout=5).read().decode()
    )
    applied = [
        line
        for line in pushed.splitlines()
        if line.startswith("entrypoint_migrations_applied_total{")
    ]
    assert applied
    assert 'job="django-entrypoint"' in applied[0]
    assert 'release="v1.2.3"' in pushed
