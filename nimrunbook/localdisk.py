"""Local-disk discipline, in one place: atomic writes, free space, where digests are kept, the NIM cache.

Nothing half-written is ever reported as done: every file is written under a
temporary name (``<name>.incomplete``), flushed to the disk (fsync) and renamed
over its target in one step (``os.replace``), so a crash, a full disk or a
pulled drive leaves either the old file or the new one, and a re-run can tell
complete from incomplete by name alone. Free space is checked before large
writes, so a step fails in its first second with what to do, not after an hour
with ENOSPC.

The NIM cache that ``download-to-cache`` fills is laid out the way the Hugging
Face hub lays out its cache (``huggingface_hub``'s cache manager reads the
same tree; its records are the model for :class:`CachedRepo`,
:class:`CachedRevision` and :class:`CachedFile`)::

    <cache>/ngc/hub/models--<org>--<team>--<model>/
        blobs/<digest>              the bytes, one file each
        refs/<tag>
        snapshots/<tag>/<file>      a symlink to ../../blobs/<digest>
    <cache>/ngc/hub/tmp/            files being downloaded (not content)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from nimrunbook.errors import DiskSpaceError, InputError
from nimrunbook.progress import human_bytes

INCOMPLETE_SUFFIX = ".incomplete"
STATE_DIR = ".nimrunbook"  # our bookkeeping inside a directory we write (never shipped as payload)
CACHE_JOURNAL_NAME = ".nimrunbook-sha256.jsonl"
STATE_JOURNAL_NAME = "sha256.jsonl"
WRITEBACK_STEP = 32 * 1024 * 1024  # a long write asks for writeback this often (see start_writeback)


# -- atomic writes ----------------------------------------------------------------------------


def partial_path(target: Path) -> Path:
    """Where ``target`` is written until it is complete."""
    return target.with_name(target.name + INCOMPLETE_SUFFIX)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (the entry, not only the data)."""
    try:
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # some filesystems (and platforms) do not open directories
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def commit(partial: Path, target: Path) -> None:
    """Rename a complete ``partial`` over ``target`` in one step, durably."""
    os.replace(partial, target)
    _fsync_directory(target.parent)


