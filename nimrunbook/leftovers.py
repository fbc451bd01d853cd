"""Nothing of ours outlives the process that made it: secret files, tool containers, child processes.

A download container keeps NGC_API_KEY in its stored configuration, and
skopeo's auth file holds every registry credential; both must be gone however
the run ends. A normal end and an exception are handled where they are made
(``finally``). A signal (SIGTERM from a scheduler, SIGINT, SIGHUP from a
closed terminal) is turned into :class:`Interrupted` by
:func:`signals_interrupt`, after our child processes (skopeo) are told to stop
and our secret files are unlinked, so the unwinding ``finally`` blocks run
at once. SIGKILL runs nothing, so what it leaves is found by its owner mark
and removed by the next run, which says so: a container carries
:data:`OWNER_LABEL`, a secret file carries its owner in its name, and either
is removed only when that owner process is gone (another run on this host may
be using it right now).

Secret files live in :func:`private_dir` (mode 0700, ours, not a symbolic
link), never loose in the shared temporary folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nimrunbook.errors import NimRunbookError

log = logging.getLogger(__name__)

TOOL_LABEL = "org.nimrunbook.tool"  # on every container we start: which tool runs in it
OWNER_LABEL = "org.nimrunbook.owner"  # "<host> <boot id> <pid> <start ticks>" of the process that made it
PRIVATE_DIR_VARIABLE = "NIMRUNBOOK_PRIVATE_DIR"  # where secret files go, instead of the default below
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

_tracked_files: set[str] = set()
_tracked_guard = threading.Lock()
_stopping = threading.Event()
_swept_files = False
_shield = {"depth": 0, "pending": 0}  # main thread only: a cleanup a signal must not cut short


class Interrupted(KeyboardInterrupt):
    """A signal asked this process to stop; raised in the main thread so every ``finally`` runs.

    A :class:`KeyboardInterrupt`, so ``except Exception`` never swallows it.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


# -- who made it ---------------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str | None:
    """When the process started (clock ticks after boot), which tells it apart from a later one with its pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass(frozen=True)
class Owner:
    """The process that made a leftover, as written into its mark."""

    host: str
    boot: str
    pid: int
    started: str

    @classmethod
    def me(cls) -> Owner:
        return cls(socket.gethostname(), _boot_id(), os.getpid(), _start_ticks(os.getpid()) or "0")

    def mark(self) -> str:
        return f"{self.host} {self.boot} {self.pid} {self.started}"

    @classmethod
    def from_mark(cls, mark: str) -> Owner | None:
        parts = mark.split()
        if len(parts) != 4 or not parts[2].isdigit():
            return None
        return cls(parts[0], parts[1], int(parts[2]), parts[3])

    def is_gone(self) -> bool:
        """True only when we can tell: on this host, after a reboot or with no process of that pid and start."""
        if self.host != socket.gethostname():
            return False  # another host's run on a shared engine: not ours to judge
        if self.boot != _boot_id():
            return True
        return _start_ticks(self.pid) != self.started


# -- signals -------------------------------------------------------------------------------------


def stopping() -> bool:
    """True once a signal asked this process to stop: start no new tool, container or copy."""
    return _stopping.is_set()


def raise_if_stopping() -> None:
    if _stopping.is_set():
        raise Interrupted(signal.SIGTERM)


def _children() -> list[int]:
    """Our direct child processes (skopeo, ssh-keygen), from /proc."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == me:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def stop_now() -> None:
    """What a signal does first: stop starting work, stop our child processes, unlink our secret files."""
    _stopping.set()
    for pid in _children():
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    with _tracked_guard:
        files = list(_tracked_files)
    for name in files:
        with contextlib.suppress(OSError):
            os.unlink(name)


