"""The answers of the fast-path check: a doubt (the manifest cannot vouch), pending work, or a
verdict.
"""

from __future__ import annotations

from entrypoint.light import NamedTuple


class Doubt(Exception):
    """The manifest cannot vouch for this start; the message says why."""


class Unreachable(Doubt):
    """The database did not answer the query (not up yet, refused): the full path waits."""


class Pending(Exception):
    """There is work to do, or another replica is at it: the full path follows, no doubt."""


class Locked(Pending):
    """Another replica holds the migration lock: it may still be migrating."""


class Verdict(NamedTuple):
    """The answer of :func:`check` on one start."""

    nothing_to_do: bool
    reason: str = ""
    # True when the manifest could not vouch (as opposed to: there is work to do).
    doubt: bool = False
    files: int = 0
    databases: tuple[str, ...] = ()
    django_version: str = ""
    #: Where the manifest came from: ``file`` (freeze) or ``database`` (recorded by a run).
    source: str = "file"
    #: True when another replica held the migration lock.
    locked: bool = False
    #: True when a database did not answer (the full path's wait then decides).
    unreachable: bool = False
