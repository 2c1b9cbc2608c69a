"""The answers of the fast-path check: a doubt (the manifest cannot vouch), pending work, or a
verdict.
"""

from __future__ import annotations

from typing import NamedTuple


class Doubt(Exception):
    """The manifest cannot vouch for this start; the message says why."""


class Pending(Exception):
    """There is work to do, or another replica is at it: the full path follows, no doubt."""


class Verdict(NamedTuple):
    """The answer of :func:`check` on one start."""

    nothing_to_do: bool
    reason: str = ""
    # True when the manifest could not vouch (as opposed to: there is work to do).
    doubt: bool = False
    files: int = 0
    databases: tuple[str, ...] = ()
    django_version: str = ""
