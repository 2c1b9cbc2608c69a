"""Every bad input: one exact line naming the culprit and the fix, a documented exit code, and
no secret in any output."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from entrypoint.cli.parser import COMMANDS
from entrypoint.locks import lock_key
from tests.support.databases import PgDatabase
from tests.support.paths import REPO, TESTS
from tests.support.pgcluster import Cluster, find_bindir, free_port
from tests.support.processes import ERROR_PREFIX, SECRET, Launcher, run_bad, sqlite_databases


def pg_entry(pg: PgDatabase, **extra: Any) -> dict[str, Any]:
    """The test database with a password set (trust auth ignores it; it must never show)."""
    return pg.django(PASSWORD=SECRET, **extra)


@pytest.fixture(scope="module")
def password_server() -> Iterator[int]:
    """A PostgreSQL cluster with password authentication (scram) on 127.0.0.1; its port."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("needs initdb/pg_ctl (PATH, /usr/lib/postgresql or pgserver)")
    cluster = Cluster(bindir, free_port(), password="right-password")
    cluster.start()
    yield cluster.port
    cluster.destroy()


CONFIG_CASES = [
    pytest.param(
        [],
        {"DJANGO_SETTINGS_MODULE": ""},
        64,
        "DJANGO_SETTINGS_MODULE is not set; set it (or pass --settings) to the project's settings "
        "module, e.g. mysite.settings",
        id="missing-settings",
    ),
    pytest.param(
        ["--settings", "nosuchproject.settings"],
        {},
        64,
        "DJANGO_SETTINGS_MODULE='nosuchproject.settings' cannot be imported: No module named "
        "'nosuchproject'; run from the project directory or put it on PYTHONPATH, and check the "
        "module name",
        id="unimportable-settings",
    ),
    pytest.param(
        ["--settings", "not a module"],
        {},
        64,
        "--settings='not a module' is not a Python module path; use a dotted name such as "
        "mysite.settings",
        id="malformed-settings",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_DATABASES": "default,nope"},
        64,
        "ENTRYPOINT_DATABASES names unknown database alias 'nope'; settings.DATABASES has default",
        id="unknown-alias",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_WAIT_TIMEOUT": "soon"},
        64,
        "ENTRYPOINT_WAIT_TIMEOUT='soon' is not a duration; use seconds such as 60, 1.5, 90s, "
        "500ms, 2m or 1h",
        id="bad-duration",
    ),
    pytest.param(
        ["--lock-timeout=-5"],
        {},
        64,
        "--lock-timeout='-5' is not a duration; use seconds such as 60, 1.5, 90s, 500ms, 2m or 1h",
        id="negative-duration-flag",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_HEALTH_PORT": "70000"},
        64,
        "ENTRYPOINT_HEALTH_PORT='70000' is not a TCP port; use a number from 1 to 65535, or 0 to "
        "turn the server off",
        id="bad-port",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_DDL_RETRIES": "-1"},
        64,
        "ENTRYPOINT_DDL_RETRIES='-1' is not a whole number; use 0, 1, 2, ...",
        id="bad-count",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_PHASE": "later"},
        64,
        "ENTRYPOINT_PHASE='later' is not accepted; use one of all, pre-deploy, post-deploy",
        id="bad-phase",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_LOCK": "maybe"},
        64,
        "ENTRYPOINT_LOCK='maybe' is not accepted; use one of auto, off",
        id="bad-lock-mode",
    ),
    pytest.param(
        [],
        {"ENTRYPOINT_LOCK_DATABASE_URL": f"mysql://app:{SECRET}@db/app"},
        64,
        "ENTRYPOINT_LOCK_DATABASE_URL=(value hidden: it may hold a password) is not a PostgreSQL "
        "URL; use postgresql://USER@HOST:5432/DBNAME with the password after USER and a colon",
        id="bad-lock-url-hides-password",
    ),
]


