"""The image end to end on a real Docker engine: build it from the Dockerfile, start three
replicas against one fresh PostgreSQL database, and check that exactly one migrated, all became
ready and healthy, the app server is PID 1, and ``docker stop`` ends each cleanly.

Needs a Docker engine; ``.ci/docker-engine`` (as root) starts one where none runs. Without a
registry the base image is made locally by ``docker/build-base-image.sh`` and pip in the build
installs from wheels fetched here into ``docker/wheelhouse/`` (``PIP_NO_INDEX=1``); set
``CONTAINER_TEST_BASE_IMAGE`` (e.g. ``python:3.12-slim-bookworm``) to build on that image with
the package index instead. Containers use the host's network (the engine may run with
``--bridge=none``), so each replica gets its own app and health ports and reaches the test's
PostgreSQL as the suite does.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from tests.support.databases import PgDatabase
from tests.support.optional import PARTS, unavailable
from tests.support.paths import REPO
from tests.support.pgcluster import free_ports
from tests.support.processes import parse_events

IMAGE = "django-entrypoint-example:test"
LABEL = "org.django-entrypoint.test=container"
LOCAL_BASE = "django-entrypoint-base:bookworm"
WHEELHOUSE = REPO / "docker" / "wheelhouse"
K8S = REPO / "docker" / "k8s"
EXAMPLE_MIGRATIONS = {"0001_initial", "0002_note_pinned", "0003_welcome_note"}

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(900)]


@dataclass
class Docker:
    """A docker client that reaches a running engine, and how to build with it."""

    client: str
    build_env: dict[str, str] = field(default_factory=dict)

    def __call__(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``docker ARGS`` and return the completed process."""
        done = subprocess.run(
            [self.client, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.build_env},
            check=False,
        )
        if check and done.returncode != 0:
            msg = f"docker {' '.join(args[:3])} failed ({done.returncode}):\n{done.stderr[-3000:]}"
            raise AssertionError(msg)
        return done

    def inspect(self, name: str, template: str) -> str:
        """One field of ``docker inspect``."""
        return self("inspect", "--format", template, name).stdout.strip()

    def logs(self, name: str) -> str:
        """Everything a container printed (both streams)."""
        done = self("logs", name, check=False)
        return done.stdout + done.stderr


def _clients() -> list[str]:
    found = [shutil.which("docker"), "/usr/bin/docker"]
    unique: list[str] = []
    for path in found:
        if path and os.access(path, os.X_OK) and os.path.realpath(path) not in unique:
            unique.append(os.path.realpath(path))
    return unique


