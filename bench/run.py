"""Benchmarks of django-entrypoint side by side with plain ``manage.py migrate`` on the same project
and database. One run prints every figure with its ratio and writes them to bench/results/.

    python -m bench.run              # every benchmark, full rounds
    python -m bench.run --quick      # fewer rounds, for a first look
    python -m bench.run --only 1,4   # some benchmarks

Needs the PostgreSQL of the tests (TEST_DATABASE_URL, else 127.0.0.1:5432); benchmark 5 also
needs initdb/pg_ctl (PATH, /usr/lib/postgresql or the pgserver package). Targets are printed
next to the figures and never asserted: a missed target is a finding, not a failure.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench import bigproject
from bench.common import (
    EXAMPLE,
    PYTHON,
    REPO,
    TESTPROJ,
    Figure,
    Postgres,
    Run,
    Section,
    admin_url,
    alternate,
    base_env,
    children_cpu,
    epoch,
    event,
    load_average,
    median,
    parse_events,
    save,
    section,
    timed,
)
from tests.support.pgcluster import Cluster, find_bindir, free_port

PLAIN = [PYTHON, "manage.py", "migrate", "--noinput"]
ENTRYPOINT = [PYTHON, "-m", "entrypoint"]
REPLICAS = 8


class Bench:
    """Shared state of one benchmark run."""

    def __init__(self, quick: bool, tmp: Path) -> None:
        self.quick = quick
        self.tmp = tmp
        self.pg = Postgres(admin_url())
        self.env = base_env(tmp / "pycache")
        self.rounds = 5 if quick else 11
        self.trials = 3 if quick else 7

    def example_env(self, database: str, **extra: str) -> dict[str, str]:
        """Environment of the example project on one database."""
        return {
            **self.env,
            "DATABASE_URL": self.pg.url_of(database),
            "DJANGO_SETTINGS_MODULE": "example.settings",
            **extra,
        }

    def migrated_example(self, name: str) -> tuple[str, dict[str, str], Path]:
        """A new database with the example project fully migrated by plain Django, and its
        manifest frozen into ``name``: the database, its environment and the manifest's path."""
        database = self.pg.create()
        env = self.example_env(database)
        ok(timed(PLAIN, env, EXAMPLE))
        path = self.tmp / name
        ok(timed([*ENTRYPOINT, "freeze", "--output", str(path)], env, EXAMPLE))
        return database, env, path

    def forget_manifests(self, database: str) -> None:
        """Empty the manifest table the entrypoint's runs record (the next start of the same
        code is then a first start: the full path, which records it again)."""
        self.pg.query(
            database,
            "DO $$ BEGIN IF to_regclass('entrypoint_manifest') IS NOT NULL THEN "
            "DELETE FROM entrypoint_manifest; END IF; END $$",
        )

    def testproj_env(self, databases: dict[str, Any], **extra: str) -> dict[str, str]:
        """Environment of the test project (its slow migration serves the hand-off)."""
        return {
            **self.env,
            "PYTHONPATH": os.pathsep.join([str(TESTPROJ), str(REPO)]),
            "DJANGO_SETTINGS_MODULE": "testproj.settings",
            "TESTPROJ_DATABASES": json.dumps(databases),
            **extra,
        }


def ok(run: Run, fast: bool | None = None) -> Run:
    """The run, after checking it succeeded (and took the fast path, or not)."""
    if run.returncode != 0:
        tail = "\n".join(run.stderr.splitlines()[-5:])
        raise RuntimeError(f"exit {run.returncode}: {tail}")
    if fast is not None:
        took = any(e.get("event") == "ready" and e.get("fast_path") for e in run.events)
        if took != fast:
            skipped = [e.get("reason") for e in run.events if e.get("event") == "fast_path_skipped"]
            raise RuntimeError(f"fast path {'not ' if fast else ''}taken: {skipped}")
    return run


# The app a `run` execs: it prints when it started (epoch seconds) and ends.
APP = [PYTHON, "-c", "import sys, time; sys.stdout.write(repr(time.time()) + chr(10))"]