def _on_signal(signum: int, _frame) -> None:
    stop_now()
    if _shield["depth"]:
        _shield["pending"] = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Let a cleanup (removing a container) finish when a signal arrives meanwhile; the signal's
    :class:`Interrupted` is raised after it. Only the main thread receives signals, so only it is shielded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _shield["depth"] += 1
    try:
        yield
    finally:
        _shield["depth"] -= 1
        pending, _shield["pending"] = _shield["pending"], 0
        if pending and not _shield["depth"]:
            raise Interrupted(pending)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """While the block runs (in the main thread), SIGTERM, SIGINT and SIGHUP clean up and raise
    :class:`Interrupted`; the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _on_signal) for number in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        _stopping.clear()


# -- secret files --------------------------------------------------------------------------------


def private_dir() -> Path:
    """Our own folder for secret files: ``$NIMRUNBOOK_PRIVATE_DIR``, else ``$XDG_RUNTIME_DIR/nimrunbook``,
    else ``<tmp>/nimrunbook-<uid>``; made with mode 0700, and refused unless it is a real folder of ours
    (someone else may have made that name first in a shared /tmp)."""
    base = os.environ.get(PRIVATE_DIR_VARIABLE)
    if base:
        folder = Path(base)
    elif os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        folder = Path(os.environ["XDG_RUNTIME_DIR"]) / "nimrunbook"
    else:
        folder = Path(tempfile.gettempdir()) / f"nimrunbook-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700, parents=True)
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        raise NimRunbookError(
            f"{folder}, where nimrunbook keeps credential files while a tool runs, is not a folder of this user "
            "(it is a symbolic link, a file, or belongs to someone else).",
            hint=f"Remove it if it is stale, or point {PRIVATE_DIR_VARIABLE} to a folder only you can read.",
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        folder.chmod(0o700)
    return folder


def _file_owner(name: str) -> Owner | None:
    """The owner written into a secret file's name: ``<prefix>-<pid>-<start ticks>-<random><suffix>``."""
    parts = name.split("-")
    if len(parts) < 4 or not parts[-3].isdigit():
        return None
    return Owner(socket.gethostname(), _boot_id(), int(parts[-3]), parts[-2])


def sweep_stale_files(folder: Path | None = None) -> list[Path]:
    """Remove the secret files that runs killed before their cleanup (SIGKILL) left in ``folder``."""
    removed = []
    for path in (folder or private_dir()).iterdir():
        owner = _file_owner(path.name)
        if owner and owner.is_gone():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
                log.warning(
                    "removed %s, a credentials file an earlier nimrunbook run (pid %d) left when it was killed",
                    path,
                    owner.pid,
                )
    return removed


@contextlib.contextmanager
def secret_file(prefix: str, data: bytes, suffix: str = "") -> Iterator[str]:
    """A file only we can read (0600) in :func:`private_dir`, holding ``data``; it is removed
    when the block ends, when a signal arrives, or by the next run if this one is killed."""
    global _swept_files
    raise_if_stopping()
    folder = private_dir()
    if not _swept_files:
        _swept_files = True
        sweep_stale_files(folder)
    me = Owner.me()
    name = str(folder / f"{prefix}-{me.pid}-{me.started}-{secrets.token_hex(6)}{suffix}")
    with _tracked_guard:  # tracked before it exists: a signal between the two must not leave it
        _tracked_files.add(name)
    try:
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, "wb") as writer:
            writer.write(data)
        yield name
    finally:
        with _tracked_guard:
            _tracked_files.discard(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


# -- containers ----------------------------------------------------------------------------------


def container_labels(tool: str) -> dict[str, str]:
    """Labels for a container we start: which tool, and which process owns it (for :func:`remove_stale_containers`)."""
    return {TOOL_LABEL: tool, OWNER_LABEL: Owner.me().mark()}


def remove_stale_containers(client) -> list[str]:
    """Remove the containers that runs killed before their cleanup left (their stored configuration may hold
    NGC_API_KEY); returns their short ids. Containers of live runs and of other hosts are left alone."""
    import docker.errors
    import requests

    removed = []
    try:
        containers = client.containers.list(all=True, filters={"label": OWNER_LABEL})
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        log.debug("could not list containers to find leftovers: %s", exc)
        return removed
    for container in containers:
        owner = Owner.from_mark(container.labels.get(OWNER_LABEL, ""))
        if owner is None or not owner.is_gone():
            continue
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            continue  # another run removed it first
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.warning("could not remove container %s, left by a killed run: %s", container.short_id, exc)
            continue
        removed.append(container.short_id)
        log.warning(
            "removed container %s (%s), left by an earlier nimrunbook run (pid %d) that was killed before it "
            "could clean up",
            container.short_id,
            " ".join(container.labels.get(TOOL_LABEL, "").split()) or "a tool",
            owner.pid,
        )
    return removed
