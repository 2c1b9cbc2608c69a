"""What every benchmark shares: a PostgreSQL server, fresh databases, process environments,
timed runs in alternating order, medians, ratios and the report."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "docker" / "example"
TESTPROJ = REPO / "tests" / "projects" / "testproj"
RESULTS = REPO / "bench" / "results"


def installed_python() -> str:
    """The interpreter every benchmark runs, plain Django and the entrypoint alike: this one's
    packages and the repository on plain ``sys.path`` entries, as a wheel installed in an image
    puts them.

    Under an editable install (``pip install -e .``, this checkout's), ``site`` runs the
    install's import hook in every interpreter that starts: 16 ms of CPU here, paid by each of
    eight racing replicas where an image's wheel install pays nothing. Then a venv without pip
    in a temporary directory, whose one ``.pth`` names the repository and this interpreter's
    site-packages (their own ``.pth`` files, the hook's among them, are not run from there);
    else, and with ``BENCH_PYTHON`` set, that interpreter as it is.
    """
    import atexit
    import shutil
    import sysconfig
    import tempfile
    import venv

    chosen = os.environ.get("BENCH_PYTHON")
    if chosen:
        return chosen
    paths = sysconfig.get_paths()
    packages = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    if not any(Path(packages[0]).glob("__editable__*.pth")):
        return sys.executable
    home = Path(tempfile.mkdtemp(prefix="entrypoint-bench-python-"))
    atexit.register(shutil.rmtree, home, True)
    venv.EnvBuilder(with_pip=False, symlinks=True).create(home)
    python = home / "bin" / "python"
    query = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    own = subprocess.run([python, "-c", query], capture_output=True, text=True, check=True)
    Path(own.stdout.strip(), "bench.pth").write_text("\n".join([str(REPO), *packages]) + "\n")
    return str(python)


PYTHON = installed_python()


def admin_url() -> str:
    """The admin URL of the PostgreSQL server: TEST_DATABASE_URL, else 127.0.0.1:5432."""
    return os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


class Postgres:
    """Fresh databases on one server, all dropped at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.params = psycopg.conninfo.conninfo_to_dict(url)
        self.made: list[str] = []

    def create(self) -> str:
        """A new empty database; its name."""
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.made.append(name)
        return name

    def drop(self, name: str) -> None:
        """Drop one database (ending its sessions first)."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if name in self.made:
            self.made.remove(name)

    def drop_all(self) -> None:
        """Drop every database made here."""
        for name in list(self.made):
            self.drop(name)

    def url_of(self, name: str) -> str:
        """A ``postgres://`` URL of a database, as DATABASE_URL."""
        user = self.params.get("user", "postgres")
        password = f":{self.params['password']}" if self.params.get("password") else ""
        host = self.params.get("host", "127.0.0.1")
        port = self.params.get("port", "5432")
        return f"postgres://{user}{password}@{host}:{port}/{name}"

    def django(self, name: str) -> dict[str, Any]:
        """A DATABASES entry of a database."""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": self.params.get("user", "postgres"),
            "PASSWORD": self.params.get("password", ""),
            "HOST": self.params.get("host", "127.0.0.1"),
            "PORT": str(self.params.get("port", "5432")),
        }

    def query(self, name: str, sql: str) -> list[tuple[Any, ...]]:
        """Rows of one query on a database."""
        params = {**self.params, "dbname": name}
        with psycopg.connect(**params, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []


def base_env(pycache: Path) -> dict[str, str]:
    """A clean environment: no entrypoint or project variables, bytecode cached as in an image.

    Images ship compiled bytecode (pip compiles what it installs, Dockerfiles compileall the
    app); PYTHONPYCACHEPREFIX gives every process, plain or not, the same warm cache here.
    """
    drop = ("ENTRYPOINT_", "DJANGO_", "TESTPROJ_", "BIGPROJ_", "SQUASHPROJ_", "DATABASE_URL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(
        PYTHONPYCACHEPREFIX=str(pycache),
        ENTRYPOINT_LOG_FORMAT="json",
        ENTRYPOINT_HEALTH_PORT="0",
    )
    return env


@dataclass
class Run:
    """One finished process: wall seconds, exit code, its log events."""

    seconds: float
    returncode: int
    stderr: str
    # User plus system CPU seconds of the process: less sensitive than wall time to whatever
    # else the machine runs.
    cpu: float = 0.0

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON log events it wrote."""
        return parse_events(self.stderr)


def parse_events(text: str) -> list[dict[str, Any]]:
    """JSON log events among lines of text."""
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def event(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The first event of a name (KeyError naming it when absent)."""
    for item in events:
        if item.get("event") == name:
            return item
    raise KeyError(name)


def epoch(timestamp: str) -> float:
    """Epoch seconds of an ISO timestamp written by the log."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def children_cpu() -> float:
    """User plus system CPU seconds of this process's waited-for children so far."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(argv: list[str], env: dict[str, str], cwd: Path, timeout: float = 600) -> Run:
    """Run a process to its end; wall time from spawn to exit, and its CPU time."""
    before = children_cpu()
    start = time.perf_counter()
    done = subprocess.run(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
        text=True,
    )
    wall = time.perf_counter() - start
    return Run(wall, done.returncode, done.stderr, children_cpu() - before)


def alternate(
    variants: dict[str, Callable[[], Run]], rounds: int, warmup: bool = True
) -> dict[str, list[Run]]:
    """Run each variant ``rounds`` times, rotating the order every round; the runs per variant.

    Rotation spreads drifts of the machine (other load, caches) evenly over the variants.
    """
    names = list(variants)
    if warmup:
        for name in names:
            variants[name]()
    samples: dict[str, list[Run]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(variants[name]())
    return samples


def median(values: list[float]) -> float:
    """The median (NaN for no values)."""
    return statistics.median(values) if values else float("nan")


@dataclass
class Figure:
    """One line of the report."""

    label: str
    value: float
    unit: str
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    samples: list[float] = field(default_factory=list)
    cpu: float | None = None
    cpu_ratio: float | None = None

    def line(self) -> str:
        """The figure as one aligned line."""
        value = (
            f"{self.value * 1000:9.1f} ms" if self.unit == "s" else f"{self.value:9.1f} {self.unit}"
        )
        ratio = f"{self.ratio:6.2f}" if self.ratio is not None else " " * 6
        cpu = ""
        if self.cpu is not None and self.cpu_ratio is not None:
            cpu = f"   cpu {self.cpu * 1000:7.1f} ms {self.cpu_ratio:5.2f}"
        target = ""
        if self.target is not None:
            target = f"   target {self.target}: {'met' if self.met else 'MISSED'}"
        return f"    {self.label:<44} {value}  {ratio}{cpu}{target}"


@dataclass
class Section:
    """One benchmark: a title, how it was measured, and its figures."""

    title: str
    how: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, figure: Figure) -> Figure:
        """Add a figure, print it at once (long runs show progress), and return it."""
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure

    def note(self, text: str) -> None:
        """Add and print a note."""
        self.notes.append(text)
        print(f"    note: {text}", flush=True)


@contextmanager
def section(report: list[Section], title: str, how: str) -> Iterator[Section]:
    """Open a section of the report; an error inside is reported, not fatal to the others."""
    print(f"\n{title}\n    ({how})", flush=True)
    current = Section(title, how)
    report.append(current)
    try:
        yield current
    except Exception as exc:  # one broken benchmark must not lose the others' figures
        current.note(f"failed: {type(exc).__name__}: {exc}")


def load_average() -> str:
    """The 1-minute load average and the CPU count, for the record."""
    try:
        one = os.getloadavg()[0]
    except OSError:
        return "unknown"
    return f"{one:.2f} on {os.cpu_count()} CPUs"


def save(report: list[Section], meta: dict[str, Any]) -> Path:
    """Write the report as JSON under bench/results/; its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().astimezone().strftime("%Y%m%dT%H%M%S")
    path = RESULTS / f"{stamp}.json"
    data = {
        **meta,
        "sections": [
            {
                "title": s.title,
                "how": s.how,
                "notes": s.notes,
                "figures": [f.__dict__ for f in s.figures],
            }
            for s in report
        ],
    }
    path.write_text(json.dumps(data, indent=1))
    return path