@contextmanager
def atomic_writer(target: str | Path, mode: str = "wb", *, partial: Path | None = None) -> Iterator[IO]:
    """Write ``target`` through a handle on its ``.incomplete`` file; renamed over it only when complete.

    ``partial`` places the temporary file elsewhere on the same filesystem
    (e.g. in a state folder, so a half-written file never sits in a folder
    that is shipped). If the block raises, the partial file is removed and
    ``target`` is untouched.
    """
    target = Path(target)
    partial = partial or partial_path(target)
    handle = open(partial, mode)  # noqa: SIM115 - closed below on every path
    try:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())
    except BaseException:
        handle.close()
        partial.unlink(missing_ok=True)
        raise
    handle.close()
    commit(partial, target)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Have the kernel start writing ``length`` bytes at ``offset`` of ``fd`` to the disk now, without waiting.

    A large copy otherwise sits in the page cache until its fsync (Linux starts writing back only past a tenth of
    memory), and the fsync then writes it all while nothing is read; started as the copy goes, the writing
    overlaps the reading and the fsync finds little left. ``POSIX_FADV_DONTNEED`` is how Python asks for it
    (Linux starts writeback of the range's dirty pages, and drops only pages already clean); a no-op where the
    platform or filesystem does not support it. Durability still comes from the fsync alone.
    """
    advise = getattr(os, "posix_fadvise", None)
    if advise is None:
        return
    with contextlib.suppress(OSError):  # a filesystem that takes no advice: the fsync writes it all, as before
        advise(fd, offset, length, os.POSIX_FADV_DONTNEED)


class Writeback:
    """Starts the writeback of a file as it is written (see :func:`start_writeback`): tell it what was written."""

    def __init__(self, handle: IO) -> None:
        try:
            self.fd: int | None = handle.fileno()
            self.start = handle.tell()
        except (AttributeError, OSError, ValueError):  # not a file on a disk: nothing to advise
            self.fd, self.start = None, 0
        self.written = self.advised = 0

    def wrote(self, amount: int) -> None:
        self.written += amount
        if self.fd is not None and self.written - self.advised >= WRITEBACK_STEP:
            start_writeback(self.fd, self.start + self.advised, self.written - self.advised)
            self.advised = self.written


@contextmanager
def writeback_while_written(directory: str | Path, every: float = 0.2) -> Iterator[None]:
    """While another program (skopeo) writes large files into ``directory``, start their writeback as they grow.

    Such a program's copy would otherwise sit in the page cache until its fsync at the end of each file, which
    then writes while nothing is downloaded or hashed. Every ``every`` seconds a thread looks at the regular files
    directly in ``directory`` (skopeo writes each blob there under a temporary name) and advises the kernel of
    what each grew by; it reads and writes nothing, and a file it cannot open is passed over.
    """
    stop = threading.Event()
    watcher = threading.Thread(
        target=_advise_growing_files, args=(Path(directory), stop, every), name="nimrunbook-writeback", daemon=True
    )
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


def _advise_growing_files(directory: Path, stop: threading.Event, every: float) -> None:
    advised: dict[tuple[str, int], int] = {}  # (name, inode) -> bytes advised so far; an inode may be reused
    while not stop.wait(every):
        try:
            entries = list(os.scandir(directory))
        except OSError:  # not made yet, or gone
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
                key = (entry.name, info.st_ino)
                done = advised.get(key, 0)
                if not stat.S_ISREG(info.st_mode) or info.st_size - done < WRITEBACK_STEP:
                    continue
                fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # renamed or removed meanwhile
                continue
            try:
                start_writeback(fd, done, info.st_size - done)
                advised[key] = info.st_size
            finally:
                os.close(fd)


def write_text_atomic(target: str | Path, text: str) -> None:
    """``target`` holds ``text`` completely, or is left as it was."""
    with atomic_writer(target, "w") as handle:
        handle.write(text)


# -- free space -------------------------------------------------------------------------------


def free_bytes(directory: str | Path) -> int:
    """Free bytes on the filesystem that holds ``directory`` (or its nearest existing parent)."""
    path = Path(directory).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def require_free_space(directory: str | Path, needed: int, *, what: str, hint: str) -> None:
    """Raise :class:`DiskSpaceError` when ``directory`` has less than ``needed`` bytes free.

    ``what`` names the work in the message ("The download"); ``hint`` says
    what to do (free space, another disk, and that a re-run keeps what is done).
    """
    if needed <= 0:
        return
    free = free_bytes(directory)
    if needed > free:
        raise DiskSpaceError(
            f"{what} needs {human_bytes(needed)} in {directory}, which has {human_bytes(free)} free.", hint=hint
        )


# -- staging --------------------------------------------------------------------------------------------


@contextmanager
def staging_folder(staging_dir: str | Path | None, media: Path, what: str = "the bundle") -> Iterator[Path]:
    """A fresh private folder (removed afterwards) under ``staging_dir`` or the system's temporary folder, for
    what an import must write; never inside ``media`` (``what`` names it), which is often read-only."""
    parent = Path(staging_dir) if staging_dir else Path(tempfile.gettempdir())
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"Cannot make the staging folder {parent}: {exc.strerror}.") from exc
    if Path(os.path.realpath(parent)).is_relative_to(os.path.realpath(media)):
        raise InputError(
            f"The staging folder {parent} lies inside {what} {media}.",
            hint="Stage outside the media (--staging-dir /var/tmp/nim-staging); the import never writes to it.",
        )
    folder = Path(tempfile.mkdtemp(prefix="nimrunbook-staging-", dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- where digests are kept -------------------------------------------------------------------


def cache_journal_path(cache_dir: str | Path) -> Path:
    """The hash journal of a NIM cache: shared by every step that reads the cache (and its hard links)."""
    return Path(cache_dir) / CACHE_JOURNAL_NAME


def state_journal_path(directory: str | Path) -> Path:
    """The hash journal of a directory we write (a processed profiles directory)."""
    return Path(directory) / STATE_DIR / STATE_JOURNAL_NAME


# -- the NIM cache ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedFile:
    """One file of a snapshot: the link NIM reads, and the blob holding its bytes."""

    name: str  # relative to the snapshot: "config.json", "trtllm_engine/rank0.engine"
    link: Path
    blob: Path | None  # None: the link is broken (a download that did not finish)
    size: int  # bytes of the blob; 0 when broken


@dataclass(frozen=True)
class CachedRevision:
    """One ``snapshots/<tag>`` folder: the files of one manifest URI tag."""

    tag: str
    path: Path
    files: tuple[CachedFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    def file(self, name: str) -> CachedFile | None:
        return next((f for f in self.files if f.name == name), None)


@dataclass(frozen=True)
class CachedRepo:
    """One ``models--<org>--<team>--<model>`` folder."""

    folder: str
    path: Path
    revisions: tuple[CachedRevision, ...]
    blob_files: int
    blob_bytes: int


@dataclass(frozen=True)
class CacheInfo:
    root: Path
    repos: tuple[CachedRepo, ...]

    @property
    def files(self) -> int:
        return sum(r.blob_files for r in self.repos)

    @property
    def bytes(self) -> int:
        return sum(r.blob_bytes for r in self.repos)


def _blobs(blobs_dir: Path) -> tuple[int, int]:
    files = total = 0
    if blobs_dir.is_dir():
        for entry in os.scandir(blobs_dir):
            if entry.is_file(follow_symlinks=False):
                files += 1
                total += entry.stat(follow_symlinks=False).st_size
    return files, total


def _snapshot_files(snapshot: Path) -> tuple[CachedFile, ...]:
    files = []
    for link in sorted(p for p in snapshot.rglob("*") if p.is_symlink() or p.is_file()):
        try:
            blob = link.resolve(strict=True)
            found: Path | None = blob if blob.is_file() else None
        except (FileNotFoundError, RuntimeError):
            found = None
        files.append(
            CachedFile(link.relative_to(snapshot).as_posix(), link, found, found.stat().st_size if found else 0)
        )
    return tuple(files)


class NimCache:
    """A NIM cache directory (``NIM_CACHE_PATH``), read as typed records; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hub = self.root / "ngc" / "hub"

    def usage(self) -> tuple[int, int]:
        """(files, bytes) of downloaded content (blobs); files being downloaded (under tmp/) excluded.

        Cheap (one directory listing per model), so it can be polled for progress.
        """
        files = total = 0
        if self.hub.is_dir():
            for model in self.hub.iterdir():
                if model.name.startswith("models--"):
                    counted = _blobs(model / "blobs")
                    files, total = files + counted[0], total + counted[1]
        return files, total

    def revision(self, folders: Sequence[str], tag: str) -> CachedRevision | None:
        """The snapshot ``tag`` of the first of ``folders`` (spellings of one model) that has it."""
        for folder in folders:
            snapshot = self.hub / folder / "snapshots" / tag
            if snapshot.is_dir():
                return CachedRevision(tag, snapshot, _snapshot_files(snapshot))
        return None

    def blob_of(self, folders: Sequence[str], tag: str | None, name: str) -> Path | None:
        """The blob holding file ``name`` of snapshot ``tag`` (any snapshot when None); None when absent or broken.

        Looks up only that one path, so planning thousands of files costs one stat each.
        """
        for folder in folders:
            snapshots = self.hub / folder / "snapshots"
            candidates = [snapshots / tag / name] if tag else list(snapshots.glob(f"*/{name}"))
            for link in candidates:
                try:
                    blob = link.resolve(strict=True)
                except (OSError, RuntimeError):  # absent, a loop, a file where a folder should be, unreadable
                    continue
                if blob.is_file():
                    return blob
        return None

    def scan(self) -> CacheInfo:
        """Every model, snapshot and file of the cache (what ``huggingface-cli scan-cache`` would list)."""
        repos = []
        if self.hub.is_dir():
            for model in sorted(self.hub.iterdir()):
                if not model.name.startswith("models--"):
                    continue
                snapshots = model / "snapshots"
                revisions = tuple(
                    CachedRevision(s.name, s, _snapshot_files(s))
                    for s in (sorted(snapshots.iterdir()) if snapshots.is_dir() else [])
                    if s.is_dir()
                )
                repos.append(CachedRepo(model.name, model, revisions, *_blobs(model / "blobs")))
        return CacheInfo(self.root, tuple(repos))
