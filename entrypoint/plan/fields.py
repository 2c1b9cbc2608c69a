"""What a field change means to old code still running: the field diff behind ``AlterField``."""

from __future__ import annotations

from typing import Any

from entrypoint.plan.state import (
    TEXT_FIELD,
    VARCHAR_FIELDS,
    short,
)
from entrypoint.plan.types import DeployPhase

_INTEGER_RANKS = {
    "django.db.models.SmallIntegerField": (1, False),
    "django.db.models.IntegerField": (2, False),
    "django.db.models.BigIntegerField": (3, False),
    "django.db.models.PositiveSmallIntegerField": (1, True),
    "django.db.models.PositiveIntegerField": (2, True),
    "django.db.models.PositiveBigIntegerField": (3, True),
    "django.db.models.SmallAutoField": (11, False),
    "django.db.models.AutoField": (12, False),
    "django.db.models.BigAutoField": (13, False),
}


# Keyword arguments that never reach the column definition.
_PYTHON_ONLY = {
    "default",
    "auto_now",
    "auto_now_add",
    "upload_to",
    "storage",
    "unique_for_date",
    "unique_for_month",
    "unique_for_year",
    "swappable",
    "symmetrical",
    "parent_link",
    "through_fields",
    "protocol",
    "unpack_ipv4",
    "path",
    "match",
    "recursive",
    "allow_files",
    "allow_folders",
    "width_field",
    "height_field",
    "encoder",
    "decoder",
}


# Keyword arguments judged one by one below.
_JUDGED = {
    "null",
    "max_length",
    "max_digits",
    "decimal_places",
    "primary_key",
    "unique",
    "db_index",
    "db_default",
    "db_column",
    "db_collation",
    "db_comment",
    "db_tablespace",
    "to",
    "to_field",
    "db_constraint",
    "through",
    "db_table",
}


Change = tuple[DeployPhase, str, bool]


_MISSING = object()


def field_changes(
    name: str, old: Any, new: Any, *, retyped: bool | None = None, judge_unknown: bool = True
) -> list[Change]:
    """What altering field ``name`` from ``old`` to ``new`` changes in the database.

    Each change is (phase, description, caution). An empty list means only Python-side
    attributes changed (help_text, choices, validators, verbose_name, default, ...). Widening
    a column (longer varchar, varchar to text, a larger integer, more decimal digits) is
    pre-deploy: old code's values still fit and new code may need the room at once.

    ``retyped`` is what the operation's collected SQL says: False when it changes no column
    type, so a change of field class (a ``ForeignKey`` and a subclass of it) keeps the column;
    None when no SQL is known. With ``judge_unknown`` False, attributes not known here are left
    to the caller (who reads the SQL instead; see :func:`unknown_attributes`).
    """
    diff = _FieldDiff(name, old, new)
    diff.retyped, diff.judge_unknown = retyped, judge_unknown
    return diff.changes()


def unknown_attributes(name: str, old: Any, new: Any) -> list[str]:
    """The attributes that differ between ``old`` and ``new`` and are not judged here."""
    return _FieldDiff(name, old, new).unknown_keys()