def to_app(env: dict[str, str], cwd: Path) -> Run:
    """``run -- APP`` with these settings: wall time from spawn to the moment the app the run
    execs starts (its first line says when), not to the end of every process: the health child
    keeps the standard streams until it sees its parent gone. CPU is the entrypoint's and the
    app's."""
    before = children_cpu()
    start = time.time()
    proc = subprocess.Popen(
        [*ENTRYPOINT, "run", "--", *APP],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    out, err = proc.communicate(timeout=600)
    cpu = children_cpu() - before
    first = out.splitlines()[0] if out.strip() else ""
    wall = float(first) - start if first else float("nan")
    return Run(wall, proc.returncode, err, cpu)


def ratio_figure(
    s: Section, label: str, runs: list[Run], base: list[Run], target: float | None = None
) -> Figure:
    """A timing figure: median wall and CPU time with their ratios to ``base``'s medians; the
    target, when given, is checked against the wall-time ratio."""
    value = median([r.seconds for r in runs])
    ratio = value / median([r.seconds for r in base])
    cpu = median([r.cpu for r in runs])
    return s.add(
        Figure(
            label,
            value,
            "s",
            ratio,
            None if target is None else f"<= {target:g}",
            None if target is None else ratio <= target,
            [r.seconds for r in runs],
            cpu,
            cpu / median([r.cpu for r in base]),
        )
    )


def wall_figure(
    s: Section, label: str, values: list[float], base: float, target: float | None = None
) -> Figure:
    """A wall-time figure with its ratio to ``base`` (and its target ratio, when given)."""
    value = median(values)
    ratio = value / base
    return s.add(
        Figure(
            label,
            value,
            "s",
            ratio,
            None if target is None else f"<= {target:g}",
            None if target is None else ratio <= target,
            values,
        )
    )


# --- (1) no-op start ----------------------------------------------------------------------------


def noop_runs(
    b: Bench,
    database: str,
    env: dict[str, str],
    *,
    frozen: dict[str, str],
    cwd: Path,
    rounds: int,
    extra: dict[str, Callable[[], Run]] | None = None,
) -> dict[str, list[Run]]:
    """On a database with everything applied: plain migrate (``plain``) against the
    entrypoint's first start of the code (``full``: no manifest anywhere, the full path, which
    records one), its next starts (``zero``: the manifest recorded in the database) and starts
    with the manifest of freeze (``fast``, ``frozen`` the environment naming it); ``extra``:
    more to time among them."""

    def first_start() -> Run:
        b.forget_manifests(database)
        return ok(timed([*ENTRYPOINT, "migrate"], env, cwd), fast=False)

    return alternate(
        {
            "plain": lambda: ok(timed(PLAIN, env, cwd)),
            "full": first_start,
            "zero": lambda: ok(timed([*ENTRYPOINT, "migrate"], env, cwd), fast=True),
            "fast": lambda: ok(timed([*ENTRYPOINT, "migrate"], frozen, cwd), fast=True),
            **(extra or {}),
        },
        rounds,
    )


def noop_figures(
    s: Section, runs: dict[str, list[Run]], prefix: str = "", who: str = "entrypoint migrate"
) -> None:
    """The figures of :func:`noop_runs`, each against plain migrate, with the targets; labels
    start with ``prefix``, the entrypoint is called ``who``."""
    plain = runs["plain"]
    ratio_figure(s, f"{prefix}plain manage.py migrate --noinput", plain, plain)
    for key, what, target in (
        ("full", "first start (full path)", 1.0),
        ("zero", "next starts (no freeze)", 0.15),
        ("fast", "freeze manifest", 0.12),
    ):
        ratio_figure(s, f"{prefix}{who}, {what}", runs[key], plain, target)


def noop_start(b: Bench, report: list[Section]) -> None:
    """(1) Everything applied: plain migrate against the entrypoint's first start of the code
    (no manifest anywhere: the full path, which records one), its next starts (the manifest
    recorded in the database) and starts with the manifest of freeze."""
    how = (
        f"example project on PostgreSQL, every migration applied; wall (and CPU) time from spawn "
        f"to exit, median of {b.rounds} runs in rotating order; ratio to plain manage.py migrate "
        f"--noinput"
    )
    with section(report, "(1) no-op start", how) as s:
        database, env, path = b.migrated_example("example-manifest.json")
        frozen = {**env, "ENTRYPOINT_MANIFEST": str(path)}

        def run_with_health() -> Run:
            port = str(free_port())
            health = {
                **frozen,
                "ENTRYPOINT_HEALTH_PORT": port,
                "ENTRYPOINT_HEALTH_ADDR": "127.0.0.1",
            }
            return ok(to_app(health, EXAMPLE), fast=True)

        runs = noop_runs(
            b,
            database,
            env,
            frozen=frozen,
            cwd=EXAMPLE,
            rounds=b.rounds,
            extra={
                "run": run_with_health,
                "floor": lambda: ok(timed([PYTHON, "-c", "pass"], env, EXAMPLE)),
            },
        )
        noop_figures(s, runs)
        plain = runs["plain"]
        ratio_figure(s, "entrypoint run, manifest, health on: spawn to the app", runs["run"], plain)
        ratio_figure(s, "floor: python -c pass", runs["floor"], plain)
        checks = [float(event(r.events, "ready")["seconds"]) for r in runs["fast"]]
        base = median([r.seconds for r in plain])
        s.add(
            Figure(
                "fast-path check in-process (freeze manifest)",
                median(checks),
                "s",
                median(checks) / base,
                samples=checks,
            )
        )
        b.pg.drop(database)


# --- (2) fresh migrate --------------------------------------------------------------------------


def fresh_migrate(b: Bench, report: list[Section]) -> None:
    """(2) A fresh database: plain migrate against the entrypoint's migrate."""
    how = (
        f"example project, a new empty PostgreSQL database per run; wall time, median of "
        f"{b.rounds} runs in rotating order; ratio to plain manage.py migrate --noinput"
    )
    with section(report, "(2) fresh migrate", how) as s:

        def once(argv: list[str]) -> Callable[[], Run]:
            def measure() -> Run:
                database = b.pg.create()
                try:
                    return ok(timed(argv, b.example_env(database), EXAMPLE))
                finally:
                    b.pg.drop(database)

            return measure

        runs = alternate(
            {"plain": once(PLAIN), "entrypoint": once([*ENTRYPOINT, "migrate"])}, b.rounds
        )
        ratio_figure(s, "plain manage.py migrate --noinput", runs["plain"], runs["plain"])
        ratio_figure(s, "entrypoint migrate", runs["entrypoint"], runs["plain"], 1.03)


# --- (3) replicas racing ------------------------------------------------------------------------


def race(b: Bench, argv: list[str], count: int) -> tuple[float, int, int, str]:
    """``count`` processes started together on a fresh database: wall time until the last one
    exits, failures, duplicated django_migrations rows, and the first failure's last line."""
    database = b.pg.create()
    env = b.example_env(database)
    # Each process logs to a file of its own, not a pipe: waiting on one process while another
    # fills its pipe would stall the holder of a project with many migrations.
    logs = [b.tmp / f"race-{index}.log" for index in range(count)]
    try:
        start = time.perf_counter()
        procs = [spawn(argv, env, EXAMPLE, log) for log in logs]
        for proc in procs:
            proc.wait(timeout=600)
        wall = time.perf_counter() - start
        outputs = [log.read_text() for log in logs]
        failed = [out for proc, out in zip(procs, outputs, strict=True) if proc.returncode]
        duplicates = b.pg.query(
            database, "SELECT count(*) - count(DISTINCT (app, name)) FROM django_migrations"
        )[0][0]
        first = ""
        if failed:
            lines = [line for line in failed[0].splitlines() if line.strip()]
            first = lines[-1][:160] if lines else ""
        return wall, len(failed), int(duplicates), first
    finally:
        b.pg.drop(database)


def replicas(b: Bench, report: list[Section]) -> None:
    """(3) Eight replicas on a fresh database, entrypoint and plain, against one plain migrate."""
    trials = 3 if b.quick else 8
    how = (
        f"example project, {REPLICAS} processes started together on a new database, wall time "
        f"until the last exits, median of {trials} trials; ratio to one plain migrate on a new "
        f"database; {os.cpu_count()} CPUs"
    )
    with section(report, f"(3) {REPLICAS} replicas racing", how) as s:
        results: dict[str, list[tuple[float, int, int, str]]] = {"ep": [], "plain": []}
        one: list[float] = []
        for index in range(trials):
            steps: list[Callable[[], None]] = [
                lambda: results["ep"].append(race(b, [*ENTRYPOINT, "migrate"], REPLICAS)),
                lambda: results["plain"].append(race(b, PLAIN, REPLICAS)),
                lambda: one.append(race(b, PLAIN, 1)[0]),
            ]
            for step in steps[index % 3 :] + steps[: index % 3]:
                step()
        base = median(one)
        wall_figure(s, "one plain manage.py migrate", one, base)
        ep_walls = [r[0] for r in results["ep"]]
        wall_figure(s, f"{REPLICAS} entrypoint replicas, all done", ep_walls, base, 1.25)
        ep_failures = sum(r[1] for r in results["ep"])
        s.add(
            Figure(
                f"entrypoint failures (of {REPLICAS * trials})",
                ep_failures,
                "runs",
                target="= 0",
                met=ep_failures == 0,
            )
        )
        s.add(
            Figure(
                "entrypoint duplicated django_migrations rows",
                sum(r[2] for r in results["ep"]),
                "rows",
            )
        )
        plain_walls = [r[0] for r in results["plain"]]
        wall_figure(s, f"{REPLICAS} plain replicas, all exited", plain_walls, base)
        plain_failures = sum(r[1] for r in results["plain"])
        s.add(Figure(f"plain failures (of {REPLICAS * trials})", plain_failures, "runs"))
        errors = sorted({r[3] for r in results["plain"] if r[3]})
        for error in errors[:3]:
            s.note(f"a plain replica failed with: {error}")
        both = median(ep_walls) / median(plain_walls)
        s.note(f"entrypoint replicas / plain replicas, wall time: {both:.2f}")


# --- (4) lock hand-off --------------------------------------------------------------------------


def wait_for_line(path: Path, name: str, proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Poll a log file until an event of that name appears; False when the process ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e.get("event") == name for e in parse_events(path.read_text(errors="replace"))):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[Any]:
    """Start a process with its standard error going to ``log``."""
    with log.open("w") as handle:
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=handle,
            stdin=subprocess.DEVNULL,
        )


