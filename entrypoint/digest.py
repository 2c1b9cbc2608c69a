"""SHA-256 for the no-op fast path: the interpreter's own implementation where there is one.

``hashlib`` loads OpenSSL's library to offer its hashes, which costs a start more than all the
hashing the fast path does (a settings key, a lock key, a few files at most); the built-in
module (``_sha2``, ``_sha256`` before Python 3.12) computes the same digests.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from entrypoint.light import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def _constructor() -> Callable[[bytes], Any]:
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    from hashlib import sha256

    return sha256


_sha256 = _constructor()


def hexdigest(data: bytes) -> str:
    """The SHA-256 of ``data``, in hexadecimal."""
    return str(_sha256(data).hexdigest())


def digest(data: bytes) -> bytes:
    """The SHA-256 of ``data``."""
    return bytes(_sha256(data).digest())
