"""SHA-256 of model files, computed once.

Profiles are tens to hundreds of GB, so every byte is hashed at most once:
while it is copied (when it must be copied at all), or in one read when it is
hard-linked. A :class:`HashJournal` remembers each digest by file identity
(device, inode, size, mtime), so a hard link and its source share one entry,
a re-run after an interruption skips what it already hashed, and a file that
changed since (new mtime or size) is hashed again. :data:`BYTES_HASHED`
counts every payload byte hashed in this process, for the benchmarks.

Every core is used, in two ways, because one thread that reads, hashes and
writes in turn leaves the disk idle while it hashes and the other cores idle
always. Within one large file, :func:`overlapped_pump` reads ahead on one
thread, hashes on the caller's and writes behind on a third, through a few
reused buffers (hashlib and file I/O release the GIL on large buffers), and
asks the kernel to write the copy out as it goes, so that the one fsync at the
end finds little left to do. Across files, :class:`FilePool` works on several
at once; the first failure, or an interrupt, stops the others within one
buffer, and each file is still written atomically (``.incomplete``, fsync,
rename), so what completed is kept for a re-run.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import stat
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from nimrunbook.localdisk import Writeback, atomic_writer, cache_journal_path, state_journal_path
from nimrunbook.progress import Task

CHUNK = 8 * 1024 * 1024
BUFFER = 1024 * 1024  # one buffer of overlapped_pump: small enough to stay in the CPU cache between stages
BUFFERS = 16  # buffers in flight per file: the bound on what read-ahead and write-behind hold
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


class Cancelled(Exception):
    """A hashed read or copy stopped because its ``cancel`` event was set (by a :class:`FilePool` whose other work
    failed, or was interrupted); never reaches a user: the pool raises the failure that caused it."""


T = TypeVar("T")
R = TypeVar("R")


def _regular_size(reader: BinaryIO) -> int | None:
    try:
        info = os.fstat(reader.fileno())
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def overlapped_pump(
    reader: BinaryIO,
    writer: BinaryIO | None,
    digests: Sequence[Digest],
    progress: Task | None = None,
    limit: int | None = None,
    *,
    cancel: threading.Event | None = None,
) -> int:
    """:func:`pump`, with reading, hashing and writing overlapped (see the module docstring); same result, same
    accounting, and never a byte read past ``limit``.

    A source of one buffer or less, or a reader that cannot read into a buffer, goes through :func:`pump` (no
    threads for a small file). Raises :class:`Cancelled` once ``cancel`` is set; an error of the reading or the
    writing thread is raised here, after both have stopped.
    """
    if cancel is not None and cancel.is_set():
        raise Cancelled
    size = _regular_size(reader)
    expected = size if limit is None else (limit if size is None else min(size, limit))
    if (expected is not None and expected <= BUFFER) or not hasattr(reader, "readinto"):
        return pump(reader, writer, digests, progress, limit)
    return _Pipeline(reader, writer, digests, progress, limit, cancel).run()


class _Pipeline:
    """One overlapped pump: a read-ahead thread fills buffers, the caller's thread hashes them in order, a
    write-behind thread writes them in order and hands them back; :data:`BUFFERS` buffers bound the memory."""

    def __init__(
        self,
        reader: BinaryIO,
        writer: BinaryIO | None,
        digests: Sequence[Digest],
        progress: Task | None,
        limit: int | None,
        cancel: threading.Event | None,
    ) -> None:
        self.reader, self.writer, self.digests = reader, writer, digests
        self.progress, self.limit, self.cancel = progress, limit, cancel
        self.free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(BUFFERS):
            self.free.put(bytearray(BUFFER))
        self.filled: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self.to_write: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> int:
        threads = [threading.Thread(target=self._read_ahead, name="nimrunbook-read-ahead", daemon=True)]
        if self.writer is not None:
            threads.append(threading.Thread(target=self._write_behind, name="nimrunbook-write-behind", daemon=True))
        for thread in threads:
            thread.start()
        moved, ended = 0, False
        try:
            while not self.errors:
                item = self.filled.get()
                if item is None:
                    ended = True
                    break
                if self.cancel is not None and self.cancel.is_set():
                    raise Cancelled
                buffer, length = item
                view = memoryview(buffer)[:length]
                for digest in self.digests:
                    digest.update(view)
                moved += length
                _counted(length)
                if self.writer is not None:
                    self.to_write.put(item)
                else:
                    self.free.put(buffer)
                if self.progress:
                    self.progress.advance(length)
        finally:
            self.stop.set()
            self.free.put(bytearray(0))  # wakes the reader if it waits for a buffer; it then sees the stop
            while not ended:
                ended = self.filled.get() is None
            self.to_write.put(None)
            for thread in threads:
                thread.join()
        if self.errors:
            raise self.errors[0]
        return moved

    def _read_ahead(self) -> None:
        remaining = self.limit
        try:
            while remaining is None or remaining > 0:
                buffer = self.free.get()
                if self.stop.is_set():
                    break
                wanted = BUFFER if remaining is None else min(BUFFER, remaining)
                got = self.reader.readinto(memoryview(buffer)[:wanted])
                if not got:
                    break
                if remaining is not None:
                    remaining -= got
                self.filled.put((buffer, got))
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
            self.errors.append(error)
        finally:
            self.filled.put(None)

    def _write_behind(self) -> None:
        writer = self.writer
        assert writer is not None
        writeback = Writeback(writer)
        while (item := self.to_write.get()) is not None:
            buffer, length = item
            if not self.errors:
                try:
                    view = memoryview(buffer)[:length]
                    while view:
                        view = view[writer.write(view) :]
                    writeback.wrote(length)
                except BaseException as error:  # noqa: BLE001 - handed to the caller's thread, which raises it
                    self.errors.append(error)
                    self.stop.set()
            self.free.put(buffer)


MAX_WORKERS = 4  # four files at once hash at 5-6 GB/s with SHA extensions, past what any media reads or writes


def default_workers() -> int:
    """Files worked on at once: one per core, at least two (one file's wait for the disk is another's time to
    hash) and at most :data:`MAX_WORKERS` (more only interleaves writes on the media and holds more buffers)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(MAX_WORKERS, max(2, cores))


