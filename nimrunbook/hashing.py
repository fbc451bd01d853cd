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
from pathlib import Path

from nimrunbook.progress import Task

CHUNK = 8 * 1024 * 1024
BYTES_HASHED = 0
_count_lock = threading.Lock()


def _counted(amount: int) -> None:
    global BYTES_HASHED
    with _count_lock:
        BYTES_HASHED += amount


def sha256_file(path: Path, progress: Task | None = None) -> str:
    """Hash a file in one sequential read."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            _counted(len(chunk))
            if progress:
                progress.advance(len(chunk))
    return digest.hexdigest()


def copy_and_hash(source: Path, target: Path, progress: Task | None = None) -> str:
    """Copy ``source`` to ``target`` and hash the bytes on the way; one read, one write."""
    digest = hashlib.sha256()
    with open(source, "rb", buffering=0) as reader, open(target, "wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            _counted(len(chunk))
            if progress:
                progress.advance(len(chunk))
        writer.flush()
        os.fsync(writer.fileno())
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
