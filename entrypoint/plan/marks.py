"""Explicit marks of a migration's deploy phase: the project's settings, our own attribute, and
those of django-safemigrate and django-syzygy (read by name, never imported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from entrypoint.plan.types import DeployPhase

if TYPE_CHECKING:
    from django.db.migrations.migration import Migration

    from entrypoint.plan.types import MarkedBy

from collections.abc import Iterable, Mapping

from entrypoint.errors import ConfigError
from entrypoint.plan.types import MARK_ATTRIBUTE, OVERRIDES_SETTING, Node, dotted

_SAFEMIGRATE_WORDS = {
    "before_deploy": DeployPhase.PRE_DEPLOY,
    "always": DeployPhase.PRE_DEPLOY,
    "after_deploy": DeployPhase.POST_DEPLOY,
}


_SYZYGY_WORDS = {
    "pre_deploy": DeployPhase.PRE_DEPLOY,
    "post_deploy": DeployPhase.POST_DEPLOY,
    "post_deployment": DeployPhase.POST_DEPLOY,
}


def parse_overrides(value: object, nodes: Iterable[Node]) -> dict[str, DeployPhase]:
    """Validate the ``ENTRYPOINT_MIGRATION_PHASES`` setting against the project's migrations.

    It maps ``"app.migration_name"`` (or ``"app.*"``, every migration of the app) to
    ``"pre-deploy"`` or ``"post-deploy"``. Raises ConfigError naming the entry at fault.
    """
    where = f"settings.{OVERRIDES_SETTING}"
    if not isinstance(value, Mapping):
        message = (
            f"{where} is a {type(value).__name__}; use a dict such as "
            '{"wagtailcore.0089_log_entry_data_json_null_to_object": "pre-deploy"}'
        )
        raise ConfigError(message)
    known = {dotted(node) for node in nodes}
    apps = {label.split(".", 1)[0] for label in known}
    parsed: dict[str, DeployPhase] = {}
    for key, phase in value.items():
        if not isinstance(phase, str) or phase not in {p.value for p in DeployPhase}:
            message = (
                f"{where}[{key!r}] = {phase!r} is not a deploy phase; use 'pre-deploy' or "
                "'post-deploy'"
            )
            raise ConfigError(message)
        app, _, name = str(key).partition(".")
        if not (key in known or (name == "*" and app in apps)):
            message = (
                f"{where} names {key!r}, which is not a migration of this project; use "
                "'app.migration_name' or 'app.*' as 'python manage.py showmigrations' lists them"
            )
            raise ConfigError(message)
        parsed[str(key)] = DeployPhase(phase)
    return parsed


def migration_mark(
    migration: Migration, overrides: Mapping[str, DeployPhase] | None = None
) -> tuple[DeployPhase, MarkedBy] | None:
    """The phase a migration is explicitly marked with, and by whose convention; None if unmarked.

    ``overrides`` (from :func:`parse_overrides`) come first: they are the project's word on
    migrations it cannot edit. Raises ConfigError naming the migration when a mark has a value
    that is not understood.
    """
    label = dotted((migration.app_label, migration.name))
    if overrides:
        chosen = overrides.get(label) or overrides.get(f"{migration.app_label}.*")
        if chosen is not None:
            return chosen, "settings"
    own = getattr(migration, MARK_ATTRIBUTE, None)
    if own is not None:
        if isinstance(own, DeployPhase):
            return own, "entrypoint"
        if isinstance(own, str) and own in {phase.value for phase in DeployPhase}:
            return DeployPhase(own), "entrypoint"
        message = (
            f"migration {label}: {MARK_ATTRIBUTE} = {own!r} is not a deploy phase; "
            "use 'pre-deploy' or 'post-deploy'"
        )
        raise ConfigError(message)
    safe = getattr(migration, "safe", None)
    if safe is not None:
        phase = _safemigrate_phase(safe)
        if phase is None:
            message = (
                f"migration {label}: safe = {safe!r} is not a django-safemigrate mark; use "
                f"Safe.before_deploy(), Safe.after_deploy() or Safe.always(), or set "
                f"{MARK_ATTRIBUTE}"
            )
            raise ConfigError(message)
        return phase, "safemigrate"
    stage = getattr(migration, "stage", None)
    if stage is not None:
        phase = syzygy_phase(stage)
        if phase is None:
            message = (
                f"migration {label}: stage = {stage!r} is not a django-syzygy stage; use "
                f"Stage.PRE_DEPLOY or Stage.POST_DEPLOY, or set {MARK_ATTRIBUTE}"
            )
            raise ConfigError(message)
        return phase, "syzygy"
    return None


def _safemigrate_phase(value: object) -> DeployPhase | None:
    # The first releases took True (before deploy) and False (after deploy).
    if isinstance(value, bool):
        return DeployPhase.PRE_DEPLOY if value else DeployPhase.POST_DEPLOY
    # Current releases: Safe(when=When.AFTER_DEPLOY, delay=...); older ones: Safe.after_deploy,
    # a member of an Enum whose names and values are the words themselves.
    when = getattr(value, "when", value)
    for word in _words(when):
        if word in _SAFEMIGRATE_WORDS:
            return _SAFEMIGRATE_WORDS[word]
    return None


def syzygy_phase(value: object) -> DeployPhase | None:
    for word in _words(value):
        if word in _SYZYGY_WORDS:
            return _SYZYGY_WORDS[word]
    return None


def _words(value: object) -> list[str]:
    """The names an enum-like mark goes by: its value, its name, or the string itself."""
    candidates: list[object] = [value] if isinstance(value, str) else []
    candidates += [getattr(value, "value", None), getattr(value, "name", None)]
    return [c.lower().replace("-", "_") for c in candidates if isinstance(c, str)]


MARK_SOURCES: dict[MarkedBy, str] = {
    "settings": f"settings.{OVERRIDES_SETTING}",
    "entrypoint": MARK_ATTRIBUTE,
    "safemigrate": "django-safemigrate's safe",
    "syzygy": "django-syzygy's stage",
}
