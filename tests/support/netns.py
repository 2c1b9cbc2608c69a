"""A host of the tests' own that can be cut off from the database: a network namespace joined
to this host by a veth pair (``ip netns``, root only).

The namespace gets ``10.<a>.<b>.2`` and this host ``10.<a>.<b>.1`` on a /30 of its own; a server
listening on the host address is reached from inside. :meth:`Namespace.cut` takes the host's end
of the pair down, so packets are dropped in both directions without any reset, as when a host
vanishes; :meth:`Namespace.restore` brings the link back.
"""

from __future__ import annotations

import random
import subprocess
from types import TracebackType


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Namespace:
    """A network namespace with a veth link to this host; a context manager that removes it."""

    def __init__(self) -> None:
        tag = f"{random.randrange(16**6):06x}"
        self.name = f"ep{tag}"
        self.host_end = f"eh{tag}"
        self.inner_end = f"en{tag}"
        base = f"10.{random.randrange(64, 250)}.{random.randrange(256)}"
        last = random.randrange(64) * 4
        self.network = f"{base}.{last}/30"
        self.host_address = f"{base}.{last + 1}"
        self.inner_address = f"{base}.{last + 2}"

    def __enter__(self) -> Namespace:
        """Make the namespace and the link, both ends up."""
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.inner_end)
            _ip("link", "set", self.inner_end, "netns", self.name)
            _ip("addr", "add", f"{self.host_address}/30", "dev", self.host_end)
            _ip("link", "set", self.host_end, "up")
            inside = ("netns", "exec", self.name, "ip")
            _ip(*inside, "addr", "add", f"{self.inner_address}/30", "dev", self.inner_end)
            _ip(*inside, "link", "set", self.inner_end, "up")
            _ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Remove the link and the namespace."""
        subprocess.run(["ip", "link", "delete", self.host_end], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)

    @property
    def prefix(self) -> list[str]:
        """The argv prefix that runs a command inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Drop every packet between the namespace and this host (no reset is sent)."""
        _ip("link", "set", self.host_end, "down")

    def restore(self) -> None:
        """Bring the link back."""
        _ip("link", "set", self.host_end, "up")
