"""The fast path on the apps production projects commonly install (the real-apps project,
``tests/projects/realproj``; the packages come with the ``realapps`` extra): after ``freeze``
nothing they ship makes the fast path doubt, and its answer agrees with Django's own plan with
all of them in the graph."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.fastpath import check as fastcheck
from entrypoint.fastpath import manifest
from entrypoint.fastpath.graph import applied_nodes
from entrypoint.fastpath.verdict import Verdict
from tests.support import optional
from tests.support.databases import PgDatabase
from tests.support.oracle import Oracle
from tests.support.paths import REPO, TESTS
from tests.support.processes import Launcher

pytestmark = pytest.mark.realapps

REALPROJ = TESTS / "projects" / "realproj"
Node = tuple[str, str]


def real_env(databases: dict[str, Any], **extra: str) -> dict[str, str]:
    """The environment of a process on the real-apps project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENTRYPOINT_", "DJANGO_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REALPROJ), str(REPO)]),
        DJANGO_SETTINGS_MODULE="realproj.settings",
        REALPROJ_DATABASES=json.dumps(databases),
        ENTRYPOINT_LOG_FORMAT="json",
        ENTRYPOINT_HEALTH_PORT="0",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def real(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real-apps project migrated by the entrypoint on a new database and frozen."""
    import subprocess
    import sys

    # A module-scoped fixture is set up before the marker's check of each test: check here.
    optional.check("realapps")

    name = f"ep_realapps_{os.getpid()}"
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    pg = PgDatabase(pg_server, name)
    path = tmp_path_factory.mktemp("realapps") / "manifest.json"
    env = real_env({"default": pg.django()})
    for args in (["migrate"], ["freeze", "--output", str(path)]):
        done = subprocess.run(
            [sys.executable, "-m", "entrypoint", *args],
            env=env,
            cwd=REALPROJ,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    complete = {(str(a), str(n)) for a, n in pg.query("SELECT app, name FROM django_migrations")}
    yield {"pg": pg, "env": env, "manifest": path, "complete": complete}
    with psycopg.connect(pg_server, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def test_the_fast_path_is_taken_after_freeze_with_the_real_apps(
    real: dict[str, Any], launcher: Launcher
) -> None:
    """With every app of the real-apps project installed (django-prometheus's plain
    ``migrations.py`` among them), a start after
    ``freeze`` with nothing pending takes the fast path, with no doubt logged."""
    env = {**real["env"], "ENTRYPOINT_MANIFEST": str(real["manifest"])}
    proc = launcher.start(["migrate"], env, cwd=REALPROJ)
    assert proc.wait(120) == 0, proc.stderr()[-2000:]
    assert [e for e in proc.events() if e["event"] == "fast_path_skipped"] == []
    [ready] = [e for e in proc.events() if e["event"] == "ready"]
    assert ready["fast_path"] is True
    frozen = manifest.load(str(real["manifest"]))
    assert len(frozen.migrations) > 150
    assert {"django_prometheus", "storages", "django_filters", "rest_framework", "mptt"}.isdisjoint(
        {p.app for p in frozen.packages}
    )
    assert any(f.path.endswith("django_prometheus/migrations.py") for f in frozen.files)


@pytest.fixture(scope="module")
def agreement(real: dict[str, Any]) -> Iterator[Any]:
    """Django's plan on demand on the real-apps database, and a writer of its rows."""
    pg: PgDatabase = real["pg"]
    oracle = Oracle(real["env"], REALPROJ)
    conn = pg.connect()
    frozen = manifest.load(str(real["manifest"]))

    class Agreement:
        complete: set[Node] = real["complete"]
        graph = frozen.graph
        squashes = dict(frozen.replacements)
        values = {
            "INSTALLED_APPS": list(frozen.installed_apps),
            "MIGRATION_MODULES": {},
            "DATABASES": {"default": pg.django()},
        }

        def answers(self, rows: set[Node]) -> tuple[list[Node], bool, Verdict]:
            """Record exactly ``rows``, then ask Django (plan, history consistent) and the fast
            path."""
            with conn.transaction():
                conn.execute("DELETE FROM django_migrations")
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())",
                        sorted(rows),
                    )
            verdict = fastcheck.verify(frozen, self.values, ("default",))
            plan, consistent = oracle.plan()
            return plan, consistent, verdict

    yield Agreement()
    with conn.transaction(), conn.cursor() as cursor:
        conn.execute("DELETE FROM django_migrations")
        cursor.executemany(
            "INSERT INTO django_migrations (app, name, applied) VALUES (%s, %s, now())",
            sorted(real["complete"]),
        )
    conn.close()
    oracle.close()


