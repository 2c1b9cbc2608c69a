"""The example project on MySQL/MariaDB: django-entrypoint next to plain ``manage.py migrate``.

For each round, on a fresh database each: a fresh migrate, then a second run with nothing
pending, once through ``python -m entrypoint migrate`` and once through ``python manage.py
migrate --noinput``, alternating which goes first. Prints the medians and their ratios.

    python -m bench.mysql [--rounds 7] [--url mysql://root@127.0.0.1:3306/]

The server comes from ``--url``, else ``TEST_MYSQL_URL``, else root@127.0.0.1:3306. Wall-clock
times of whole processes include the interpreter's and Django's start; the machine's load
average is printed with them, since other work on the machine moves them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from urllib.parse import unquote, urlsplit

from bench.common import PYTHON, REPO

EXAMPLE = REPO / "docker" / "example"
COMMANDS = {
    "entrypoint": [PYTHON, "-m", "entrypoint", "migrate"],
    "manage.py": [PYTHON, "manage.py", "migrate", "--noinput"],
}


def admin(url: str) -> object:
    """An autocommit connection of the server's account."""
    import MySQLdb

    parts = urlsplit(url)
    conn = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
    )
    conn.autocommit(True)
    return conn


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Seconds one process takes; it must exit 0."""
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=EXAMPLE, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace")[-2000:]
        sys.exit(f"{' '.join(argv)} exited {done.returncode}:\n{tail}")
    return seconds


def main() -> None:
    """Run the rounds and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--url", default=os.environ.get("TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/")
    )
    args = parser.parse_args()
    parts = urlsplit(args.url)
    base = f"{parts.scheme}://{parts.netloc}"
    conn = admin(args.url)
    cursor = conn.cursor()  # type: ignore[attr-defined]
    times: dict[tuple[str, str], list[float]] = {}
    for round_number in range(args.rounds):
        order = list(COMMANDS) if round_number % 2 == 0 else list(reversed(COMMANDS))
        for tool in order:
            name = f"ep_bench_{uuid.uuid4().hex[:8]}"
            cursor.execute(f"CREATE DATABASE `{name}`")
            try:
                env = {
                    **os.environ,
                    "DJANGO_SETTINGS_MODULE": "example.settings",
                    "DATABASE_URL": f"{base.rstrip('/')}/{name}",
                    "ENTRYPOINT_HEALTH_PORT": "0",
                    "ENTRYPOINT_LOG_FORMAT": "json",
                    "PYTHONPATH": str(REPO),
                }
                times.setdefault((tool, "fresh"), []).append(timed(COMMANDS[tool], env))
                times.setdefault((tool, "no-op"), []).append(timed(COMMANDS[tool], env))
            finally:
                cursor.execute(f"DROP DATABASE `{name}`")
    cursor.execute("SELECT VERSION()")
    print(f"server {cursor.fetchone()[0]}, {args.rounds} rounds, load {os.getloadavg()}")
    for case in ("fresh", "no-op"):
        ours = statistics.median(times[("entrypoint", case)])
        plain = statistics.median(times[("manage.py", case)])
        print(
            f"{case:6} median  entrypoint {ours:.3f}s  manage.py migrate {plain:.3f}s  "
            f"ratio {ours / plain:.2f}"
        )


if __name__ == "__main__":
    main()
