"""What the start's modules take from :mod:`typing`, without importing it.

Every replica pays its imports before it reaches the migration lock, the holder among them:
on a fresh database eight replicas starting together share the CPU until the others park, and
on a no-op start the imports are most of what it costs. Importing ``typing`` and building
``typing.NamedTuple`` classes (each field's annotation checked and turned into a forward
reference) were a tenth of a waiter's work before it parks.

``TYPE_CHECKING`` is False at run time (type checkers treat the name as true); the modules of
the start import what they annotate with under ``if TYPE_CHECKING:``, and define their type
aliases there. ``Protocol`` is :class:`typing.Protocol` for type checkers and a plain base at
run time (nothing checks a protocol at run time here). ``NamedTuple`` is
:class:`typing.NamedTuple` for type checkers, and at run time makes the same class: a
:func:`collections.namedtuple` of the annotated fields (defaults from the class body, which
must follow the fields without one) carrying the body's methods, properties and docstring. The
annotations are kept as written, never evaluated.
"""

from __future__ import annotations

__all__ = ["TYPE_CHECKING", "NamedTuple", "Protocol"]

TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import NamedTuple, Protocol
else:
    from collections import namedtuple

    # The start's protocols only annotate: at run time a plain base does.
    Protocol = object

    # What namedtuple itself defines, which a class body may not replace.
    _OWN = frozenset(
        {"__new__", "__init__", "__slots__", "__getnewargs__", "_make", "_replace", "_asdict"}
        | {"_fields", "_field_defaults"}
    )
    # What comes from the class statement rather than from its body.
    _STATEMENT = frozenset({"__module__", "__qualname__", "__annotations__"})

    class _Fields(type):
        def __new__(cls, name, bases, body):
            if not bases:
                return super().__new__(cls, name, bases, body)
            if bases != (NamedTuple,):
                msg = f"{name}: a NamedTuple class has NamedTuple as its one base"
                raise TypeError(msg)
            annotations = body.get("__annotations__")
            if annotations is None:
                # Annotations the interpreter defers (Python 3.14's, without the __future__
                # import) are not in the class body; the start's modules all import it.
                msg = (
                    f"{name}: a NamedTuple class needs its fields annotated in a module with "
                    "`from __future__ import annotations`"
                )
                raise TypeError(msg)
            fields = list(annotations)
            defaults = []
            for field in fields:
                if field in body:
                    defaults.append(body[field])
                elif defaults:
                    msg = f"{name}: field {field} without a default follows one with a default"
                    raise TypeError(msg)
            made = namedtuple(name, fields, defaults=defaults, module=body["__module__"])
            made.__qualname__ = body.get("__qualname__", name)
            made.__annotations__ = dict(annotations)
            for key, value in body.items():
                if key in _OWN:
                    msg = f"{name}: a NamedTuple class may not define {key}"
                    raise AttributeError(msg)
                if key not in _STATEMENT and key not in annotations:
                    setattr(made, key, value)
            return made

    class NamedTuple(metaclass=_Fields):
        """Base of the start's record classes (see the module's docstring)."""