def _builds_with_buildkit(client: str) -> dict[str, str] | None:
    """The environment that makes ``client build`` use BuildKit, or None for the legacy builder.

    BuildKit snapshots only RUN and COPY steps, which matters on the vfs storage driver (every
    legacy step copies the whole filesystem: 4 minutes instead of 35 s for this Dockerfile).
    """
    buildx = subprocess.run([client, "buildx", "version"], capture_output=True, check=False)
    if buildx.returncode == 0:
        return {"DOCKER_BUILDKIT": "1"}
    version = subprocess.run(
        [client, "version", "--format", "{{.Client.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    major = version.split(".", 1)[0]
    # Clients before 23.0 carry BuildKit themselves; later ones need the buildx plugin.
    if major.isdigit() and int(major) < 23:
        return {"DOCKER_BUILDKIT": "1"}
    return None


def _find_docker() -> Docker:
    clients = _clients()
    if not clients:
        unavailable(PARTS["docker"], "no docker client on PATH")
    try:
        info = subprocess.run(
            [clients[0], "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        unavailable(PARTS["docker"], "the engine did not answer docker info within 20 s")
    if info.returncode != 0:
        lines = [line for line in info.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit {info.returncode}"
        unavailable(PARTS["docker"], f"no engine answers: {reason}")
    for client in clients:
        env = _builds_with_buildkit(client)
        if env is not None:
            return Docker(client, env)
    return Docker(clients[0], {"DOCKER_BUILDKIT": "0"})


def _requirements() -> list[str]:
    """What the image installs: the project's dependencies, its build backend and gunicorn."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    dockerfile = (REPO / "Dockerfile").read_text()
    gunicorn = dockerfile.split('ARG GUNICORN="', 1)[1].split('"', 1)[0]
    return [
        *pyproject["build-system"]["requires"],
        *pyproject["project"]["dependencies"],
        gunicorn,
    ]


def _fill_wheelhouse(docker: Docker, base: str) -> None:
    """Fetch the wheels the build needs, for the base image's Python, into docker/wheelhouse."""
    version = docker(
        "run",
        "--rm",
        "--network",
        "host",
        base,
        "python3",
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
    ).stdout.strip()
    abi = "cp" + version.replace(".", "")
    machine = platform.machine()
    platforms = [f"manylinux_2_{minor}_{machine}" for minor in (17, 28, 34)]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--disable-pip-version-check",
            "--only-binary=:all:",
            *[arg for p in platforms for arg in ("--platform", p)],
            "--python-version",
            version,
            "--implementation",
            "cp",
            "--abi",
            abi,
            "--dest",
            str(WHEELHOUSE),
            *_requirements(),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        unavailable(
            PARTS["docker"],
            f"could not fetch the wheels for an offline build: {done.stderr[-500:]}",
        )


@pytest.fixture(scope="module")
def docker() -> Docker:
    """A docker client whose engine answers; skips with the reason when there is none."""
    return _find_docker()


@pytest.fixture(scope="module")
def image(docker: Docker) -> str:
    """The example image, built from the repository's Dockerfile."""
    base = os.environ.get("CONTAINER_TEST_BASE_IMAGE", "")
    args = ["build", "--label", LABEL, "--tag", IMAGE]
    if docker("network", "inspect", "bridge", check=False).returncode != 0:
        # An engine started with --bridge=none has no default network for build steps.
        args += ["--network", "host"]
    if not base:
        base = LOCAL_BASE
        if docker("image", "inspect", base, check=False).returncode != 0:
            made = subprocess.run(
                ["bash", str(REPO / "docker" / "build-base-image.sh")],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if made.returncode != 0:
                unavailable(
                    PARTS["docker"],
                    f"no base image: docker/build-base-image.sh failed: {made.stderr[-500:]}",
                )
        _fill_wheelhouse(docker, base)
        args += ["--build-arg", "PIP_NO_INDEX=1"]
    args += ["--build-arg", f"BASE_IMAGE={base}", str(REPO)]
    built = docker(*args, timeout=600, check=False)
    assert built.returncode == 0, (
        f"docker build failed:\n{built.stdout[-4000:]}{built.stderr[-4000:]}"
    )
    # Earlier builds of the tag are left untagged, and a run killed midway leaves containers:
    # keep the engine's disk from filling up (an hour's grace for runs still going).
    docker(
        "container",
        "prune",
        "--force",
        "--filter",
        f"label={LABEL}",
        "--filter",
        "until=1h",
        check=False,
    )
    docker("image", "prune", "--force", "--filter", f"label={LABEL}", check=False)
    return IMAGE


@dataclass
class Replica:
    """One container of the image on the host's network."""

    name: str
    app_port: int
    health_port: int
    release: str

    def get(self, port: int, path: str) -> tuple[int, str]:
        """Status and body of GET http://127.0.0.1:PORT/PATH; (0, reason) when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)


@pytest.fixture
def containers(docker: Docker) -> Iterator[list[str]]:
    """Names of the containers a test starts; all are removed afterwards."""
    names: list[str] = []
    yield names
    if names:
        docker("rm", "--force", "--volumes", *names, check=False, timeout=120)


def _run(
    docker: Docker,
    image: str,
    name: str,
    env: dict[str, str],
    command: list[str] | None = None,
    *,
    detach: bool = True,
) -> None:
    """Start a container of the image as the manifests do: host network, read-only root, a
    tmpfs on /tmp; ``command`` replaces ENTRYPOINT and CMD as a Kubernetes ``command`` plus
    ``args`` would. Without ``detach``, wait for it to exit."""
    pairs = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    override = ["--entrypoint", command[0]] if command else []
    docker(
        "run",
        *(["--detach"] if detach else []),
        "--name",
        name,
        "--label",
        LABEL,
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        *pairs,
        *override,
        image,
        *(command[1:] if command else []),
        timeout=300,
        check=detach,
    )


def _overlay_container(
    overlay: str, kind: str = "Deployment", *, init: bool = False
) -> tuple[list[str], dict[str, str]]:
    """The first (init) container of the workload of ``kind`` that a Kubernetes overlay
    renders (``kubectl kustomize``): its command and args (empty: the image's own), and its
    plain environment values (the Secret's and the ConfigMap's are the test's to give)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        unavailable(PARTS["kubectl"], "no kubectl on PATH")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for doc in yaml.safe_load_all(done.stdout):
        if doc and doc["kind"] == kind:
            spec = (
                doc["spec"]["template"]["spec"]
                if kind != "CronJob"
                else (doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
            )
            container = spec["initContainers" if init else "containers"][0]
            env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
            return [*container.get("command", []), *container.get("args", [])], env
    msg = f"no {kind} in overlay {overlay}"
    raise AssertionError(msg)


def _database_url(pg: PgDatabase) -> str:
    info = pg.info
    auth = info.get("user", "")
    if info.get("password"):
        auth += f":{info['password']}"
    host = info.get("host") or "127.0.0.1"
    return f"postgres://{auth}@{host}:{info.get('port', 5432)}/{pg.name}"


def _processes(docker: Docker, name: str) -> list[tuple[int, str, str]]:
    """(pid, command name, state) of every process in the container, read from /proc."""
    script = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    try:\n"
        "        stat = open(f'/proc/{pid}/stat').read()\n"
        "    except OSError:\n"
        "        continue\n"
        "    print(pid, stat[stat.index('(') + 1:stat.rindex(')')], stat[stat.rindex(')') + 2])\n"
    )
    output = docker("exec", name, "python3", "-c", script).stdout
    rows = []
    for line in output.splitlines():
        pid, comm, state = line.rsplit(" ", 2)
        rows.append((int(pid), comm, state))
    return rows


def _wait_ready(docker: Docker, replicas: list[Replica], timeout: float = 240) -> None:
    """Block until every replica answers /readyz 200 and serves the app's home page."""
    deadline = time.monotonic() + timeout
    pending = list(replicas)
    while pending and time.monotonic() < deadline:
        for replica in list(pending):
            if docker.inspect(replica.name, "{{.State.Running}}") != "true":
                pytest.fail(f"{replica.name} exited early:\n{docker.logs(replica.name)[-3000:]}")
            ready = replica.get(replica.health_port, "/readyz")
            app = replica.get(replica.app_port, "/")
            if ready[0] == 200 and app == (200, "notes: 1\n"):
                assert json.loads(ready[1])["phase"] == "ready"
                pending.remove(replica)
        time.sleep(0.5)
    assert not pending, "\n".join(
        f"{r.name} not ready: {r.get(r.health_port, '/readyz')}\n{docker.logs(r.name)[-2000:]}"
        for r in pending
    )


def test_three_replicas_one_migrates_all_ready_and_stop_cleanly(
    docker: Docker, image: str, pg_db: PgDatabase, containers: list[str]
) -> None:
    """Three replicas of the image on a fresh database: exactly one applies the migrations
    (django_migrations and the audit trail agree), all three answer /readyz 200 (which, after
    the exec, also asks gunicorn through ENTRYPOINT_APP_HEALTH_URL) and serve the app, Docker's HEALTHCHECK (django-entrypoint probe) turns healthy, gunicorn is PID 1 with no
    zombie beside it, a restarted replica takes the fast path of the manifest frozen into the
    image, and docker stop ends every replica with status 0 (gunicorn's graceful
    SIGTERM shutdown), not 137 (killed after the stop timeout)."""
    run = uuid.uuid4().hex[:8]
    ports = free_ports(6)
    replicas = [
        Replica(f"ep-test-{run}-{i}", *ports[2 * i : 2 * i + 2], f"replica-{i}") for i in range(3)
    ]
    containers.extend(r.name for r in replicas)
    url = _database_url(pg_db)
    with ThreadPoolExecutor(len(replicas)) as pool:
        list(
            pool.map(
                lambda r: _run(
                    docker,
                    image,
                    r.name,
                    {
                        "DATABASE_URL": url,
                        "PORT": str(r.app_port),
                        "ENTRYPOINT_HEALTH_PORT": str(r.health_port),
                        "ENTRYPOINT_RELEASE": r.release,
                        # As in docker/k8s/deployment.yaml: after the exec, /readyz asks gunicorn.
                        "ENTRYPOINT_APP_HEALTH_URL": f"http://127.0.0.1:{r.app_port}/admin/login/",
                        "WEB_CONCURRENCY": "1",
                    },
                ),
                replicas,
            )
        )

    _wait_ready(docker, replicas)

    # Exactly once, from the database itself.
    notes = pg_db.query("SELECT name FROM django_migrations WHERE app = 'notes'")
    assert sorted(name for (name,) in notes) == sorted(EXAMPLE_MIGRATIONS)
    duplicates = pg_db.query(
        "SELECT app, name FROM django_migrations GROUP BY app, name HAVING count(*) > 1"
    )
    assert duplicates == []
    runs = pg_db.query("SELECT release_label, status, applied FROM entrypoint_migration_run")
    # A replica that starts after the migration is done may take the fast path (the image's
    # frozen manifest): it only reads, and leaves no row.
    assert {status for _, status, _ in runs} == {"succeeded"}
    migrated = [release for release, _, applied in runs if json.loads(applied or "[]")]
    assert len(migrated) == 1, runs
    # The logs tell the same story: the one that migrated applied them all, the others none.
    for replica in replicas:
        events = [e["event"] for e in parse_events(docker.logs(replica.name))]
        if replica.release == migrated[0]:
            assert events.count("migration_applied") == len(
                pg_db.query("SELECT 1 FROM django_migrations")
            )
        else:
            assert "migration_applied" not in events
            assert "nothing_to_migrate" in events
        assert events[-1] == "exec", events

    # The app server took over PID 1; its health child is reaped, nothing is a zombie.
    for replica in replicas:
        processes = _processes(docker, replica.name)
        assert (1, "gunicorn") in {(pid, comm) for pid, comm, _ in processes}, processes
        assert [p for p in processes if p[2] == "Z"] == [], processes

    # Docker's own HEALTHCHECK, through `django-entrypoint probe` on each replica's port.
    deadline = time.monotonic() + 90
    health = {}
    while time.monotonic() < deadline:
        health = {r.name: docker.inspect(r.name, "{{.State.Health.Status}}") for r in replicas}
        if set(health.values()) == {"healthy"}:
            break
        time.sleep(1)
    assert set(health.values()) == {"healthy"}, health

    # A restarted replica finds nothing to do through the manifest frozen into the image,
    # checked against the live DATABASE_URL, without setting Django up.
    docker("restart", "--time", "30", replicas[0].name)
    _wait_ready(docker, replicas[:1])
    last = [
        e for e in parse_events(docker.logs(replicas[0].name)) if e["event"] == "nothing_to_migrate"
    ]
    assert last[-1].get("fast_path") is True, last
    assert (
        docker.inspect(replicas[0].name, "{{.RestartCount}}") == "0"
    )  # docker restart, not a crash

    with ThreadPoolExecutor(len(replicas)) as pool:
        list(pool.map(lambda r: docker("stop", "--time", "30", r.name), replicas))
    codes = {r.name: docker.inspect(r.name, "{{.State.ExitCode}}") for r in replicas}
    assert set(codes.values()) == {"0"}, codes
    assert all("Shutting down: Master" in docker.logs(r.name) for r in replicas)


def test_docker_stop_while_waiting_for_the_database_exits_143(
    docker: Docker, image: str, containers: list[str]
) -> None:
    """django-entrypoint as PID 1 honours docker stop's SIGTERM before the exec: a replica
    waiting for a database that does not answer reports `waiting_for_database` on /readyz, then
    exits 143 with the one-line error, well inside the stop timeout (not 137, which would mean
    the signal was ignored and Docker had to kill it)."""
    app_port, health_port, closed = free_ports(3)  # nothing listens on closed: the wait goes on
    replica = Replica(f"ep-test-{uuid.uuid4().hex[:8]}-wait", app_port, health_port, "wait")
    containers.append(replica.name)
    _run(
        docker,
        image,
        replica.name,
        {
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed}/none",
            "PORT": str(replica.app_port),
            "ENTRYPOINT_HEALTH_PORT": str(replica.health_port),
            "ENTRYPOINT_WAIT_TIMEOUT": "10m",
        },
    )
    deadline = time.monotonic() + 120
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = replica.get(replica.health_port, "/readyz")
        if status == 503 and json.loads(body)["phase"] == "waiting_for_database":
            break
        time.sleep(0.3)
    assert status == 503, (status, body, docker.logs(replica.name)[-2000:])
    assert json.loads(body)["phase"] == "waiting_for_database"

    docker("stop", "--time", "60", replica.name)
    assert docker.inspect(replica.name, "{{.State.ExitCode}}") == "143"
    lines = [line for line in docker.logs(replica.name).splitlines() if not line.startswith("{")]
    assert lines[-1] == "django-entrypoint: error: stopped by SIGTERM before the app server started"


@pytest.mark.kubectl
def test_kubernetes_overlays_commands_work_in_the_image(
    docker: Docker, image: str, pg_db: PgDatabase, containers: list[str]
) -> None:
    """The overlays' commands, run in the image as the rendered objects run them: the
    pre-deploy Job migrates a fresh database and exits 0 (its audit row says pre-deploy), the
    post-deploy Job then has nothing left and exits 0; the native sidecar turns /readyz 200 and
    keeps serving it, the app container started with the sidecar overlay's command and args
    serves the app, and docker stop ends both with 0."""
    run = uuid.uuid4().hex[:8]
    url = _database_url(pg_db)
    for phase in ("pre-deploy", "post-deploy"):
        command, env = _overlay_container(phase, "Job")
        assert env["ENTRYPOINT_PHASE"] == phase
        name = f"ep-test-{run}-{phase}"
        containers.append(name)
        _run(
            docker,
            image,
            name,
            {**env, "DATABASE_URL": url, "ENTRYPOINT_RELEASE": run},
            command,
            detach=False,
        )
        assert docker.inspect(name, "{{.State.ExitCode}}") == "0", docker.logs(name)[-3000:]
    notes = pg_db.query("SELECT name FROM django_migrations WHERE app = 'notes'")
    assert sorted(name for (name,) in notes) == sorted(EXAMPLE_MIGRATIONS)
    phases = pg_db.query(
        "SELECT phase, applied FROM entrypoint_migration_run WHERE release_label = %s", (run,)
    )
    assert [phase for phase, applied in phases if json.loads(applied or "[]")] == ["pre-deploy"]

    sidecar_port, app_port = free_ports(2)
    sidecar = Replica(f"ep-test-{run}-sidecar", 0, sidecar_port, run)
    app = Replica(f"ep-test-{run}-app", app_port, 0, run)
    containers.extend([sidecar.name, app.name])
    command, env = _overlay_container("sidecar", init=True)
    assert command == ["django-entrypoint", "sidecar"]
    env.update(
        DATABASE_URL=url, ENTRYPOINT_RELEASE=run, ENTRYPOINT_HEALTH_PORT=str(sidecar.health_port)
    )
    _run(docker, image, sidecar.name, env, command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and sidecar.get(sidecar.health_port, "/readyz")[0] != 200:
        time.sleep(0.3)
    status, body = sidecar.get(sidecar.health_port, "/readyz")
    assert status == 200, (body, docker.logs(sidecar.name)[-3000:])

    command, env = _overlay_container("sidecar")
    _run(docker, image, app.name, {**env, "DATABASE_URL": url, "PORT": str(app.app_port)}, command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and app.get(app.app_port, "/")[0] != 200:
        time.sleep(0.3)
    assert app.get(app.app_port, "/") == (200, "notes: 1\n"), docker.logs(app.name)[-3000:]
    # The sidecar still answers once the app runs: it serves until the pod ends.
    assert sidecar.get(sidecar.health_port, "/readyz")[0] == 200

    for name in (app.name, sidecar.name):
        docker("stop", "--time", "30", name)
        assert docker.inspect(name, "{{.State.ExitCode}}") == "0", docker.logs(name)[-3000:]


@pytest.mark.kubectl
def test_wait_job_overlay_pods_wait_for_the_job_in_the_image(
    docker: Docker, image: str, pg_factory: Any, containers: list[str]
) -> None:
    """The wait-job overlay in the image, on a fresh database: its web container (the image's
    entrypoint in wait mode) and its cron pod's `wait-migrated` init container wait, 503
    waiting_for_migrations, while nothing is migrated; the overlay's Job then migrates and
    exits 0, the web container turns /readyz 200 and serves the app, `wait-migrated` exits 0
    and the cron container after it runs its command with 0; the Job's run is the only one in
    the audit trail."""
    pg = pg_factory()
    run = uuid.uuid4().hex[:8]
    url = _database_url(pg)
    web = Replica(f"ep-test-{run}-waitweb", *free_ports(2), run)
    cron = f"ep-test-{run}-waitcron"
    job = f"ep-test-{run}-job"
    containers.extend([web.name, cron, job])
    command, env = _overlay_container("wait-job")
    assert command == []
    assert env["ENTRYPOINT_MIGRATE"] == "wait"
    env.update(
        DATABASE_URL=url,
        ENTRYPOINT_RELEASE=run,
        PORT=str(web.app_port),
        ENTRYPOINT_HEALTH_PORT=str(web.health_port),
        ENTRYPOINT_APP_HEALTH_URL=f"http://127.0.0.1:{web.app_port}/admin/login/",
        WEB_CONCURRENCY="1",
    )
    _run(docker, image, web.name, env)
    init, init_env = _overlay_container("wait-job", "CronJob", init=True)
    assert init == ["django-entrypoint", "wait-migrated"]
    _run(docker, image, cron, {**init_env, "DATABASE_URL": url}, init)
    deadline = time.monotonic() + 120
    status, body = 0, ""
    while time.monotonic() < deadline:
        status, body = web.get(web.health_port, "/readyz")
        if status == 503 and json.loads(body)["phase"] == "waiting_for_migrations":
            break
        time.sleep(0.3)
    assert json.loads(body)["phase"] == "waiting_for_migrations", docker.logs(web.name)[-3000:]
    assert docker.inspect(cron, "{{.State.Running}}") == "true", docker.logs(cron)[-3000:]

    command, env = _overlay_container("wait-job", "Job")
    _run(
        docker,
        image,
        job,
        {**env, "DATABASE_URL": url, "ENTRYPOINT_RELEASE": run},
        command,
        detach=False,
    )
    assert docker.inspect(job, "{{.State.ExitCode}}") == "0", docker.logs(job)[-3000:]
    _wait_ready(docker, [web])
    docker("wait", cron, timeout=120)
    assert docker.inspect(cron, "{{.State.ExitCode}}") == "0", docker.logs(cron)[-3000:]
    after, _ = _overlay_container("wait-job", "CronJob")
    done = docker(
        "run",
        "--rm",
        "--network",
        "host",
        "--read-only",
        "--tmpfs",
        "/tmp",
        "--env",
        f"DATABASE_URL={url}",
        "--entrypoint",
        after[0],
        image,
        *after[1:],
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = pg.query("SELECT release_label, status FROM entrypoint_migration_run")
    assert runs == [(run, "succeeded")]
    docker("stop", "--time", "30", web.name)
    assert docker.inspect(web.name, "{{.State.ExitCode}}") == "0", docker.logs(web.name)[-3000:]