def handoff(b: Bench, report: list[Section]) -> None:
    """(4) From the holder's unlock to the waiting replica's acquisition (NOTIFY wakes it)."""
    how = (
        f"test project, the holder inside a slow migration, a second replica waiting; "
        f"lock_acquired.at of the waiter minus lock_released.at of the holder, median of "
        f"{b.trials} trials; ratio to the 50 ms target"
    )
    with section(report, "(4) lock hand-off", how) as s:
        latencies: list[float] = []
        for trial in range(b.trials):
            database = b.pg.create()
            entry = {"default": b.pg.django(database)}
            holder_log, waiter_log = b.tmp / f"holder{trial}.log", b.tmp / f"waiter{trial}.log"
            holder = spawn(
                [*ENTRYPOINT, "migrate"],
                b.testproj_env(entry, TESTPROJ_SLOW_SECONDS="4", ENTRYPOINT_LOG_LEVEL="debug"),
                TESTPROJ,
                holder_log,
            )
            try:
                if not wait_for_line(holder_log, "migration_started", holder, 60):
                    raise RuntimeError(holder_log.read_text()[-500:])
                waiter = spawn(
                    [*ENTRYPOINT, "migrate"], b.testproj_env(entry), TESTPROJ, waiter_log
                )
                waiting = wait_for_line(waiter_log, "lock_waiting", waiter, 60)
                holder.wait(60)
                waiter.wait(60)
            finally:
                for proc in (holder,):
                    if proc.poll() is None:
                        proc.kill()
            holder_events = parse_events(holder_log.read_text())
            waiter_events = parse_events(waiter_log.read_text())
            if not waiting or holder.returncode or waiter.returncode:
                s.note(f"trial {trial} discarded: the waiter did not wait behind the holder")
                b.pg.drop(database)
                continue
            released = float(event(holder_events, "lock_released")["at"])
            # The waiter goes on as soon as it knows: it takes the lock when work is left, or is
            # ready without it when the holder did everything.
            after = [e for e in waiter_events if e.get("event") in ("lock_acquired", "ready")]
            if not after:
                raise KeyError("lock_acquired")
            mark = after[0]
            acquired = float(mark["at"]) if "at" in mark else epoch(mark["timestamp"])
            latencies.append(acquired - released)
            b.pg.drop(database)
        value = median(latencies)
        s.add(
            Figure(
                "release to the next replica going on",
                value,
                "s",
                value / 0.05,
                "< 50 ms",
                value < 0.05,
                latencies,
            )
        )
        if latencies:
            s.add(Figure("worst trial", max(latencies), "s", max(latencies) / 0.05))


