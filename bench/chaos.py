"""Chaos soak: rounds of replicas racing on a fresh database, one fault per round at a random
moment, then one clean replica; after every round the database is held against one plain
``manage.py migrate`` of the same project.

    python -m bench.chaos                              # 30 rounds on PostgreSQL
    python -m bench.chaos --backend mariadb --rounds 10
    python -m bench.chaos --rounds 5 --faults sigkill,lock --seed 7

The project (``bench/soakproject.py``: 3 apps, 36 migrations of every kind) is written into a
temporary directory. PostgreSQL is a throw-away cluster of the soak's own (``initdb``/``pg_ctl``
from PATH, ``/usr/lib/postgresql`` or the ``pgserver`` package), listening also on a network
namespace's link for the partition fault; MariaDB is ``TEST_MYSQL_URL`` or 127.0.0.1:3306 as
root. Each round: 4 replicas start together; once one holds the lock, after a random delay, the
fault lands on the holder:

* ``sigkill`` / ``sigterm``: the signal to the holder's process;
* ``lock``: its lock session ended on the server (``pg_terminate_backend``, ``KILL``);
* ``migration``: its migration session ended the same way;
* ``partition`` (PostgreSQL, as root): the holder runs in a network namespace whose link is cut,
  and restored once the others are done.

Then a clean replica runs; when it stops at an interrupted non-atomic migration (exit 70, as
documented) it is run again as an operator would: the invalid indexes it names dropped, with
``ENTRYPOINT_ACCEPT_INTERRUPTED=1``. The invariants, each a violation when broken: every
migration recorded once and the same set as the plain run; ``manage.py migrate --check`` clean;
no audit row ``running``; no migration in two runs' ``applied`` lists, and every recorded one in
one of them (or the migration a killed run had in progress); the schema (columns, indexes and
their validity, constraints) and the data migrations' rows equal to the plain run's; the clean
replica succeeding. Exit 1 when any was broken.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import soakproject
from bench.common import PYTHON, REPO, parse_events
from tests.support.pgcluster import Cluster, find_bindir, free_port

REPLICAS = 4
FAULTS = ("sigkill", "sigterm", "lock", "migration", "partition")
DELAY = (0.0, 2.5)


@dataclass
class Replica:
    """One entrypoint process of a round, its output in a file."""

    popen: subprocess.Popen[bytes]
    err: Path

    def events(self) -> list[dict[str, Any]]:
        """Its log events so far."""
        return parse_events(self.err.read_text(errors="replace"))

    def run_id(self) -> str | None:
        """The run id it logged, once it did."""
        for event in self.events():
            if event.get("event") == "starting":
                return str(event["run"])
        return None

    def holds(self) -> bool:
        """Whether it took the lock and is still running."""
        return self.popen.poll() is None and any(
            e.get("event") == "lock_acquired" for e in self.events()
        )

    def error_lines(self) -> list[str]:
        """Its non-event lines (the one-line error)."""
        text = self.err.read_text(errors="replace")
        return [line for line in text.splitlines() if line and not line.startswith("{")]


class Backend:
    """Fresh databases, queries, faults on sessions, and the schema snapshot of one server."""

    vendor = ""

    def create(self) -> str:
        """A new empty database; its name."""
        raise NotImplementedError

    def drop(self, name: str) -> None:
        """Drop a database."""
        raise NotImplementedError

    def django(self, name: str, host: str | None = None) -> dict[str, Any]:
        """The DATABASES entry of a database."""
        raise NotImplementedError

    def query(self, name: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement."""
        raise NotImplementedError

    def end_lock_session(self, name: str, run: str) -> bool:
        """End the session holding the migration lock; whether one was found."""
        raise NotImplementedError

    def end_migration_session(self, name: str, run: str) -> bool:
        """End the run's migration session; whether one was found."""
        raise NotImplementedError

    def schema(self, name: str) -> dict[str, list[tuple[Any, ...]]]:
        """Columns, indexes and constraints of the project's tables."""
        raise NotImplementedError