class FilePool:
    """Work on several files at once (each through :func:`overlapped_pump` or the functions below, given
    :attr:`cancel`); the first failure, or an interrupt, stops the rest within one buffer."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or default_workers())
        self.cancel = threading.Event()

    def map(self, work: Callable[[T], R], items: Sequence[T], *, size: Callable[[T], int] | None = None) -> list[R]:
        """``work(item)`` for every item, largest first when ``size`` is given (the long ones do not come last);
        results in the order of ``items``. A failure sets :attr:`cancel`, waits for the running work to stop and
        is raised; work not yet started never starts."""
        order = sorted(range(len(items)), key=lambda i: -size(items[i])) if size else list(range(len(items)))
        results: dict[int, R] = {}
        if self.workers == 1 or len(items) <= 1:
            for index in order:
                if self.cancel.is_set():
                    raise Cancelled
                results[index] = work(items[index])
            return [results[i] for i in range(len(items))]
        pool = ThreadPoolExecutor(min(self.workers, len(items)), thread_name_prefix="nimrunbook-file")
        futures: dict[Future[R], int] = {}
        try:
            for index in order:
                futures[pool.submit(work, items[index])] = index
            wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:  # an interrupt while waiting: stop the others before it goes up
            self.cancel.set()
            raise
        finally:
            if any(f.done() and not f.cancelled() and f.exception() for f in futures):
                self.cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
        failures = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
        caused = [e for e in failures if not isinstance(e, Cancelled)]
        if failures:
            raise (caused or failures)[0]
        for future, index in futures.items():
            results[index] = future.result()
        return [results[i] for i in range(len(items))]


def sha256_file(path: Path, progress: Task | None = None, *, cancel: threading.Event | None = None) -> str:
    """Hash a file in one sequential read (read ahead of the hashing)."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as reader:
        overlapped_pump(reader, None, [digest], progress, cancel=cancel)
    return digest.hexdigest()


def copy_and_hash(
    source: Path,
    target: Path,
    progress: Task | None = None,
    *,
    partial: Path | None = None,
    cancel: threading.Event | None = None,
) -> str:
    """Copy ``source`` to ``target`` atomically (see :func:`localdisk.atomic_writer`), hashing on the way.

    One read, one write, overlapped; ``partial`` is where the copy is written until complete.
    """
    digest = hashlib.sha256()
    with open(source, "rb", buffering=0) as reader, atomic_writer(target, partial=partial) as writer:
        overlapped_pump(reader, writer, [digest], progress, cancel=cancel)
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
