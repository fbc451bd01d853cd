"""SHA-256 of model files, computed once.

Profiles are tens to hundreds of GB, so every byte is hashed at most once:
while it is copied (when it must be copied at all), or in one read when it is
hard-linked. A :class:`HashJournal` remembers each digest by file identity
(device, inode, size, mtime), so a hard link and its source share one entry,
a re-run after an interruption skips what it already hashed, and a file that
changed since (new mtime or size) is hashed again. :data:`BYTES_HASHED`
counts every payload byte hashed in this process, for the benchmarks.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Protocol

from nimrunbook.localdisk import atomic_writer, cache_journal_path, state_journal_path
from nimrunbook.progress import Task

CHUNK = 8 * 1024 * 1024
BYTES_HASHED = 0
_count_lock = threading.Lock()


def _counted(amount: int) -> None:
    global BYTES_HASHED
    with _count_lock:
        BYTES_HASHED += amount


class Digest(Protocol):
    def update(self, data: bytes, /) -> None: ...


def pump(
    reader: BinaryIO,
    writer: BinaryIO | None,
    digests: Sequence[Digest],
    progress: Task | None = None,
    limit: int | None = None,
) -> int:
    """Move bytes from ``reader`` to ``writer`` (when given), hashing them into every digest on the way.

    The one loop every hashed read or copy goes through: it counts
    :data:`BYTES_HASHED` and advances ``progress``. Stops at the end of the
    reader or after ``limit`` bytes; returns the number of bytes moved.
    """
    moved = 0
    while limit is None or moved < limit:
        chunk = reader.read(CHUNK if limit is None else min(CHUNK, limit - moved))
        if not chunk:
            break
        for digest in digests:
            digest.update(chunk)
        if writer is not None:
            writer.write(chunk)
        moved += len(chunk)
        _counted(len(chunk))
        if progress:
            progress.advance(len(chunk))
    return moved


def sha256_file(path: Path, progress: Task | None = None) -> str:
    """Hash a file in one sequential read."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as reader:
        pump(reader, None, [digest], progress)
    return digest.hexdigest()


def copy_and_hash(source: Path, target: Path, progress: Task | None = None, *, partial: Path | None = None) -> str:
    """Copy ``source`` to ``target`` atomically (see :func:`localdisk.atomic_writer`), hashing on the way.

    One read, one write; ``partial`` is where the copy is written until complete.
    """
    digest = hashlib.sha256()
    with open(source, "rb", buffering=0) as reader, atomic_writer(target, partial=partial) as writer:
        pump(reader, writer, [digest], progress)
    return digest.hexdigest()


def identity(path: Path) -> str:
    """What makes two paths the same bytes: device, inode, size, mtime (ns)."""
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}"


class HashJournal:
    """An append-only record of digests by file identity; survives interruptions."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._digests: dict[str, str] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self._digests[entry["identity"]] = entry["sha256"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn last line from an interruption

    @classmethod
    def of_cache(cls, cache_dir: str | Path) -> HashJournal:
        """The journal of a NIM cache, shared by every step that reads it (see :mod:`nimrunbook.localdisk`)."""
        return cls(cache_journal_path(cache_dir))

    @classmethod
    def of_directory(cls, directory: str | Path) -> HashJournal:
        """The journal of a directory nimrunbook wrote (a processed profiles directory)."""
        return cls(state_journal_path(directory))

    def lookup(self, path: Path) -> str | None:
        try:
            return self._digests.get(identity(path))
        except FileNotFoundError:
            return None

    def record(self, path: Path, sha256: str) -> None:
        key = identity(path)
        with self._lock:
            self._digests[key] = sha256
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(json.dumps({"identity": key, "sha256": sha256, "path": str(path)}) + "\n")

    def sha256(self, path: Path, progress: Task | None = None) -> str:
        """The journal's digest of ``path``, hashing (and recording) it only when unknown."""
        known = self.lookup(path)
        if known:
            if progress:
                progress.advance(os.stat(path).st_size)
            return known
        digest = sha256_file(path, progress)
        self.record(path, digest)
        return digest


def count_hashed(amount: int) -> None:
    """Count ``amount`` payload bytes hashed outside :func:`pump` (a file hashed as it is sent to S3)."""
    _counted(amount)