def ancestors(graph: dict[Node, tuple[Node, ...]], nodes: set[Node]) -> set[Node]:
    """The nodes with every dependency of theirs, as a migrate up to them leaves the table."""
    seen: set[Node] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return seen


@st.composite
def histories(draw: st.DrawFn, agreement: Any) -> set[Node]:
    """Row sets near the ones real databases hold: everything applied, a migrate stopped part
    way (each applied node with all its dependencies), squashes recorded or not, stray rows."""
    complete = sorted(agreement.complete)
    nodes = sorted(agreement.graph)
    kinds = ["partial", "missing", "random", *(["squash"] if agreement.squashes else [])]
    kind = draw(st.sampled_from(kinds))
    if kind == "partial":
        chosen = draw(st.sets(st.sampled_from(nodes), max_size=12))
        rows = ancestors(agreement.graph, chosen)
        # Django records a squash's replaced nodes, not the squash, until migrate ends.
        for squash, replaced in agreement.squashes.items():
            if squash in rows:
                rows = (rows - {squash}) | set(replaced)
    elif kind == "missing":
        rows = set(complete) - draw(st.sets(st.sampled_from(complete), max_size=3))
    elif kind == "random":
        rows = draw(st.sets(st.sampled_from(complete), max_size=40))
    else:
        rows = set(complete) - draw(
            st.sets(st.sampled_from(sorted(agreement.squashes)), max_size=2)
        )
    strays = draw(st.sets(st.sampled_from([("ghost", "0001_initial"), ("taggit", "9999_gone")])))
    return rows | strays


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_nothing_to_do_exactly_when_djangos_plan_is_empty_with_the_real_apps(
    agreement: Any, data: st.DataObject
) -> None:
    """Over histories of the real apps' graph (a migrate stopped part way, rows missing, random
    rows, squash rows missing, stray rows): the fast path says "nothing to do" exactly when
    Django's plan is empty, Django takes the history as consistent and no squash is left to
    record, and otherwise counts the same pending migrations; a partly applied squash is a
    doubt."""
    rows = data.draw(histories(agreement))
    plan, consistent, verdict = agreement.answers(rows)
    partly = any(
        0 < len(rows & set(replaced)) < len(replaced) for replaced in agreement.squashes.values()
    )
    if partly:
        assert verdict.doubt
        assert not verdict.nothing_to_do
        return
    to_record = any(
        set(replaced) <= rows and squash not in rows
        for squash, replaced in agreement.squashes.items()
    )
    assert verdict.nothing_to_do == (plan == [] and consistent and not to_record), verdict
    if plan:
        assert verdict.reason.startswith(f"{len(plan)} migration(s) pending on 'default': ")
        expected = set(agreement.graph) - applied_nodes(list(agreement.squashes.items()), rows)
        assert set(plan) <= expected | set(agreement.squashes)


def test_everything_applied_is_nothing_to_do_with_the_real_apps(agreement: Any) -> None:
    """The state a finished migrate leaves: Django plans nothing and the fast path agrees."""
    plan, consistent, verdict = agreement.answers(set(agreement.complete))
    assert (plan, consistent) == ([], True)
    assert verdict.nothing_to_do, verdict