class Postgres(Backend):
    """A throw-away cluster, listening on loopback and on the namespace's host address."""

    vendor = "postgresql"

    def __init__(self, listen: str, trust: str | None) -> None:
        bindir = find_bindir()
        if bindir is None:
            sys.exit("chaos: needs initdb/pg_ctl (PATH, /usr/lib/postgresql or pgserver)")
        self.cluster = Cluster(bindir, free_port(), listen=listen, trust=trust)
        self.cluster.start()

    def close(self) -> None:
        """Remove the cluster."""
        self.cluster.destroy()

    def _connect(self, name: str) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.cluster.port,
            user="postgres",
            dbname=name,
            autocommit=True,
        )

    def create(self) -> str:
        """A new empty database; its name."""
        name = f"soak_{uuid.uuid4().hex[:10]}"
        with self._connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop(self, name: str) -> None:
        """Drop a database."""
        with self._connect("postgres") as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def django(self, name: str, host: str | None = None) -> dict[str, Any]:
        """The DATABASES entry of a database."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "HOST": host or "127.0.0.1",
            "PORT": str(self.cluster.port),
        }

    def query(self, name: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement."""
        with self._connect(name) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def _end(self, name: str, pattern: str, advisory: bool) -> bool:
        join = "JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted"
        rows = self.query(
            name,
            f"SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a "
            f"{join if advisory else ''} WHERE a.application_name LIKE %s",
            (pattern,),
        )
        return bool(rows)

    def end_lock_session(self, name: str, run: str) -> bool:
        """End the session holding the advisory lock."""
        return self._end(name, f"django-entrypoint run={run} pid=%", advisory=True)

    def end_migration_session(self, name: str, run: str) -> bool:
        """End the run's migration session."""
        return self._end(name, f"django-entrypoint run={run} migrate %", advisory=False)

    def schema(self, name: str) -> dict[str, list[tuple[Any, ...]]]:
        """Columns, indexes (with validity) and constraints of the project's tables."""
        own = "NOT LIKE 'entrypoint_%%'"
        return {
            "columns": self.query(
                name,
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                f"FROM information_schema.columns WHERE table_schema = 'public' "
                f"AND table_name {own} ORDER BY 1, 2",
            ),
            "indexes": self.query(
                name,
                "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i "
                "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_class t ON t.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                f"AND t.relname {own} ORDER BY 1",
            ),
            "constraints": self.query(
                name,
                "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n "
                f"ON n.oid = c.connamespace WHERE n.nspname = 'public' AND t.relname {own} "
                "ORDER BY 1",
            ),
        }


