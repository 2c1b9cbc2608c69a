"""The files behind the migration graph: their records when the manifest is written, and the
check at start that every directory lists the same entries and every file is unchanged (a stat
each; the hash only when the modification time moved).
"""

from __future__ import annotations

import os

from entrypoint import digest
from entrypoint.fastpath.records import FileRecord, Manifest
from entrypoint.fastpath.verdict import Doubt


def file_record(path: str) -> FileRecord:
    """Size, modification time and SHA-256 of one file."""
    stat = os.stat(path)
    return FileRecord(os.path.abspath(path), stat.st_size, stat.st_mtime_ns, sha256_of(path))


def sha256_of(path: str) -> str:
    """The hex SHA-256 of a file's content."""
    with open(path, "rb") as handle:
        return digest.hexdigest(handle.read())


def listing(directory: str) -> tuple[str, ...]:
    """The entries of a migrations directory that could be migrations, sorted.

    Django skips names starting with ``_`` or ``~``; dot files are editor and VCS litter. Any
    other entry counts, so that a file added or removed is noticed whatever its kind.
    """
    return tuple(sorted(name for name in os.listdir(directory) if name[:1] not in "_~."))


def check_files(manifest: Manifest, *, other_host: bool = False) -> int:
    """Raise Doubt unless every file and directory is as it was; return how many were checked.

    A file whose size and modification time (to the nanosecond) are unchanged is taken as
    unchanged; one whose modification time moved (a checkout, a copy) is hashed. For a manifest
    another host may have written (``other_host``: the one kept in the database), a modification
    time vouches only when it is one of a kind: one shared by several files, or without a
    fraction of a second, is what builds that set every file's time alike look like, and the
    file is hashed.
    """
    for package in manifest.packages:
        for directory, entries in package.listings:
            try:
                now = listing(directory)
            except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
                reason = getattr(exc, "strerror", None) or exc
                msg = f"the migrations directory {directory} cannot be listed ({reason})"
                raise Doubt(msg) from exc
            if now != entries:
                added = sorted(set(now) - set(entries))
                removed = sorted(set(entries) - set(now))
                change = ", ".join(
                    [*(f"{n} added" for n in added[:3]), *(f"{n} removed" for n in removed[:3])]
                )
                msg = f"migration files changed in {directory} since the manifest: {change}"
                raise Doubt(msg)
    for path in manifest.absent:
        if os.path.exists(path):
            msg = f"{path} appeared since the manifest was written"
            raise Doubt(msg)
    records = (
        *(p.init for p in manifest.packages),
        *(m.file for m in manifest.migrations),
        *manifest.files,
    )
    vague = vague_times(records) if other_host else frozenset()
    for record in records:
        _check_file(record, record.mtime_ns in vague)
    return manifest.file_count


def vague_times(records: tuple[FileRecord, ...]) -> frozenset[int]:
    """Modification times that say nothing of a file's content: shared by several files, or a
    whole number of seconds."""
    seen: set[int] = set()
    vague: set[int] = set()
    for record in records:
        mtime = record.mtime_ns
        if mtime in seen or mtime % 1_000_000_000 == 0:
            vague.add(mtime)
        seen.add(mtime)
    return frozenset(vague)


def _check_file(record: FileRecord, vague: bool = False) -> None:
    try:
        stat = os.stat(record.path)
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        reason = getattr(exc, "strerror", None) or exc
        msg = f"{record.path} is gone since the manifest was written ({reason})"
        raise Doubt(msg) from exc
    if stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns and not vague:
        return
    try:
        same = stat.st_size == record.size and sha256_of(record.path) == record.sha256
    except OSError as exc:
        msg = f"{record.path} cannot be read ({exc.strerror})"
        raise Doubt(msg) from exc
    if not same:
        msg = f"{record.path} changed since the manifest was written"
        raise Doubt(msg)