class _FieldDiff:
    """Compares two versions of one field, attribute by attribute."""

    def __init__(self, name: str, old: Any, new: Any) -> None:
        self.name, self.old, self.new = name, old, new
        _, self.old_path, self.old_args, self.old_kwargs = old.deconstruct()
        _, self.new_path, self.new_args, self.new_kwargs = new.deconstruct()
        self.found: list[Change] = []
        self.retyped: bool | None = None
        self.judge_unknown = True

    def pre(self, text: str, *, caution: bool = False) -> None:
        self.found.append((DeployPhase.PRE_DEPLOY, text, caution))

    def post(self, text: str) -> None:
        self.found.append((DeployPhase.POST_DEPLOY, text, False))

    def changes(self) -> list[Change]:
        if self.same_column_type():
            self.length()
            self.decimals()
        self.nullability()
        self.keys_and_indexes()
        self.database_default()
        self.column()
        self.relation()
        self.unknown()
        return self.found

    def same_column_type(self) -> bool:
        """Record a change of field class; True when both classes share a column type."""
        old_path, new_path = self.old_path, self.new_path
        if old_path == new_path or {old_path, new_path} <= VARCHAR_FIELDS:
            return True
        arrow = f"{short(old_path)} to {short(new_path)}"
        if self.retyped is False:
            self.pre(f"{arrow} keeps the column type (its SQL changes no type)")
            return True
        if old_path in VARCHAR_FIELDS and new_path == TEXT_FIELD:
            self.pre(f"widens {arrow}")
            return False
        if _widens_integer(old_path, new_path):
            self.pre(f"widens {arrow}")
            return False
        self.post(f"changes the column type from {arrow}, which old code reads and writes")
        return False

    def length(self) -> None:
        if self.new_path == TEXT_FIELD:  # max_length of a TextField is a form hint only
            return
        before = getattr(self.old, "max_length", None)
        after = getattr(self.new, "max_length", None)
        if before == after:
            return
        if after is None or (before is not None and after > before):
            self.pre(f"raises max_length from {before} to {after or 'unlimited'}")
        else:
            shown = before or "unlimited"
            self.post(
                f"lowers max_length from {shown} to {after}; old code may write longer values"
            )

    def decimals(self) -> None:
        digits, places = _digits(self.old)
        new_digits, new_places = _digits(self.new)
        if digits is None or places is None or new_digits is None or new_places is None:
            return
        if (digits, places) == (new_digits, new_places):
            return
        text = f"max_digits/decimal_places from {digits}/{places} to {new_digits}/{new_places}"
        if new_places >= places and new_digits - new_places >= digits - places:
            self.pre(f"widens {text}")
        else:
            self.post(f"narrows {text}; old code may write values that no longer fit")

    def nullability(self) -> None:
        if self.old.null and not self.new.null:
            self.post("makes the column NOT NULL; old code may still write NULL")
        elif self.new.null and not self.old.null:
            self.pre("makes the column nullable")

    def keys_and_indexes(self) -> None:
        old, new = self.old, self.new
        if old.primary_key != new.primary_key:
            self.post("changes the primary key, which old code relies on")
            return
        old_unique, new_unique = getattr(old, "_unique", False), getattr(new, "_unique", False)
        if new_unique and not old_unique:
            text = (
                "adds a unique constraint, which fails on existing duplicates and rejects "
                "duplicate writes from old code"
            )
            self.pre(text, caution=True)
        elif old_unique and not new_unique:
            self.pre("drops the unique constraint")
        if new.db_index and not old.db_index:
            self.pre("adds an index")
        elif old.db_index and not new.db_index:
            self.pre("drops an index")

    def database_default(self) -> None:
        before = self.old_kwargs.get("db_default", _MISSING)
        after = self.new_kwargs.get("db_default", _MISSING)
        if before == after:
            return
        if before is _MISSING:
            self.pre("adds a database default")
        elif after is not _MISSING:
            self.pre("changes the database default")
        elif self.new.null:
            self.pre("drops the database default")
        else:
            self.post("drops the database default of a NOT NULL column, which old code relies on")

    def column(self) -> None:
        before, after = self.old.db_column or self.name, self.new.db_column or self.name
        if before != after:
            self.post(f"renames the column from {before} to {after}, which old code uses")
        if self._differs("db_comment"):
            self.pre("changes the column comment")
        if self._differs("db_tablespace"):
            self.pre("changes the tablespace")
        if self._differs("db_collation"):
            text = "changes the collation, so ordering and comparisons change for old code too"
            self.pre(text, caution=True)

    def relation(self) -> None:
        was, becomes = self.old_kwargs.get("to"), self.new_kwargs.get("to")
        if was and not becomes:
            self.post("is no longer a relation, which old code follows")
        elif becomes and not was:
            self.post("becomes a relation, which changes what old code reads")
        elif any(
            str(self.old_kwargs.get(key, "")).lower() != str(self.new_kwargs.get(key, "")).lower()
            for key in ("to", "to_field")
        ):
            self.post("points the relation elsewhere, which changes what old code reads")
        if self._differs("through") or self._differs("db_table"):
            self.post("changes the many-to-many table, which old code uses")
        before = self.old_kwargs.get("db_constraint", True)
        after = self.new_kwargs.get("db_constraint", True)
        if after and not before:
            text = (
                "adds a foreign key constraint, which fails on dangling rows and rejects such "
                "writes from old code"
            )
            self.pre(text, caution=True)
        elif before and not after:
            self.pre("drops the foreign key constraint")

    def unknown_keys(self) -> list[str]:
        ignored = _PYTHON_ONLY | _JUDGED | set(self.old.non_db_attrs) | set(self.new.non_db_attrs)
        keys = set(self.old_kwargs) | set(self.new_kwargs)
        other = sorted(key for key in keys - ignored if self._differs(key))
        if self.old_args != self.new_args:
            other.insert(0, "positional arguments")
        return other

    def unknown(self) -> None:
        other = self.unknown_keys()
        if other and self.judge_unknown:
            self.post(f"changes {', '.join(other)}, not known to be safe for old code")

    def _differs(self, key: str) -> bool:
        return bool(self.old_kwargs.get(key, _MISSING) != self.new_kwargs.get(key, _MISSING))


def _widens_integer(old_path: str, new_path: str) -> bool:
    """An integer column that gets larger and is not newly restricted to positive values."""
    old, new = _INTEGER_RANKS.get(old_path), _INTEGER_RANKS.get(new_path)
    if old is None or new is None or old[0] // 10 != new[0] // 10:
        return False
    return new[0] >= old[0] and (old[1] or not new[1])


def _digits(field: Any) -> tuple[int | None, int | None]:
    return getattr(field, "max_digits", None), getattr(field, "decimal_places", None)
