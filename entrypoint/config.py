"""Settings from the environment and the command line: parsing and validation only.

Every option has an environment variable and a flag; a flag beats its variable, and an empty
variable counts as unset (manifests often template ``VALUE: ""``). A bad value raises
:class:`~entrypoint.errors.ConfigError` naming the variable (or flag), the value and what is
accepted, before anything connects.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from entrypoint.audit.retention import Retention
from entrypoint.errors import ConfigError
from entrypoint.light import TYPE_CHECKING, NamedTuple
from entrypoint.plan.types import Policy

if TYPE_CHECKING:
    from typing import Any

# Patterns as text: ``re`` compiles (and caches) one the first time a value needs it, so a start
# pays only for the options it was given.
_DURATION = r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h)?\s*$"
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_ALIAS = r"^[A-Za-z_][A-Za-z0-9_-]*$"
_MODULE = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Every word a yes/no option accepts.
BOOLEAN_WORDS = _TRUE | _FALSE

LOCK_MODES = ("auto", "off")
MIGRATE_MODES = ("auto", "wait", "off")
LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_duration(value: str) -> float:
    """Seconds from ``60``, ``1.5``, ``90s``, ``500ms``, ``2m`` or ``1h``; ValueError otherwise."""
    match = re.match(_DURATION, value)
    if match is None:
        raise ValueError(value)
    return float(match["number"]) * _UNITS[match["unit"]]


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        msg = "is not a duration; use seconds such as 60, 1.5, 90s, 500ms, 2m or 1h"
        raise _Invalid(msg) from None


def _optional_duration(value: str) -> float | None:
    if value.strip().lower() in {"off", "0", "none"}:
        return None
    seconds = _duration(value)
    return seconds or None


#: ENTRYPOINT_HISTORY_KEEP's default: a fleet restarting often keeps days of starts, and every
#: run that changed something is kept whatever the bound.
DEFAULT_KEEP = Retention(runs=1000)
_KEEP = r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>d|h|m|s)?\s*$"
_KEEP_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def _keep(value: str) -> Retention:
    if value.strip().lower() in {"off", "all", "none"}:
        return Retention()
    match = re.match(_KEEP, value.strip().lower())
    if match is not None and match["unit"] is None and match["number"].isdigit():
        runs = int(match["number"])
        if runs >= 1:
            return Retention(runs=runs)
    elif match is not None and match["unit"] is not None:
        seconds = float(match["number"]) * _KEEP_UNITS[match["unit"]]
        if seconds > 0:
            return Retention(seconds=seconds)
    msg = (
        "is not a retention; use a number of runs such as 1000, a duration such as 30d or 12h, "
        "or off to keep every run"
    )
    raise _Invalid(msg)


def _count(value: str) -> int:
    if not value.strip().isdigit():
        msg = "is not a whole number; use 0, 1, 2, ..."
        raise _Invalid(msg)
    return int(value)


def _port(value: str) -> int:
    if not value.strip().isdigit() or int(value) > 65535:
        msg = "is not a TCP port; use a number from 1 to 65535, or 0 to turn the server off"
        raise _Invalid(msg)
    return int(value)


def boolean(value: str) -> bool:
    """A yes/no value: 1/0, true/false, yes/no or on/off."""
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    msg = "is not a boolean; use 1 or 0 (also true/false, yes/no, on/off)"
    raise _Invalid(msg)


def _choice(*accepted: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        lowered = value.strip().lower()
        if lowered not in accepted:
            msg = f"is not accepted; use one of {', '.join(accepted)}"
            raise _Invalid(msg)
        return lowered

    return parse


def _policy(value: str) -> Policy:
    lowered = value.strip().lower()
    try:
        return Policy(lowered)
    except ValueError:
        msg = f"is not accepted; use one of {', '.join(p.value for p in Policy)}"
        raise _Invalid(msg) from None


def _text(value: str) -> str:
    if len(value) > 200 or any(ch in value for ch in "\r\n\0"):
        msg = "is not a usable label; use at most 200 printable characters on one line"
        raise _Invalid(msg)
    return value


def _module(value: str) -> str:
    if not re.match(_MODULE, value.strip()):
        msg = "is not a Python module path; use a dotted name such as mysite.settings"
        raise _Invalid(msg)
    return value.strip()


def _aliases(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    if not names:
        msg = "names no database; use aliases of settings.DATABASES separated by commas, or all"
        raise _Invalid(msg)
    if "all" in names:
        if len(names) > 1:
            msg = "mixes all with aliases; use either all or a list of aliases"
            raise _Invalid(msg)
        return ("all",)
    for name in names:
        if not re.match(_ALIAS, name):
            msg = f"has {name!r}, which is not a database alias; use names such as default,other"
            raise _Invalid(msg)
    return tuple(dict.fromkeys(names))


def _http_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        msg = "is not an http(s) URL; use for example http://127.0.0.1:8000/healthz"
        raise _Invalid(msg)
    return value.strip()


def _postgres_url(value: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value.strip())
    if parts.scheme not in {"postgres", "postgresql"} or not (parts.hostname or parts.query):
        msg = (
            "is not a PostgreSQL URL; use postgresql://USER@HOST:5432/DBNAME with the password "
            "after USER and a colon"
        )
        raise _Invalid(msg, secret=True)
    return value.strip()


def _path(value: str) -> str:
    if "\0" in value:
        msg = "is not a file path"
        raise _Invalid(msg)
    return value


class _Invalid(ValueError):
    def __init__(self, reason: str, *, secret: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.secret = secret


class Option(NamedTuple):
    """One setting: its variable, its flag, how it is parsed, its default, and how ``--help``
    shows it (the value placeholder, and the default in words)."""

    dest: str
    env: str
    flag: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str = "VALUE"
    shown_default: str = "none"

    @property
    def switch(self) -> bool:
        """A yes/no option: ``--flag`` / ``--no-flag`` on the command line, 1/0 in its variable."""
        return self.parse is boolean

    def help_text(self) -> str:
        """The line ``--help`` shows: what it does, the default and the variable."""
        return f"{self.help} (default: {self.shown_default}; variable {self.env})"


OPTIONS: tuple[Option, ...] = (
    Option(
        "settings_module",
        "DJANGO_SETTINGS_MODULE",
        "--settings",
        _module,
        None,
        "the project's settings module, e.g. mysite.settings",
        "MODULE",
        "required",
    ),
    Option(
        "databases",
        "ENTRYPOINT_DATABASES",
        "--database",
        _aliases,
        ("default",),
        "database alias to act on (repeat the flag for more; the variable takes them "
        "comma-separated, or all)",
        "ALIAS",
        "default",
    ),
    Option(
        "wait_timeout",
        "ENTRYPOINT_WAIT_TIMEOUT",
        "--wait-timeout",
        _duration,
        60.0,
        "how long to wait for a database (60, 90s, 2m, 500ms)",
        "SECONDS",
        "60 s",
    ),
    Option(
        "lock_timeout",
        "ENTRYPOINT_LOCK_TIMEOUT",
        "--lock-timeout",
        _duration,
        900.0,
        "how long to wait for the migration lock",
        "SECONDS",
        "900 s",
    ),
    Option(
        "lock_key",
        "ENTRYPOINT_LOCK_KEY",
        "--lock-key",
        _text,
        None,
        "name the lock key is derived from",
        "NAME",
        "the database name",
    ),
    Option(
        "lock_database_url",
        "ENTRYPOINT_LOCK_DATABASE_URL",
        "--lock-database-url",
        _postgres_url,
        None,
        "direct PostgreSQL URL for the lock connection, bypassing a transaction pooler",
        "URL",
        "the alias's own settings",
    ),
    Option(
        "direct_database_url",
        "ENTRYPOINT_DIRECT_DATABASE_URL",
        "--direct-database-url",
        _postgres_url,
        None,
        "direct PostgreSQL URL for the whole run (lock, migrations, audit trail), bypassing a "
        "transaction pooler; the app server after the exec keeps DATABASES",
        "URL",
        "the alias's own settings",
    ),
    Option(
        "lock_mode",
        "ENTRYPOINT_LOCK",
        "--lock",
        _choice(*LOCK_MODES),
        "auto",
        "auto takes the migration lock, off migrates without it",
        "auto|off",
        "auto",
    ),
    Option(
        "migrate_mode",
        "ENTRYPOINT_MIGRATE",
        "--migrate",
        _choice(*MIGRATE_MODES),
        "auto",
        "auto locks and migrates; wait never migrates and waits until the database holds the "
        "migrations this code needs; off never migrates (workers, cron pods)",
        "auto|wait|off",
        "auto",
    ),
    Option(
        "migrate_wait_timeout",
        "ENTRYPOINT_MIGRATE_WAIT_TIMEOUT",
        "--migrate-wait-timeout",
        _duration,
        900.0,
        "with --migrate=wait and wait-migrated: how long to wait for the migrations",
        "SECONDS",
        "900 s",
    ),
    Option(
        "history_keep",
        "ENTRYPOINT_HISTORY_KEEP",
        "--history-keep",
        _keep,
        DEFAULT_KEEP,
        "how much of the audit trail the lock holder keeps: a number of runs (1000), a "
        "duration (30d, 12h) or off; runs that applied or unapplied migrations, did not "
        "succeed, or that a rollback refers to are always kept",
        "RUNS|DURATION",
        "1000 runs",
    ),
    Option(
        "health_addr",
        "ENTRYPOINT_HEALTH_ADDR",
        "--health-addr",
        _text,
        "0.0.0.0",  # noqa: S104 - probes come from outside the container
        "address the health server listens on",
        "ADDR",
        "0.0.0.0",  # noqa: S104 - the default shown in --help
    ),
    Option(
        "health_port",
        "ENTRYPOINT_HEALTH_PORT",
        "--health-port",
        _port,
        8081,
        "port of the health server; 0 turns it off",
        "PORT",
        "8081",
    ),
    Option(
        "app_health_url",
        "ENTRYPOINT_APP_HEALTH_URL",
        "--app-health-url",
        _http_url,
        None,
        "after the exec, readiness also needs this URL to answer 2xx/3xx",
        "URL",
    ),
    Option(
        "phase",
        "ENTRYPOINT_PHASE",
        "--phase",
        _policy,
        Policy.ALL,
        "which deploy phase to apply: all, pre-deploy or post-deploy",
        "PHASE",
        "all",
    ),
    Option(
        "release",
        "ENTRYPOINT_RELEASE",
        "--release",
        _text,
        None,
        "release label recorded in the audit trail (image tag, git SHA)",
        "LABEL",
    ),
    Option(
        "log_format",
        "ENTRYPOINT_LOG_FORMAT",
        "--log-format",
        _choice(*LOG_FORMATS),
        "auto",
        "json, console, or auto (console on a terminal)",
        "FORMAT",
        "auto",
    ),
    Option(
        "log_level",
        "ENTRYPOINT_LOG_LEVEL",
        "--log-level",
        _choice(*LOG_LEVELS),
        "info",
        "debug, info, warning or error",
        "LEVEL",
        "info",
    ),
    Option(
        "ddl_lock_timeout",
        "ENTRYPOINT_DDL_LOCK_TIMEOUT",
        "--ddl-lock-timeout",
        _optional_duration,
        None,
        "lock timeout for migration statements: PostgreSQL lock_timeout, MySQL/MariaDB "
        "lock_wait_timeout in whole seconds",
        "SECONDS",
        "off",
    ),
    Option(
        "ddl_retries",
        "ENTRYPOINT_DDL_RETRIES",
        "--ddl-retries",
        _count,
        0,
        "retries of a migration that hit the DDL lock timeout and left nothing behind",
        "N",
        "0",
    ),
    Option(
        "manifest",
        "ENTRYPOINT_MANIFEST",
        "--manifest",
        _path,
        None,
        "migration manifest written by freeze, for the no-op fast path",
        "PATH",
    ),
    Option(
        "rollback_on_failure",
        "ENTRYPOINT_ROLLBACK_ON_FAILURE",
        "--rollback-on-failure",
        boolean,
        False,
        "when a migration fails, unapply what the same run applied",
        shown_default="off",
    ),
    Option(
        "accept_interrupted",
        "ENTRYPOINT_ACCEPT_INTERRUPTED",
        "--accept-interrupted",
        boolean,
        False,
        "go on after an interrupted non-atomic migration, once checked by hand",
        shown_default="off",
    ),
    Option(
        "pushgateway_url",
        "ENTRYPOINT_PUSHGATEWAY_URL",
        "--pushgateway-url",
        _http_url,
        None,
        "Prometheus Pushgateway that migrate pushes its metrics to when it ends",
        "URL",
    ),
    Option(
        "failure_hold",
        "ENTRYPOINT_FAILURE_HOLD",
        "--failure-hold",
        _duration,
        0.0,
        "after a failure, keep readiness answering `failed` this long before exiting",
        "SECONDS",
        "0",
    ),
)

OPTIONS_BY_DEST = {option.dest: option for option in OPTIONS}


class Settings(NamedTuple):
    """Validated settings of one invocation."""

    settings_module: str | None = None
    databases: tuple[str, ...] = ("default",)
    wait_timeout: float = 60.0
    lock_timeout: float = 900.0
    lock_key: str | None = None
    lock_database_url: str | None = None
    direct_database_url: str | None = None
    lock_mode: str = "auto"
    migrate_mode: str = "auto"
    migrate_wait_timeout: float = 900.0
    history_keep: Retention = DEFAULT_KEEP
    health_addr: str = "0.0.0.0"  # noqa: S104 - probes come from outside the container
    health_port: int = 8081
    app_health_url: str | None = None
    phase: Policy = Policy.ALL
    release: str | None = None
    log_format: str = "auto"
    log_level: str = "info"
    ddl_lock_timeout: float | None = None
    ddl_retries: int = 0
    manifest: str | None = None
    rollback_on_failure: bool = False
    accept_interrupted: bool = False
    pushgateway_url: str | None = None
    failure_hold: float = 0.0


def load(environ: Mapping[str, str], flags: Mapping[str, Any]) -> Settings:
    """Build :class:`Settings` from the environment and the parsed flags (flags win).

    ``flags`` maps option ``dest`` names to the raw strings given on the command line (a list of
    strings for ``databases``); options not given are absent or ``None``.
    """
    values: dict[str, Any] = {}
    for option in OPTIONS:
        raw_flag = flags.get(option.dest)
        if raw_flag is not None and raw_flag != []:
            source = option.flag
            raw = ",".join(raw_flag) if isinstance(raw_flag, list) else str(raw_flag)
        else:
            raw_env = environ.get(option.env, "")
            if raw_env.strip() == "":
                values[option.dest] = option.default
                continue
            source, raw = option.env, raw_env
        try:
            values[option.dest] = option.parse(raw)
        except _Invalid as exc:
            shown = "(value hidden: it may hold a password)" if exc.secret else repr(raw)
            msg = f"{source}={shown} {exc.reason}"
            raise ConfigError(msg) from None
    return Settings(**values)