# --- (5) database-up detection ------------------------------------------------------------------


def first_connection(port: int, found: list[float], stop: threading.Event) -> None:
    """Connect every 2 ms until the server accepts a session; record when it first did."""
    while not stop.is_set():
        try:
            psycopg.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2
            ).close()
        except psycopg.Error:
            time.sleep(0.002)
            continue
        found.append(time.time())
        return


def database_up(b: Bench, report: list[Section]) -> None:
    """(5) A server that starts late: from its first accepted session to the entrypoint's
    database_ready event."""
    how = (
        f"a throw-away cluster started 1.5-2 s after the entrypoint began waiting (back-off "
        f"then capped at 0.5 s); database_ready timestamp minus a 2 ms prober's first session, "
        f"median of {b.trials} trials; ratio to the 0.5 s target"
    )
    with section(report, "(5) database-up detection", how) as s:
        bindir = find_bindir()
        if bindir is None:
            s.note("skipped: no initdb/pg_ctl (PATH, /usr/lib/postgresql or pgserver)")
            return
        port = free_port()
        cluster = Cluster(bindir, port)
        delays: list[float] = []
        try:
            entry = {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": str(port),
            }
            env = b.testproj_env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="60")
            for trial in range(b.trials):
                log = b.tmp / f"wait{trial}.log"
                proc = spawn([*ENTRYPOINT, "wait"], env, TESTPROJ, log)
                if not wait_for_line(log, "database_unavailable", proc, 60):
                    raise RuntimeError(log.read_text()[-500:])
                time.sleep(1.5 + random.uniform(0, 0.5))
                found: list[float] = []
                stop = threading.Event()
                prober = threading.Thread(target=first_connection, args=(port, found, stop))
                prober.start()
                cluster.start(wait=False)
                code = proc.wait(60)
                prober.join(30)
                stop.set()
                cluster.stop()
                if code or not found:
                    s.note(f"trial {trial} discarded (exit {code}, prober saw {len(found)})")
                    continue
                ready = epoch(event(parse_events(log.read_text()), "database_ready")["timestamp"])
                delays.append(ready - found[0])
        finally:
            cluster.destroy()
        value = median(delays)
        s.add(
            Figure(
                "first session possible to database_ready",
                value,
                "s",
                value / 0.5,
                "< 0.5 s",
                value < 0.5,
                delays,
            )
        )
        if delays:
            s.add(Figure("worst trial", max(delays), "s", max(delays) / 0.5))


