"""The fast path's own PostgreSQL client (``entrypoint.db.wire``) against real servers: the
authentication methods a plain server asks for, TLS, pipelined statements and their errors,
NOTIFY, a session the server ends; and everything it must leave to libpq is left to it."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from entrypoint.db import wire
from tests.support.databases import PgDatabase
from tests.support.pgcluster import Cluster, find_bindir, free_port


def params_of(db: PgDatabase, **extra: Any) -> dict[str, Any]:
    """libpq parameters of a test database."""
    info = db.info
    params = {
        "host": info.get("host", "127.0.0.1"),
        "port": info.get("port", "5432"),
        "user": info.get("user", "postgres"),
        "dbname": db.name,
        "connect_timeout": 5,
    }
    if info.get("password"):
        params["password"] = info["password"]
    return {**params, **extra}


def connected(params: dict[str, Any], **kwargs: Any) -> wire.Connection:
    """A connected client."""
    conn = wire.Connection(params, **kwargs)
    conn.connect()
    return conn


def test_statements_run_in_one_round_trip_with_text_results_and_errors(pg_db: PgDatabase) -> None:
    """Several statements pipelined behind one Sync give rows as text (NULL as None, non-ASCII
    intact, ``%%`` a literal ``%`` as the drivers read it); a failing one gives the server's SQLSTATE and message, and the rest are skipped
    with it; with ``each`` an error skips nothing."""
    conn = connected(params_of(pg_db))
    try:
        first, second = conn.run(
            [("SELECT %s::text, NULL::text, 'é', %s::int + 1, '5%%'", ("a", 41)), ("SELECT 1", ())]
        )
        assert first == [("a", None, "é", "42", "5%")]
        assert second == [("1",)]
        failed, skipped = conn.run([("SELECT * FROM no_such_table", ()), ("SELECT 1", ())])
        assert isinstance(failed, wire.ServerError)
        assert failed.sqlstate == "42P01"
        assert 'relation "no_such_table" does not exist' in failed.message
        assert skipped is failed
        alone, after = conn.run([("SELECT * FROM no_such_table", ()), ("SELECT 2", ())], each=True)
        assert isinstance(alone, wire.ServerError)
        assert after == [("2",)]
    finally:
        conn.close()
    assert conn.closed


def test_a_notify_wakes_a_waiting_listener_at_once(pg_db: PgDatabase) -> None:
    """``wait_notify`` returns True as soon as another session notifies the channel listened
    to, and False after its time when nobody does."""
    conn = connected(params_of(pg_db), io_timeout=None)
    try:
        conn.run([('LISTEN "entrypoint_test_channel"', ())])
        assert conn.wait_notify(0.2) is False

        def notify() -> None:
            time.sleep(0.3)
            with pg_db.connect() as other:
                other.execute("SELECT pg_notify('entrypoint_test_channel', '')")

        thread = threading.Thread(target=notify)
        started = time.monotonic()
        thread.start()
        assert conn.wait_notify(10) is True
        assert time.monotonic() - started < 3
        thread.join()
        assert conn.run([("SELECT 3", ())]) == [[("3",)]]
    finally:
        conn.close()


def test_a_session_the_server_ends_fails_the_next_call_with_its_reason(pg_db: PgDatabase) -> None:
    """``pg_terminate_backend`` on the client's session: the next call raises ConnectFailed
    with the server's words, and the connection is closed."""
    conn = connected(params_of(pg_db, application_name="entrypoint-wire-test"))
    with pg_db.connect() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'entrypoint-wire-test'"
        )
    with pytest.raises(wire.ConnectFailed) as failed:
        conn.run([("SELECT 1", ())])
    assert "terminating connection due to administrator command" in str(failed.value)
    assert conn.closed


def test_a_refused_port_is_a_connect_failure() -> None:
    """Nothing listens: ConnectFailed naming host and port, at once."""
    params = {"host": "127.0.0.1", "port": free_port(), "user": "x", "connect_timeout": 2}
    with pytest.raises(wire.ConnectFailed, match=r"connection to 127\.0\.0\.1 port \d+ failed"):
        connected(params)


