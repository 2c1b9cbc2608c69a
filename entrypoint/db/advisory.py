"""PostgreSQL advisory lock keys, derived from lock names without the driver (the fast path
asks about the lock without importing psycopg)."""

from __future__ import annotations

from entrypoint import digest


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key derived from a lock name."""
    value = digest.digest(f"django-entrypoint:{name}".encode())
    return int.from_bytes(value[:8], "big", signed=True)


def key_halves(key: int) -> tuple[int, int]:
    """The high and low 32 bits of an advisory key, as pg_locks shows them."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF
