"""What Django's migration state says about models and columns, for the readers of a plan.

Shared by the deploy-phase classifier (:mod:`entrypoint.phases`) and the lock notes
(:mod:`entrypoint.plan.locknotes`). Pure: it reads ``ProjectState`` and field paths only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.db.migrations.state import ModelState, ProjectState

#: Field classes stored as varchar everywhere; they differ only in Python-side validation and
#: form widgets, so a change between them keeps the column type.
VARCHAR_FIELDS = frozenset(
    f"django.db.models.{name}"
    for name in (
        "CharField",
        "SlugField",
        "EmailField",
        "URLField",
        "FileField",
        "ImageField",
        "FilePathField",
    )
)
TEXT_FIELD = "django.db.models.TextField"


def model_state(state: ProjectState, app: str, model: str) -> ModelState | None:
    """The state of model ``app.model`` (any case), or None when the state has no such model."""
    return state.models.get((app, model.lower()))


def model_label(state: ProjectState, app: str, model: str) -> str:
    """``app.Model`` as the state spells the model's name (as given when it has none)."""
    found = model_state(state, app, model)
    return f"{app}.{found.name if found is not None else model}"


def state_field(state: ProjectState, app: str, model: str, name: str) -> Any:
    """The field ``name`` of model ``app.model`` in the state (any case), or None."""
    found = model_state(state, app, model)
    if found is None:
        return None
    fields = found.fields
    if name in fields:
        return fields[name]
    return next((f for key, f in fields.items() if key.lower() == name.lower()), None)


def short(path: str) -> str:
    """The class name at the end of a dotted path: ``IntegerField`` for ``...IntegerField``."""
    return path.rsplit(".", 1)[-1]


def class_path(cls: type) -> str:
    """The dotted import path of a class: ``django.db.migrations.operations.fields.AddField``."""
    return f"{cls.__module__}.{cls.__qualname__}"


#: The module path of Django's special operations (RunPython, RunSQL, SeparateDatabaseAndState).
SPECIAL = "django.db.migrations.operations.special."


def callable_name(code: object) -> str:
    return str(getattr(code, "__name__", type(code).__name__))
