"""``entrypoint.light.NamedTuple`` makes at run time what ``typing.NamedTuple`` makes: the same
class, field for field, default for default, method for method, without importing ``typing``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import typing

import pytest

from entrypoint import light

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Light(light.NamedTuple):
    """A record of the start."""

    name: str
    count: int = 0
    tags: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether it counts nothing."""
        return self.count == 0

    def described(self, unit: str = "run") -> str:
        return f"{self.name}: {self.count} {unit}(s)"


class Typed(typing.NamedTuple):
    """A record of the start."""

    name: str
    count: int = 0
    tags: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether it counts nothing."""
        return self.count == 0

    def described(self, unit: str = "run") -> str:
        return f"{self.name}: {self.count} {unit}(s)"


def manners(cls: Any) -> dict[str, Any]:
    """What code may rely on in a record class and its instances."""
    one = cls("a", 2, ("x",))
    plain = cls("b")
    name, count, tags = one
    return {
        "fields": cls._fields,
        "defaults": cls._field_defaults,
        # typing wraps each annotation in a ForwardRef; light keeps the text as written.
        "annotations": {
            k: getattr(v, "__forward_arg__", v) for k, v in cls.__annotations__.items()
        },
        "doc": cls.__doc__,
        "match_args": cls.__match_args__,
        "repr": repr(one).replace(cls.__name__, "X"),
        "plain": tuple(plain),
        "unpacked": (name, count, tags),
        "index": one[1],
        "tuple": isinstance(one, tuple),
        "equal": one == ("a", 2, ("x",)),
        "hash": hash(one) == hash(("a", 2, ("x",))),
        "replaced": tuple(one._replace(count=5)),
        "asdict": one._asdict(),
        "made": tuple(cls._make(["c", 3, ()])),
        "property": (one.empty, plain.empty),
        "method": one.described("migration"),
        "keywords": tuple(cls(count=1, name="k")),
        "slots": cls.__slots__,
        "pickled": tuple(pickle.loads(pickle.dumps(one))),  # noqa: S301 - our own bytes
        "immutable": _refuses_assignment(one),
        "module": cls.__module__,
        "qualname": cls.__qualname__.replace(cls.__name__, "X"),
    }


def _refuses_assignment(record: Any) -> bool:
    try:
        record.count = 9
    except AttributeError:
        return True
    return False


def test_the_light_record_has_every_manner_of_the_typing_one() -> None:
    assert manners(Light) == manners(Typed)
    assert Light.__mro__[1:] == (tuple, object)


def test_a_field_without_a_default_after_one_with_a_default_is_refused() -> None:
    with pytest.raises(TypeError, match="field b without a default follows one with a default"):

        class Wrong(light.NamedTuple):
            a: int = 0
            b: int


def test_a_record_without_annotated_fields_is_refused() -> None:
    with pytest.raises(TypeError, match="needs its fields annotated"):

        class Wrong(light.NamedTuple):
            pass


def test_what_namedtuple_defines_may_not_be_replaced() -> None:
    with pytest.raises(AttributeError, match="may not define _replace"):

        class Wrong(light.NamedTuple):
            a: int

            def _replace(self, **changes: Any) -> Wrong:
                return self


def test_a_record_has_no_other_base() -> None:
    with pytest.raises(TypeError, match="NamedTuple as its one base"):

        class Wrong(light.NamedTuple, dict):  # type: ignore[misc]
            a: int


def test_the_start_s_modules_do_not_import_typing() -> None:
    """Every module a waiting replica or a no-op start imports (the records among them) loads
    without ``typing``, ``socket``, ``datetime`` or ``dataclasses``."""
    modules = [
        "entrypoint.cli",
        "entrypoint.cli.commands",
        "entrypoint.pipeline.run",
        "entrypoint.pipeline.holding",
        "entrypoint.fastpath.check",
        "entrypoint.db.wire",
        "entrypoint.db.targets",
        "entrypoint.locks",
        "entrypoint.locks.postgres",
    ]
    code = (
        f"import sys; import {', '.join(modules)}; "
        "from entrypoint.db.targets import application_name; application_name('r'); "
        "print(sorted({'typing', 'socket', 'datetime', 'dataclasses'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
