"""One writer at a time: exclusive, non-blocking locks on folders and files.

A second nimrunbook process about to write the same bundle folder, run folder
or values file is refused at once, told who holds the lock, instead of waiting
behind a transfer that may take hours or interleaving its writes with the
first one's (two merges into one values file lost the original).

The locks are flock(2) locks, which the kernel drops when the holder exits,
however it exits (SIGKILL, a pulled power cord): there is never a stale lock to
find and remove by hand. A folder is locked through its own descriptor, which
works on read-only media (an import reads its bundle from a read-only mount)
and leaves nothing in the folder; where a file system cannot lock a folder
(some NFS servers), a ``.nimrunbook.lock`` file in it is locked instead. A file
is locked through ``<name>.lock`` beside it, because the file itself is
replaced (renamed over) on every write. Who holds a lock is read from
/proc/locks, so nothing has to be written to say it. Locks are re-entrant
within one process: a step that holds its run folder may lock it again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nimrunbook.errors import LockedError
from nimrunbook.redact import redact

FALLBACK_LOCK_NAME = ".nimrunbook.lock"
LOCK_SUFFIX = ".lock"
_CANNOT_LOCK_FOLDER = (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)
_held: dict[tuple[int, int], list[int]] = {}  # (device, inode) -> [descriptor, depth]
_held_guard = threading.Lock()


@dataclass
class Holder:
    """The process holding a lock, as far as /proc tells."""

    pid: int
    started: str | None = None
    command: str | None = None

    def describe(self) -> str:
        facts = [f"pid {self.pid}"]
        if self.started:
            facts.append(f"started at {self.started}")
        if self.command:
            facts.append(f"`{self.command}`")
        return ", ".join(facts)


def _started(pid: int) -> str | None:
    """The process's start time (UTC) from /proc: boot time plus its start in clock ticks."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
        )
        started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))


def _command(pid: int) -> str | None:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").split("\0")
    except OSError:
        return None
    text = " ".join(" ".join(argv[:6]).split())  # one line, however the arguments were written
    return redact(text if len(text) <= 120 else text[:117] + "...") or None


def holder(descriptor: int) -> Holder | None:
    """Who holds the flock of the file behind ``descriptor``, from /proc/locks (None when it cannot tell)."""
    info = os.fstat(descriptor)
    wanted = (os.major(info.st_dev), os.minor(info.st_dev), info.st_ino)
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()  # 1: FLOCK  ADVISORY  WRITE 6705 fe:00:2147797 0 EOF
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            found = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if found == wanted and pid > 0:
            return Holder(pid, _started(pid), _command(pid))
    return None


@contextmanager
def _holding(descriptor: int, target: Path, doing: str) -> Iterator[None]:
    info = os.fstat(descriptor)
    key = (info.st_dev, info.st_ino)
    with _held_guard:
        if key in _held:  # this process holds it already
            _held[key][1] += 1
            os.close(descriptor)
        else:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                who = holder(descriptor)
                os.close(descriptor)
                raise LockedError(
                    f"Another nimrunbook process ({who.describe() if who else 'pid unknown'}) is {doing} {target}.",
                    hint="Wait for it to finish, or stop it if it is stuck"
                    + (f" (kill {who.pid})" if who else "")
                    + "; its lock goes away with it, so there is nothing to clean up. Then run this again.",
                ) from exc
            except BaseException:
                os.close(descriptor)
                raise
            _held[key] = [descriptor, 1]
    try:
        yield
    finally:
        with _held_guard:
            entry = _held[key]
            entry[1] -= 1
            if entry[1] == 0:
                del _held[key]
                os.close(entry[0])  # closing the last descriptor releases the flock


def _open_lock_file(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


@contextmanager
def folder_lock(folder: str | Path, doing: str) -> Iterator[None]:
    """Hold ``folder`` (which must exist) exclusively while the block runs.

    ``doing`` completes the refusal a second process gets: "Another nimrunbook process (pid N, started
    at T) is <doing> <folder>."
    """
    target = Path(folder)
    descriptor = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)  # can this file system lock a folder at all?
        fcntl.flock(descriptor, fcntl.LOCK_UN)
    except BlockingIOError:
        pass  # held exclusively by someone: _holding names them
    except OSError as exc:
        os.close(descriptor)
        if exc.errno not in _CANNOT_LOCK_FOLDER:
            raise
        descriptor = _open_lock_file(target / FALLBACK_LOCK_NAME)
    with _holding(descriptor, target, doing):
        yield


@contextmanager
def file_lock(file: str | Path, doing: str) -> Iterator[None]:
    """Hold ``file`` exclusively while the block runs, through ``<file>.lock`` beside it (left in place: removing
    a lock file races with the next process to open it)."""
    target = Path(file)
    with _holding(_open_lock_file(target.with_name(target.name + LOCK_SUFFIX)), target, doing):
        yield
