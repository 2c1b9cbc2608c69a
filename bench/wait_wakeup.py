"""Wake-up of pods in wait mode: how long after the migration Job's last commit a waiting run
notices that the migrations are there, and execs its app.

    python -m bench.wait_wakeup [--rounds N] [--waiters N]

Each round starts ``--waiters`` processes of ``django-entrypoint --migrate=wait run -- python
-c ...`` on a fresh database of the test project (which print the moment their app started),
waits until every one reports ``migrations_waiting``, then runs the Job (``django-entrypoint
migrate``). The commit time is the server's own: a throw-away cluster runs with
``track_commit_timestamp=on``, and the moment of the last commit the waiters need is the latest
``pg_xact_commit_timestamp(xmin)`` of the ``django_migrations`` rows. The waiters' moments are
their ``migrations_present`` event's ``at`` and the first thing their app prints (epoch seconds,
same host, same clock). A second variant runs the Job with ``ENTRYPOINT_LOCK=off``, which
sends no notice: the waiters then find the migrations by polling (back-off capped at 1 s), the
fallback for MySQL/MariaDB, SQLite and a holder that says nothing.

Target: under 100 ms from commit to notice on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.common import PYTHON, REPO, TESTPROJ, base_env, median, parse_events
from tests.support.pgcluster import Cluster, find_bindir, free_port

APP = "import time; print('started', repr(time.time()), flush=True)"
VARIANTS = (("notice (PostgreSQL NOTIFY)", True), ("polling (no notice)", False))
WAITER = [PYTHON, "-m", "entrypoint", "--migrate=wait", "run", "--", PYTHON, "-c", APP]


class CommitTimesCluster(Cluster):
    """A throw-away cluster that records when each transaction committed."""

    def _options(self) -> str:
        return f"{super()._options()} -c track_commit_timestamp=on"


def one_round(
    cluster: Cluster, env: dict[str, str], waiters: int, notices: bool
) -> list[dict[str, float]]:
    """One fresh database, ``waiters`` waiting runs, one Job; each waiter's delays."""
    name = f"wake_{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        entry = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(cluster.port),
        }
        round_env = {**env, "TESTPROJ_DATABASES": json.dumps({"default": entry})}
        with tempfile.TemporaryDirectory() as tmp:
            procs = []
            for index in range(waiters):
                err = Path(tmp) / f"w{index}.err"
                out = Path(tmp) / f"w{index}.out"
                with err.open("wb") as ferr, out.open("wb") as fout:
                    procs.append(
                        (
                            subprocess.Popen(
                                [
                                    PYTHON,
                                    "-m",
                                    "entrypoint",
                                    "--migrate=wait",
                                    "run",
                                    "--",
                                    PYTHON,
                                    "-c",
                                    APP,
                                ],
                                env=round_env,
                                cwd=TESTPROJ,
                                stdout=fout,
                                stderr=ferr,
                                stdin=subprocess.DEVNULL,
                            ),
                            out,
                            err,
                        )
                    )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if all("migrations_waiting" in err.read_text() for _, _, err in procs):
                    break
                time.sleep(0.02)
            job_env = round_env if notices else {**round_env, "ENTRYPOINT_LOCK": "off"}
            job = subprocess.run(
                [PYTHON, "-m", "entrypoint", "migrate"],
                env=job_env,
                cwd=TESTPROJ,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if job.returncode != 0:
                msg = f"the Job failed: {job.stderr[-2000:]}"
                raise RuntimeError(msg)
            for proc, _, _ in procs:
                proc.wait(60)
            params = {**psycopg.conninfo.conninfo_to_dict(cluster.url), "dbname": name}
            with psycopg.connect(**params, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin))) "
                    "FROM django_migrations"
                ).fetchone()
            assert row is not None
            committed = float(row[0])
            found = []
            for _proc, out, err in procs:
                present = [
                    e for e in parse_events(err.read_text()) if e["event"] == "migrations_present"
                ]
                started = [
                    line for line in out.read_text().splitlines() if line.startswith("started")
                ]
                found.append(
                    {
                        "notice": present[0]["at"] - committed,
                        "app": float(started[0].split()[1]) - committed,
                    }
                )
            return found
    finally:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def main() -> None:
    """Run the rounds of both variants and print the delays."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--waiters", type=int, default=3)
    args = parser.parse_args()
    bindir = find_bindir()
    if bindir is None:
        sys.exit("no initdb/pg_ctl: install PostgreSQL's server binaries or pip install pgserver")
    pycache = Path(tempfile.mkdtemp(prefix="bench-pycache-"))
    env = base_env(pycache)
    env.update(
        PYTHONPATH=os.pathsep.join([str(TESTPROJ), str(REPO)]),
        DJANGO_SETTINGS_MODULE="testproj.settings",
    )
    cluster = CommitTimesCluster(bindir, free_port())
    cluster.start()
    results: dict[str, list[dict[str, float]]] = {}
    try:
        one_round(cluster, env, 1, notices=True)  # warms the bytecode cache
        for label, notices in (
            ("notice (PostgreSQL NOTIFY)", True),
            ("polling (no notice)", False),
        ):
            samples: list[dict[str, float]] = []
            for _ in range(args.rounds):
                samples += one_round(cluster, env, args.waiters, notices)
            results[label] = samples
    finally:
        cluster.destroy()
        shutil.rmtree(pycache, ignore_errors=True)
    load = os.getloadavg()[0]
    rounds = f"{args.rounds} rounds x {args.waiters} waiters"
    print(f"wake-up after the Job's last commit, {rounds}, load {load:.2f}")
    for label, samples in results.items():
        for what in ("notice", "app"):
            values = [sample[what] * 1000 for sample in samples]
            line = (
                f"  {label:<28} {what:<6} median {median(values):7.1f} ms  "
                f"p90 {percentile(values, 0.9):7.1f} ms  max {max(values):7.1f} ms  "
                f"min {min(values):6.1f} ms"
            )
            print(line)
    notice = [sample["notice"] * 1000 for sample in results["notice (PostgreSQL NOTIFY)"]]
    verdict = "met" if max(notice) < 100 else "MISSED"
    print(f"  target: notice under 100 ms after the commit: {verdict} (worst {max(notice):.1f} ms)")


if __name__ == "__main__":
    main()
