"""Writing files to removable media: atomically, resumably, split into parts when the media needs it.

FAT32 holds no file of 4 GiB or more, and model weights are often larger, so
large files can be split into numbered parts, each hashed. A part or file is
written under a temporary name and renamed when complete; a record of what is
complete lets a re-run (after the drive was pulled) skip it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from nimrunbook import hashing
from nimrunbook.bundle.confine import BundleDir
from nimrunbook.errors import VerificationError
from nimrunbook.localdisk import atomic_writer
from nimrunbook.progress import Task

FAT32_PART_SIZE = 4 * 1024**3 - 1


@dataclass
class WrittenFile:
    """A file as it sits on the media: whole, or as parts (``parts`` then lists each)."""

    path: str  # relative to the bundle root
    size: int
    sha256: str
    parts: list[dict] = field(default_factory=list)  # [{"path", "size", "sha256"}]

    def as_dict(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "parts": self.parts}


class WriteRecord:
    """Append-only record of completed files; survives a pulled drive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.done: dict[str, dict] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.done[entry["path"]] = entry
                except (ValueError, KeyError, TypeError):
                    continue

    def complete(self, root: Path, relative: str) -> WrittenFile | None:
        entry = self.done.get(relative)
        if not entry:
            return None
        files = [entry["path"]] if not entry["parts"] else [p["path"] for p in entry["parts"]]
        sizes = [entry["size"]] if not entry["parts"] else [p["size"] for p in entry["parts"]]
        for name, size in zip(files, sizes, strict=True):
            target = root / name
            if not target.exists() or target.stat().st_size != size:
                return None
        return WrittenFile(entry["path"], entry["size"], entry["sha256"], entry["parts"])

    def add(self, written: WrittenFile) -> None:
        with self._lock:
            self.done[written.path] = written.as_dict()
            with open(self.path, "a") as handle:
                handle.write(json.dumps(written.as_dict()) + "\n")
                handle.flush()
                os.fsync(handle.fileno())


def part_name(relative: str, index: int) -> str:
    return f"{relative}.part{index:04d}"


def write_file(
    source: Path,
    root: Path,
    relative: str,
    part_size: int | None,
    progress: Task | None,
    *,
    cancel: threading.Event | None = None,
) -> WrittenFile:
    """Copy ``source`` to ``root/relative`` (or its parts), hashing in the same read (overlapped, see
    :func:`hashing.overlapped_pump`); stops with :class:`hashing.Cancelled` once ``cancel`` is set."""
    target = root / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    size = source.stat().st_size
    if not part_size or size <= part_size:
        return WrittenFile(relative, size, hashing.copy_and_hash(source, target, progress, cancel=cancel))
    whole = hashlib.sha256()
    parts: list[dict] = []
    with open(source, "rb", buffering=0) as reader:
        for index in range((size + part_size - 1) // part_size):
            name = part_name(relative, index)
            part_hash = hashlib.sha256()
            with atomic_writer(root / name) as writer:
                hashing.overlapped_pump(reader, writer, [whole, part_hash], progress, limit=part_size, cancel=cancel)
            parts.append({"path": name, "size": (root / name).stat().st_size, "sha256": part_hash.hexdigest()})
    return WrittenFile(relative, size, whole.hexdigest(), parts)


def reassemble(root: BundleDir, parts: list[dict], size: int, target: Path, progress: Task | None = None) -> str:
    """Join a split file's parts, read through the bundle's confinement, into ``target`` (outside the bundle:
    the media may be read-only), atomically and never through a file already there; returns its sha256.

    Never writes more than ``size`` bytes: parts longer than the file they make are refused, not joined.
    """
    digest, written = hashlib.sha256(), 0
    with atomic_writer(target, "xb") as writer:
        for part in parts:
            with root.open(part["path"]) as reader:
                written += hashing.overlapped_pump(reader, writer, [digest], progress, limit=size - written)
                longer = reader.read(1)
            if longer:
                raise VerificationError(
                    f"The parts of {target.name} hold more than its {size} bytes: refused.",
                    hint="Do not import this bundle; copy it again from the source media.",
                )
    return digest.hexdigest()