@pytest.mark.parametrize(("flags", "env", "code", "message"), CONFIG_CASES)
def test_configuration_errors(
    launcher: Launcher,
    tmp_path: Path,
    flags: list[str],
    env: dict[str, str],
    code: int,
    message: str,
) -> None:
    """Bad settings exit 64 before anything connects, naming the variable and what is accepted."""
    environ = launcher.env(sqlite_databases(tmp_path), **env)
    assert run_bad(launcher, [*flags, "migrate"], environ) == (code, message)
    assert not (tmp_path / "db.sqlite3").exists()  # nothing ran


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["run"],
            64,
            "run needs the command to exec after --, e.g. django-entrypoint run -- gunicorn mysite.wsgi",
        ),
        (
            ["run", "--"],
            64,
            "run needs the command to exec after --, e.g. django-entrypoint run -- gunicorn mysite.wsgi",
        ),
        (
            ["frobnicate"],
            64,
            f"unknown command 'frobnicate'; use one of {', '.join(COMMANDS)} (see 'django-entrypoint --help')",
        ),
        (
            [],
            64,
            f"no command given; use one of {', '.join(COMMANDS)} (see 'django-entrypoint --help')",
        ),
        (
            ["run", "--", "no-such-program-xyz"],
            127,
            "cannot run 'no-such-program-xyz': command not found; check the command after -- and PATH",
        ),
        (
            ["run", "--", "/dev/null"],
            126,
            "cannot run '/dev/null': permission denied; make it executable (chmod +x)",
        ),
    ],
    ids=[
        "run-without-command",
        "nothing-after-dashes",
        "unknown-command",
        "no-command",
        "not-found",
        "not-executable",
    ],
)
def test_command_line_errors(
    launcher: Launcher, tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    """Usage errors exit 64; a command that cannot be exec'd exits 127 or 126."""
    assert run_bad(launcher, args, launcher.env(sqlite_databases(tmp_path))) == (code, message)


def test_unreachable_host_times_out_with_69(launcher: Launcher) -> None:
    """Nothing listens: the wait ends at its deadline with 69 and what to check."""
    port = free_port()
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(port),
    }
    env = launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="1")
    code, line = run_bad(launcher, ["migrate"], env)
    assert code == 69
    assert line.startswith(
        f"database 'default' (postgresql://app@127.0.0.1:{port}/app) was not reachable within 1s ("
    )
    assert line.endswith(
        "Connection refused; check that the server runs and HOST/PORT in "
        "settings.DATABASES['default'], or raise ENTRYPOINT_WAIT_TIMEOUT"
    )


def test_unknown_host_fails_at_once(launcher: Launcher) -> None:
    """An unknown host name is permanent: no waiting, 69, and the fix."""
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "app",
        "USER": "app",
        "PASSWORD": SECRET,
        "HOST": "no-such-host.invalid",
        "PORT": "5432",
    }
    env = launcher.env({"default": entry}, ENTRYPOINT_WAIT_TIMEOUT="30")
    proc = launcher.run(["migrate"], env, timeout=20)
    assert proc.popen.returncode == 69
    assert proc.error_lines() == [
        ERROR_PREFIX + "database 'default' (postgresql://app@no-such-host.invalid:5432/app): "
        "failed to resolve host 'no-such-host.invalid': [Errno -2] Name or service not known; "
        "fix HOST in settings.DATABASES['default']"
    ]


def test_wrong_password_fails_at_once(launcher: Launcher, password_server: int) -> None:
    """A wrong password is permanent: 69 at once, the fix named, the password never shown."""
    entry = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "postgres",
        "USER": "postgres",
        "PASSWORD": SECRET,
        "HOST": "127.0.0.1",
        "PORT": str(password_server),
    }
    code, line = run_bad(launcher, ["migrate"], launcher.env({"default": entry}))
    assert (code, line) == (
        69,
        f"database 'default' (postgresql://postgres@127.0.0.1:{password_server}/postgres): "
        'password authentication failed for user "postgres"; check USER and PASSWORD in '
        "settings.DATABASES['default']",
    )