class MariaDB(Backend):
    """The server of TEST_MYSQL_URL, else 127.0.0.1:3306 as root."""

    vendor = "mysql"

    def __init__(self) -> None:
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/"))
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 3306
        self.user = unquote(parts.username or "root")
        self.password = unquote(parts.password or "")

    def close(self) -> None:
        """Nothing to remove."""

    def _connect(self, name: str | None) -> Any:
        import MySQLdb

        params: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user}
        if self.password:
            params["password"] = self.password
        if name:
            params["database"] = name
        conn = MySQLdb.connect(**params)
        conn.autocommit(True)
        return conn

    def create(self) -> str:
        """A new empty database; its name."""
        name = f"soak_{uuid.uuid4().hex[:10]}"
        self.query("", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        return name

    def drop(self, name: str) -> None:
        """Drop a database."""
        self.query("", f"DROP DATABASE IF EXISTS `{name}`")

    def django(self, name: str, host: str | None = None) -> dict[str, Any]:
        """The DATABASES entry of a database."""
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": host or self.host,
            "PORT": str(self.port),
        }

    def query(self, name: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one statement."""
        conn = self._connect(name or None)
        try:
            cursor = conn.cursor()
            cursor.execute(sql, params or None)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []
        finally:
            conn.close()

    def _kill_holder_of(self, name: str, lock: str) -> bool:
        rows = self.query(name, "SELECT IS_USED_LOCK(%s)", (lock,))
        if not rows or rows[0][0] is None:
            return False
        try:
            self.query(name, f"KILL {int(rows[0][0])}")
        except Exception:  # it ended meanwhile
            return False
        return True

    def end_lock_session(self, name: str, run: str) -> bool:
        """KILL the connection holding the named lock."""
        from entrypoint.locks.mysql import lock_name

        return self._kill_holder_of(name, lock_name(name))

    def end_migration_session(self, name: str, run: str) -> bool:
        """KILL the run's migration connection (found by its marker)."""
        from entrypoint.locks.mysql import run_marker

        return self._kill_holder_of(name, run_marker(run, "default", "django"))

    def schema(self, name: str) -> dict[str, list[tuple[Any, ...]]]:
        """Columns and indexes of the project's tables."""
        own = "AND TABLE_NAME NOT LIKE 'entrypoint\\_%%'"
        return {
            "columns": self.query(
                name,
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT "
                f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s {own} ORDER BY 1, 2",
                (name,),
            ),
            "indexes": self.query(
                name,
                "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE "
                f"FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s {own} "
                "ORDER BY 1, 2, 3",
                (name,),
            ),
        }


@dataclass
class Soak:
    """The soak's project, server and tallies."""

    backend: Backend
    project: Path
    apps: list[str]
    namespace: Any = None
    reference: dict[str, Any] = field(default_factory=dict)
    faults: Counter[str] = field(default_factory=Counter)
    landed: Counter[str] = field(default_factory=Counter)
    exits: Counter[int] = field(default_factory=Counter)
    operator_accepts: int = 0
    violations: list[str] = field(default_factory=list)

    def env(self, name: str, host: str | None = None, **extra: str) -> dict[str, str]:
        """A replica's environment: the soak project on database ``name``."""
        drop = ("ENTRYPOINT_", "DJANGO_", "SOAKPROJ_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        env.update(
            PYTHONPATH=os.pathsep.join([str(self.project), str(REPO)]),
            DJANGO_SETTINGS_MODULE="soakproj.settings",
            SOAKPROJ_DATABASES=json.dumps({"default": self.backend.django(name, host)}),
            SOAKPROJ_BACKEND=self.backend.vendor.replace("postgresql", "postgres"),
            ENTRYPOINT_LOG_FORMAT="json",
            ENTRYPOINT_HEALTH_PORT="0",
            ENTRYPOINT_LOCK_TIMEOUT="300",
        )
        env.update(extra)
        return env

    def start(self, env: dict[str, str], out: Path, prefix: list[str] | None = None) -> Replica:
        """Start one ``django-entrypoint migrate``."""
        with out.open("wb") as err:
            popen = subprocess.Popen(
                [*(prefix or []), PYTHON, "-m", "entrypoint", "migrate"],
                env=env,
                cwd=self.project,
                stdout=subprocess.DEVNULL,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return Replica(popen, out)

    def manage(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``python manage.py ARGS`` of the project on database ``name``."""
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            env=self.env(name),
            cwd=self.project,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def state(self, name: str) -> dict[str, Any]:
        """What the invariants compare: recorded migrations, schema, data rows."""
        recorded = self.backend.query(name, "SELECT app, name FROM django_migrations")
        tallies = sum(
            self.backend.query(name, f"SELECT COUNT(*) FROM {app}_tally")[0][0] for app in self.apps
        )
        return {"recorded": recorded, "schema": self.backend.schema(name), "tallies": tallies}


def _violate(soak: Soak, number: int, text: str) -> None:
    soak.violations.append(f"round {number}: {text}")
    print(f"    VIOLATION: {text}", flush=True)


def _inflict(soak: Soak, fault: str, name: str, holder: Replica) -> bool:
    run = holder.run_id() or ""
    if fault == "sigkill":
        os.killpg(holder.popen.pid, signal.SIGKILL)
        return True
    if fault == "sigterm":
        holder.popen.send_signal(signal.SIGTERM)
        return True
    if fault == "lock":
        return soak.backend.end_lock_session(name, run)
    if fault == "migration":
        return soak.backend.end_migration_session(name, run)
    soak.namespace.cut()
    return True


def _operator_finish(soak: Soak, name: str, work: Path, number: int) -> Replica:
    """The clean replica, run again as an operator would after an interrupted non-atomic
    migration: invalid indexes it names dropped, then once with ENTRYPOINT_ACCEPT_INTERRUPTED."""
    clean = soak.start(soak.env(name), work / f"r{number}-clean.err")
    clean.popen.wait(300)
    attempts = 0
    while clean.popen.returncode == 70 and attempts < 3:
        lines = clean.error_lines()
        text = lines[-1] if lines else ""
        if "ENTRYPOINT_ACCEPT_INTERRUPTED" not in text:
            break
        for statement in re.findall(r"DROP INDEX CONCURRENTLY [^;]+", text):
            soak.backend.query(name, statement)
        attempts += 1
        soak.operator_accepts += 1
        accepted = soak.env(name, ENTRYPOINT_ACCEPT_INTERRUPTED="1")
        clean = soak.start(accepted, work / f"r{number}-clean{attempts}.err")
        clean.popen.wait(300)
    return clean


def _check(soak: Soak, name: str, number: int, clean: Replica) -> None:
    if clean.popen.returncode != 0:
        _violate(
            soak,
            number,
            f"the clean replica exited {clean.popen.returncode}: "
            f"{(clean.error_lines() or [''])[-1][:300]}",
        )
    state = soak.state(name)
    recorded = state["recorded"]
    if len(recorded) != len(set(recorded)):
        twice = [row for row, count in Counter(recorded).items() if count > 1]
        _violate(soak, number, f"recorded more than once: {twice}")
    if set(recorded) != set(soak.reference["recorded"]):
        _violate(soak, number, "the recorded migrations differ from the plain run's")
    check = soak.manage(name, "migrate", "--check", "--noinput")
    if check.returncode != 0:
        _violate(soak, number, f"migrate --check exited {check.returncode}")
    if state["schema"] != soak.reference["schema"]:
        for part, rows in state["schema"].items():
            if rows != soak.reference["schema"][part]:
                extra = set(rows) - set(soak.reference["schema"][part])
                missing = set(soak.reference["schema"][part]) - set(rows)
                _violate(
                    soak,
                    number,
                    f"schema {part} differ: extra {sorted(extra)[:3]}, "
                    f"missing {sorted(missing)[:3]}",
                )
    if state["tallies"] != soak.reference["tallies"]:
        _violate(
            soak, number, f"data rows {state['tallies']}, plain run {soak.reference['tallies']}"
        )
    rows = soak.backend.query(
        name, "SELECT id, kind, status, applied, current_migration FROM entrypoint_migration_run"
    )
    if any(status == "running" for _, _, status, _, _ in rows):
        _violate(soak, number, "a run is left running")
    owners: Counter[tuple[str, str]] = Counter()
    in_progress: set[tuple[str, str]] = set()
    for _, kind, status, applied, current in rows:
        if kind != "migrate":
            continue
        for step in json.loads(applied or "[]"):
            owners[(step["app"], step["name"])] += 1
        if current and status != "succeeded":
            app, _, migration = str(current).partition(".")
            in_progress.add((app, migration))
    twice = [node for node, count in owners.items() if count > 1]
    if twice:
        _violate(soak, number, f"applied by two runs: {twice}")
    unowned = [node for node in set(recorded) if node not in owners and node not in in_progress]
    if unowned:
        _violate(soak, number, f"recorded but in no run's applied list: {sorted(unowned)[:3]}")


def one_round(soak: Soak, number: int, fault: str, rng: random.Random, work: Path) -> None:
    """Run one round: replicas, the fault, the clean replica, the invariants."""
    name = soak.backend.create()
    soak.faults[fault] += 1
    try:
        replicas: list[Replica] = []
        if fault == "partition":
            far = soak.env(name, host=soak.namespace.host_address)
            first = soak.start(far, work / f"r{number}-far.err", prefix=soak.namespace.prefix)
            replicas.append(first)
            _wait(lambda: first.holds() or first.popen.poll() is not None, 60)
        for index in range(REPLICAS - len(replicas)):
            replicas.append(soak.start(soak.env(name), work / f"r{number}-{index}.err"))
        holder = _wait(lambda: next((r for r in replicas if r.holds()), None), 60)
        time.sleep(rng.uniform(*DELAY))
        landed = holder is not None and holder.popen.poll() is None
        if landed and holder is not None:
            landed = _inflict(soak, fault, name, holder)
        if landed:
            soak.landed[fault] += 1
        others = [r for r in replicas if fault != "partition" or r is not replicas[0]]
        for replica in others:
            replica.popen.wait(300)
        if fault == "partition":
            soak.namespace.restore()
            replicas[0].popen.wait(300)
        for replica in replicas:
            soak.exits[replica.popen.returncode] += 1
        clean = _operator_finish(soak, name, work, number)
        _check(soak, name, number, clean)
        codes = sorted(r.popen.returncode for r in replicas)
        word = "landed" if landed else "missed (the holder had finished)"
        print(
            f"  round {number:3d}  {fault:<9} {word:<32} exits {codes}  clean "
            f"{clean.popen.returncode}",
            flush=True,
        )
        for replica in replicas:
            if replica.popen.returncode not in EXPECTED_EXITS:
                last = (replica.error_lines() or ["(no error line)"])[-1]
                print(f"    exit {replica.popen.returncode}: {last[:300]}", flush=True)
    finally:
        for replica in replicas:
            if replica.popen.poll() is None:
                os.killpg(replica.popen.pid, signal.SIGKILL)
                replica.popen.wait(10)
        soak.backend.drop(name)


def _wait(condition: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.01)
    return None


#: The exits a replica may have under the faults: ready, stopped at an interrupted non-atomic
#: migration, lost lock, SIGTERM, SIGKILL. Any other is printed with its error line.
EXPECTED_EXITS = frozenset({0, 70, 75, 143, -9})


def main() -> int:
    """Run the soak; print rounds, faults by kind and violations; 1 when any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("postgresql", "mariadb"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--faults", help=f"comma-separated subset of {','.join(FAULTS)}")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--apps", type=int, default=3)
    parser.add_argument("--migrations", type=int, default=12)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    faults = list(args.faults.split(",") if args.faults else FAULTS)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; use {', '.join(FAULTS)}")
    namespace = None
    if args.backend == "mariadb" and "partition" in faults:
        faults.remove("partition")  # a MariaDB holder cut off keeps its lock for the kernel's hours
    if "partition" in faults:
        from tests.support.netns import Namespace

        if os.geteuid() != 0:
            faults.remove("partition")
            print("chaos: not root, so no partition fault")
        else:
            namespace = Namespace().__enter__()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        apps = soakproject.write(work / "project", args.apps, args.migrations)
        if args.backend == "postgresql":
            listen = "127.0.0.1" + (f",{namespace.host_address}" if namespace else "")
            backend: Any = Postgres(listen, namespace.network if namespace else None)
        else:
            backend = MariaDB()
        soak = Soak(backend, work / "project", apps, namespace)
        try:
            print(
                f"chaos soak: {args.rounds} rounds of {REPLICAS} replicas on {args.backend}, "
                f"{len(apps) * args.migrations} migrations, faults {','.join(faults)}, "
                f"seed {seed}",
                flush=True,
            )
            reference = backend.create()
            plain = soak.manage(reference, "migrate", "--noinput")
            if plain.returncode != 0:
                sys.exit(f"chaos: plain migrate failed: {plain.stderr[-1000:]}")
            soak.reference = soak.state(reference)
            backend.drop(reference)
            started = time.monotonic()
            for number in range(1, args.rounds + 1):
                one_round(soak, number, rng.choice(faults), rng, work)
        finally:
            backend.close()
            if namespace is not None:
                namespace.__exit__(None, None, None)
    minutes = (time.monotonic() - started) / 60
    print(f"\nrounds: {args.rounds} in {minutes:.1f} min (seed {seed})")
    print(
        "faults: "
        + ", ".join(f"{k} {soak.faults[k]} ({soak.landed[k]} landed)" for k in sorted(soak.faults))
    )
    print("replica exits: " + ", ".join(f"{code}: {n}" for code, n in sorted(soak.exits.items())))
    print(f"clean replicas re-run with ENTRYPOINT_ACCEPT_INTERRUPTED=1: {soak.operator_accepts}")
    print(f"invariant violations: {len(soak.violations)}")
    for line in soak.violations:
        print(f"  {line}")
    return 1 if soak.violations else 0


if __name__ == "__main__":
    sys.exit(main())