# --- (6) health process -------------------------------------------------------------------------


def rss_kib(pid: int) -> tuple[int, int]:
    """Resident and peak resident memory of a process, KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def get(port: int, path: str) -> tuple[int, float]:
    """One GET on a new connection, as a kubelet probe does: status and seconds."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        answer.read()
        return answer.status, time.perf_counter() - start
    finally:
        conn.close()


def health(b: Bench, report: list[Section]) -> None:
    """(6) The health process after the exec: its memory and its probe latency."""
    probes = 200 if b.quick else 1000
    how = (
        f"run -- sleep on the example project (fast path), the health child after the exec; "
        f"RSS from /proc; {probes} GETs on new connections; memory ratio to a bare interpreter"
    )
    with section(report, "(6) health process", how) as s:
        database, env, path = b.migrated_example("health-manifest.json")
        port = free_port()
        env = {
            **env,
            "ENTRYPOINT_MANIFEST": str(path),
            "ENTRYPOINT_HEALTH_PORT": str(port),
            "ENTRYPOINT_HEALTH_ADDR": "127.0.0.1",
        }
        app = spawn([*ENTRYPOINT, "run", "--", "sleep", "120"], env, EXAMPLE, b.tmp / "run.log")
        bare = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(120)"], env=env)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if get(port, "/readyz")[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.05)
            time.sleep(0.5)
            [child] = children(app.pid)
            latencies = [get(port, "/readyz")[1] for _ in range(probes)]
            metrics = [get(port, "/metrics")[1] for _ in range(probes // 5)]
            rss, peak = rss_kib(child)
            bare_rss, _ = rss_kib(bare.pid)
            s.add(Figure("health process RSS", rss / 1024, "MiB", rss / bare_rss))
            s.add(Figure("health process peak RSS", peak / 1024, "MiB", peak / bare_rss))
            s.add(Figure("bare python -c sleep RSS", bare_rss / 1024, "MiB", 1.0))
            latencies.sort()
            s.add(Figure("GET /readyz, median", median(latencies), "s"))
            s.add(
                Figure(
                    "GET /readyz, 99th percentile", latencies[int(len(latencies) * 0.99) - 1], "s"
                )
            )
            s.add(Figure("GET /metrics, median", median(metrics), "s"))
        finally:
            for proc in (app, bare):
                proc.send_signal(signal.SIGTERM)
                proc.wait(10)
            b.pg.drop(database)


# --- (7) a large generated project --------------------------------------------------------------

DJANGO_PLAN = """
import sys, time
import django
django.setup()
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
start = time.perf_counter()
executor = MigrationExecutor(connection)
plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
print(time.perf_counter() - start, len(plan))
"""


def large_project(b: Bench, report: list[Section]) -> None:
    """(7) 100 apps, 5,000 migrations, all recorded: no-op start and plan time."""
    rounds = 3 if b.quick else 5
    how = (
        f"generated project (100 apps x 50 migrations, no contrib apps), every node recorded in "
        f"django_migrations; wall time, median of {rounds} runs in rotating order; ratio to "
        f"plain migrate --noinput"
    )
    with section(report, "(7) large project: 5,000 migrations", how) as s:
        from entrypoint.fastpath import files as fastfiles
        from entrypoint.fastpath import manifest

        root = b.tmp / "big"
        module = bigproject.generate(root, 100, 50)
        database = b.pg.create()
        env = {
            **b.env,
            "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
            "DJANGO_SETTINGS_MODULE": module,
            "BIGPROJ_DATABASES": json.dumps({"default": b.pg.django(database)}),
        }
        path = b.tmp / "big-manifest.json"
        ok(timed([*ENTRYPOINT, "freeze", "--output", str(path)], env, root))  # compiles, too
        freeze = timed([*ENTRYPOINT, "freeze", "--output", str(path)], env, root)
        s.add(Figure("freeze (image build time, once)", ok(freeze).seconds, "s"))
        params = {**b.pg.params, "dbname": database}
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(
                'CREATE TABLE "django_migrations" ("id" bigint NOT NULL PRIMARY KEY GENERATED BY '
                'DEFAULT AS IDENTITY, "app" varchar(255) NOT NULL, "name" varchar(255) NOT NULL, '
                '"applied" timestamp with time zone NOT NULL)'
            )
            with conn.cursor().copy("COPY django_migrations (app, name, applied) FROM STDIN") as cp:
                for app, name in bigproject.nodes(100, 50):
                    cp.write_row((app, name, "2024-01-01T00:00:00Z"))
        plain_argv = [PYTHON, "-m", "django", "migrate", "--noinput"]
        frozen = {**env, "ENTRYPOINT_MANIFEST": str(path)}

        def first_start() -> Run:
            b.forget_manifests(database)
            return ok(timed([*ENTRYPOINT, "migrate"], env, root), fast=False)

        runs = alternate(
            {
                "plain": lambda: ok(timed(plain_argv, env, root)),
                "full": first_start,
                "zero": lambda: ok(timed([*ENTRYPOINT, "migrate"], env, root), fast=True),
                "fast": lambda: ok(timed([*ENTRYPOINT, "migrate"], frozen, root), fast=True),
            },
            rounds,
        )
        plain = runs["plain"]
        ratio_figure(s, "plain django migrate --noinput", plain, plain)
        ratio_figure(s, "entrypoint migrate, first start (full path)", runs["full"], plain, 1.0)
        ratio_figure(s, "entrypoint migrate, next starts (no freeze)", runs["zero"], plain, 0.15)
        ratio_figure(s, "entrypoint migrate, freeze manifest", runs["fast"], plain, 0.12)
        checks = [float(event(r.events, "ready")["seconds"]) for r in runs["fast"]]
        plans = []
        for _ in range(rounds):
            out = subprocess.run(
                [PYTHON, "-c", DJANGO_PLAN],
                env=env,
                cwd=root,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            plans.append(float(out[0]))
        django_plan = median(plans)
        s.add(Figure("plan: Django loader + migration_plan", django_plan, "s", 1.0, samples=plans))
        s.add(
            Figure(
                "plan: fast-path check (freeze manifest)",
                median(checks),
                "s",
                median(checks) / django_plan,
                samples=checks,
            )
        )
        loaded = manifest.load(str(path))
        stat_times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fastfiles.check_files(loaded)
            stat_times.append(time.perf_counter() - start)
        now = time.time_ns()
        for record in loaded.migrations:
            os.utime(record.file.path, ns=(now, now))
        hash_times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fastfiles.check_files(loaded)
            hash_times.append(time.perf_counter() - start)
        stat = median(stat_times)
        s.add(Figure("file check: stat, mtime unchanged", stat, "s", 1.0, samples=stat_times))
        s.add(
            Figure(
                "file check: mtime moved, every file hashed",
                median(hash_times),
                "s",
                median(hash_times) / stat,
                samples=hash_times,
            )
        )
        b.pg.drop(database)


# --- (8) the real-apps project ------------------------------------------------------------------

REALPROJ = REPO / "tests" / "projects" / "realproj"


def real_apps(b: Bench, report: list[Section]) -> None:
    """(8) The apps production projects commonly install (tests/projects/realproj): fresh
    migrate and no-op start, plain against the entrypoint."""
    rounds = 3 if b.quick else 5
    how = (
        f"tests/projects/realproj (the realapps extra: django-allauth, celery beat, oauth "
        f"toolkit, ... and a local app), PostgreSQL; wall time, median of {rounds} runs in "
        f"rotating order; ratio to plain manage.py migrate --noinput"
    )
    with section(report, "(8) real-apps project", how) as s:
        from tests.support.optional import REALAPPS_MODULES

        missing = [m for m in REALAPPS_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            s.note(f"skipped: {', '.join(missing)} not installed (pip install -e '.[realapps]')")
            return

        def env_of(database: str) -> dict[str, str]:
            return {
                **b.env,
                "PYTHONPATH": os.pathsep.join([str(REALPROJ), str(REPO)]),
                "DJANGO_SETTINGS_MODULE": "realproj.settings",
                "REALPROJ_DATABASES": json.dumps({"default": b.pg.django(database)}),
            }

        def fresh(argv: list[str]) -> Callable[[], Run]:
            def measure() -> Run:
                database = b.pg.create()
                try:
                    return ok(timed(argv, env_of(database), REALPROJ))
                finally:
                    b.pg.drop(database)

            return measure

        fresh_runs = alternate(
            {"plain": fresh(PLAIN), "entrypoint": fresh([*ENTRYPOINT, "migrate"])},
            rounds,
            warmup=False,
        )
        ratio_figure(s, "fresh: plain manage.py migrate", fresh_runs["plain"], fresh_runs["plain"])
        ratio_figure(
            s, "fresh: entrypoint migrate", fresh_runs["entrypoint"], fresh_runs["plain"], 1.03
        )
        database = b.pg.create()
        env = env_of(database)
        ok(timed([*ENTRYPOINT, "migrate"], env, REALPROJ))
        path = b.tmp / "realapps-manifest.json"
        ok(timed([*ENTRYPOINT, "freeze", "--output", str(path)], env, REALPROJ))
        frozen = {**env, "ENTRYPOINT_MANIFEST": str(path)}
        runs = noop_runs(b, database, env, frozen=frozen, cwd=REALPROJ, rounds=rounds)
        noop_figures(s, runs, "no-op: ", "entrypoint")
        b.pg.drop(database)


BENCHMARKS: dict[str, Callable[[Bench, list[Section]], None]] = {
    "1": noop_start,
    "2": fresh_migrate,
    "3": replicas,
    "4": handoff,
    "5": database_up,
    "6": health,
    "7": large_project,
    "8": real_apps,
}


def main() -> int:
    """Run the chosen benchmarks, print the report, save it under bench/results/."""
    parser = argparse.ArgumentParser(description="django-entrypoint benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="e.g. 1,4,7")
    args = parser.parse_args()
    chosen = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in chosen if key not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]}; choose from {', '.join(BENCHMARKS)}")
    started = time.time()
    meta: dict[str, Any] = {
        "command": " ".join(["python", "-m", "bench.run", *sys.argv[1:]]),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_before": load_average(),
    }
    print(f"django-entrypoint benchmarks: {meta['command']}")
    print(f"python {meta['python']}, {meta['cpus']} CPUs, load {meta['load_before']}")
    report: list[Section] = []
    tmp = Path(tempfile.mkdtemp(prefix="entrypoint-bench-"))
    bench = Bench(args.quick, tmp)
    try:
        for key in chosen:
            BENCHMARKS[key](bench, report)
    finally:
        bench.pg.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    meta["load_after"] = load_average()
    meta["seconds"] = round(time.time() - started, 1)
    path = save(report, meta)
    print(f"\nload {meta['load_after']} after {meta['seconds']} s; saved {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