@pytest.mark.parametrize(
    ("params", "environ", "reason"),
    [
        ({"host": "h", "sslrootcert": "/x"}, {}, "libpq parameter sslrootcert"),
        ({"host": "h", "conninfo": "postgresql://"}, {}, "libpq parameter conninfo"),
        ({"host": "h"}, {"PGPASSFILE": "/x"}, "environment variable PGPASSFILE"),
        ({"host": ""}, {}, "the default, several or an abstract socket host"),
        ({"host": "a,b"}, {}, "the default, several or an abstract socket host"),
        ({"host": "h", "sslmode": "verify-full"}, {}, "sslmode verify-full"),
        ({"host": "h", "client_encoding": "LATIN1"}, {}, "client_encoding LATIN1"),
    ],
)
def test_what_only_libpq_does_is_left_to_it(
    params: dict[str, Any], environ: dict[str, str], reason: str
) -> None:
    """Parameters, variables and modes the client does not honour as libpq does are named, so
    that the caller uses psycopg instead."""
    assert wire.unsupported_reason(params, environ) == reason


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A cluster asking for passwords (SCRAM, md5 and cleartext, one role each) and offering
    TLS with a self-signed certificate."""
    bindir = find_bindir()
    if bindir is None or shutil.which("openssl") is None:
        pytest.skip("needs initdb/pg_ctl and openssl")
    cluster = Cluster(bindir, free_port(), password="scram-secret")
    key, cert = cluster.data / "server.key", cluster.data / "server.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    if cluster.user:
        shutil.chown(key, cluster.user)
        shutil.chown(cert, cluster.user)
    with (cluster.data / "postgresql.conf").open("a") as conf:
        conf.write("ssl = on\npassword_encryption = 'scram-sha-256'\n")
    hba = cluster.data / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        "host all md5user 127.0.0.1/32 md5\n"
        "host all plainuser 127.0.0.1/32 password\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    cluster.start()
    admin = psycopg.connect(
        host="127.0.0.1",
        port=cluster.port,
        user="postgres",
        password="scram-secret",
        dbname="postgres",
        autocommit=True,
    )
    admin.execute("SET password_encryption = 'md5'")
    admin.execute("CREATE ROLE md5user LOGIN PASSWORD 'md5-secret'")
    admin.execute("SET password_encryption = 'scram-sha-256'")
    admin.execute("CREATE ROLE plainuser LOGIN PASSWORD 'plain-secret'")
    admin.close()
    yield cluster
    cluster.destroy()


@pytest.mark.parametrize(
    ("user", "password"),
    [("postgres", "scram-secret"), ("md5user", "md5-secret"), ("plainuser", "plain-secret")],
)
def test_password_methods_authenticate_and_a_wrong_password_is_refused(
    auth_server: Cluster, user: str, password: str
) -> None:
    """SCRAM-SHA-256 (the server's signature checked), md5 and cleartext passwords all let the
    right password in; a wrong one is refused with the server's reason."""
    base = {"host": "127.0.0.1", "port": auth_server.port, "user": user, "dbname": "postgres"}
    conn = connected({**base, "password": password, "sslmode": "disable"})
    assert conn.run([("SELECT current_user", ())]) == [[(user,)]]
    conn.close()
    with pytest.raises(wire.ConnectFailed, match="password authentication failed"):
        connected({**base, "password": "wrong", "sslmode": "disable"})


def test_a_password_left_to_the_password_file_is_left_to_libpq(auth_server: Cluster) -> None:
    """No password given and the server asks for one: libpq would read ~/.pgpass, so the
    client steps aside."""
    with pytest.raises(wire.Unsupported, match="password file"):
        connected({"host": "127.0.0.1", "port": auth_server.port, "user": "postgres"})


def test_tls_as_sslmode_asks(auth_server: Cluster, pg_db: PgDatabase) -> None:
    """``prefer`` and ``require`` encrypt where the server offers TLS (``pg_stat_ssl`` says so);
    ``require`` against a server without it is refused, ``prefer`` goes on in the clear."""
    base = {
        "host": "127.0.0.1",
        "port": auth_server.port,
        "user": "postgres",
        "password": "scram-secret",
        "dbname": "postgres",
    }
    for mode in ("prefer", "require"):
        conn = connected({**base, "sslmode": mode})
        query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        assert conn.run([(query, ())]) == [[("t",)]]
        conn.close()
    plain = params_of(pg_db)
    if os.environ.get("TEST_DATABASE_URL") is None:
        with pytest.raises(wire.ConnectFailed, match="server does not support SSL"):
            connected({**plain, "sslmode": "require"})
        conn = connected({**plain, "sslmode": "prefer"})
        assert conn.run([("SELECT 1", ())]) == [[("1",)]]
        conn.close()


def test_the_fast_path_goes_through_psycopg_where_the_client_steps_aside(
    launcher: Any, pg_db: PgDatabase, tmp_path: Path
) -> None:
    """A PG* variable in the environment (libpq reads it, the client does not): the fast path
    still answers, through psycopg."""
    env = launcher.env({"default": pg_db.django()})
    assert launcher.run(["migrate"], env).popen.returncode == 0
    proc = launcher.run(
        ["migrate"], {**env, "PGAPPNAME": "via-libpq", "PYTHONPROFILEIMPORTTIME": "1"}
    )
    assert proc.popen.returncode == 0, proc.stderr()[-2000:]
    assert [e.get("fast_path") for e in proc.events() if e["event"] == "ready"] == [True]
    assert any(line.rstrip().endswith("| psycopg") for line in proc.stderr().splitlines())