def test_missing_database_fails_at_once(launcher: Launcher, pg_db: PgDatabase) -> None:
    """A database that does not exist is permanent: 69 with the fix."""
    entry = pg_entry(pg_db, NAME="no_such_database")
    code, line = run_bad(launcher, ["migrate"], launcher.env({"default": entry}))
    assert code == 69
    assert line.endswith(
        'database "no_such_database" does not exist; create it, or fix NAME and USER in '
        "settings.DATABASES['default']"
    )


def test_missing_sqlite_directory(launcher: Launcher, tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist: 69 with the fix."""
    name = tmp_path / "missing" / "db.sqlite3"
    env = launcher.env({"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(name)}})
    assert run_bad(launcher, ["migrate"], env) == (
        69,
        f"database 'default' (sqlite:///{name}): the directory {name.parent} of the SQLite file "
        "does not exist; create it or fix NAME in settings.DATABASES['default']",
    )


def test_conflicting_migrations_are_reported_before_migrating(
    launcher: Launcher, pg_db: PgDatabase
) -> None:
    """Two leaf nodes in one app: 64 with the merge command, before any migration or audit row
    (the lock, taken before Django is set up, is released)."""
    env = launcher.env({"default": pg_entry(pg_db)}, TESTPROJ_EXTRA_APPS="conflicted")
    proc = launcher.run(["migrate"], env)
    assert proc.popen.returncode == 64
    assert proc.error_lines() == [
        ERROR_PREFIX
        + "conflicting migrations: several leaf nodes in the migration graph (0002_left, "
        "0002_right in conflicted); run 'python manage.py makemigrations --merge' and commit the "
        "merge migration"
    ]
    assert pg_db.query("SELECT to_regclass('django_migrations')") == [(None,)]
    assert pg_db.query("SELECT to_regclass('entrypoint_migration_run')") == [(None,)]


def test_failing_migration_exits_70_naming_it(launcher: Launcher, pg_db: PgDatabase) -> None:
    """A migration that raises: 70, its name and the database error's first line."""
    env = launcher.env({"default": pg_entry(pg_db)}, TESTPROJ_EXTRA_APPS="broken")
    code, line = run_bad(launcher, ["migrate"], env)
    assert (code, line) == (
        70,
        "migration broken.0002_fails failed on database 'default': UndefinedTable: relation "
        '"entrypoint_table_that_does_not_exist" does not exist',
    )
    applied = pg_db.query("SELECT name FROM django_migrations WHERE app = 'broken'")
    assert applied == [("0001_initial",)]


def test_unsupported_backend_needs_the_lock_off(launcher: Launcher, tmp_path: Path) -> None:
    """A backend without a lock is refused (64) unless ENTRYPOINT_LOCK=off, which then works."""
    entry = {"ENGINE": "testproj.backends.othersql", "NAME": str(tmp_path / "other.db")}
    env = launcher.env({"default": entry})
    assert run_bad(launcher, ["migrate"], env) == (
        64,
        "database 'default' uses testproj.backends.othersql, which has no migration lock here; "
        "use PostgreSQL, MySQL/MariaDB or SQLite, or set ENTRYPOINT_LOCK=off if only one process "
        "migrates",
    )
    proc = launcher.run(["migrate"], {**env, "ENTRYPOINT_LOCK": "off"})
    assert proc.popen.returncode == 0, proc.stderr()


def test_lock_timeout_exits_75_naming_the_holder(launcher: Launcher, pg_db: PgDatabase) -> None:
    """Another session holds the lock past ENTRYPOINT_LOCK_TIMEOUT: 75, naming that session."""
    with psycopg.connect(**pg_db.info, autocommit=True, application_name="someone-else") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (lock_key(pg_db.name),))
        backend = holder.info.backend_pid
        env = launcher.env({"default": pg_entry(pg_db)}, ENTRYPOINT_LOCK_TIMEOUT="1")
        code, line = run_bad(launcher, ["migrate"], env)
    assert code == 75
    assert line.startswith(
        f"the migration lock on database 'default' ({pg_db.django()['ENGINE'].split('.')[-1]}://"
    )
    assert f"is still held by backend pid {backend} 'someone-else'" in line
    assert line.endswith("; let that run finish, or raise ENTRYPOINT_LOCK_TIMEOUT")


@pytest.mark.parametrize(
    ("argv", "accept", "rollback"),
    [
        (["migrate", "--accept-interrupted"], True, False),
        (["--accept-interrupted", "migrate"], True, False),
        (["migrate", "--no-accept-interrupted"], False, False),
        (["--rollback-on-failure", "--accept-interrupted", "migrate"], True, True),
        (["migrate", "--no-rollback-on-failure", "--accept-interrupted"], True, False),
    ],
)
def test_a_yes_no_flag_alone_means_yes_and_its_no_form_means_no(
    argv: list[str], accept: bool, rollback: bool
) -> None:
    """`--accept-interrupted` (as the error messages say to run it) and
    `--rollback-on-failure` mean yes when given alone, before or after the command;
    `--no-...` means no (the variables take 1/0)."""
    from entrypoint import config
    from entrypoint.cli.parser import flags_of, parse

    args = parse(argv)
    settings = config.load({}, flags_of(args))
    assert args.command == "migrate"
    assert (settings.accept_interrupted, settings.rollback_on_failure) == (accept, rollback)


def test_a_yes_no_flag_beats_its_variable() -> None:
    """A flag beats its variable, in both directions."""
    from entrypoint import config
    from entrypoint.cli.parser import flags_of, parse

    environ = {"ENTRYPOINT_ACCEPT_INTERRUPTED": "1", "ENTRYPOINT_ROLLBACK_ON_FAILURE": "0"}
    args = parse(["migrate", "--no-accept-interrupted", "--rollback-on-failure"])
    settings = config.load(environ, flags_of(args))
    assert (settings.accept_interrupted, settings.rollback_on_failure) == (False, True)


def test_a_switch_before_run_leaves_the_app_command_alone() -> None:
    """Only the entrypoint's own arguments are read: what follows `run`'s command (with or
    without `--`) reaches the app server untouched, even a word that looks like a switch."""
    from entrypoint.cli.parser import parse

    args = parse(["--accept-interrupted", "run", "app", "--accept-interrupted"])
    assert (args.accept_interrupted, args.argv) == (True, ["app", "--accept-interrupted"])
    args = parse(["run", "--", "app", "--rollback-on-failure"])
    assert args.argv == ["--", "app", "--rollback-on-failure"]
    assert getattr(args, "rollback_on_failure", None) is None


def test_a_migration_file_that_does_not_compile_names_the_file_and_line(
    launcher: Launcher, tmp_path: Path
) -> None:
    """A migration with a syntax error is the project's to fix, not an internal error: one line
    with the file and line, exit 64."""
    import shutil

    project = tmp_path / "phaseproj"
    shutil.copytree(
        TESTS / "projects" / "phaseproj", project, ignore=shutil.ignore_patterns("__pycache__")
    )
    broken = project / "shop" / "migrations" / "0004_broken.py"
    text = "from django.db import migrations\n\nclass Migration(migrations.Migration:\n"
    broken.write_text(text)
    with pytest.raises(SyntaxError) as compiled:  # the wording is this Python's own
        compile(text, str(broken), "exec")
    env = launcher.env(
        PYTHONPATH=os.pathsep.join([str(project), str(REPO)]),
        DJANGO_SETTINGS_MODULE="phaseproj.settings",
        PHASEPROJ_DIR=str(tmp_path),
    )
    for command in (["migrate"], ["plan"], ["check"]):
        proc = launcher.start(command, env, cwd=project)
        assert proc.wait(60) == 64, proc.stderr()
        assert proc.error_lines() == [
            f"django-entrypoint: error: {broken}, line {compiled.value.lineno} does not compile: "
            f"{compiled.value.msg}; fix it (python -m py_compile shows the same)"
        ]
