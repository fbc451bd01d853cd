"""Every path read from a bundle stays inside the bundle, and names a regular file.

The bundle is written outside, carried on removable media and read inside the
air gap by a command that runs as root, so every name in it (SHA256SUMS lines,
bundle.json's files, objects and parts, the image index, the digests in the OCI
layout) was chosen by whoever wrote the media. A name is accepted only when it
is a plain relative path: not absolute, no ``..``, ``.`` or empty part, no
control character or backslash, valid UTF-8, within the file-system limits.
It is then opened from the bundle root's directory descriptor one part at a
time, each part looked at with ``lstat`` before it is opened with
``O_NOFOLLOW``: a symbolic link anywhere on the way is refused, and anything
that is not a regular file (a device such as /dev/zero that never ends, a FIFO
that hangs the reader) is refused before it is opened. The caller reads the
descriptor it was given, so what was checked is what is read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from nimrunbook import hashing
from nimrunbook.errors import ConfinementError, InputError
from nimrunbook.progress import Task

MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096
MAX_DEPTH = 32  # deeper than any bundle nimrunbook writes; bounds the descriptors a walk holds
SMALL_FILE_LIMIT = 64 * 1024 * 1024  # bundle.json, SHA256SUMS, image indexes and manifests
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def name_problem(name: object) -> str | None:
    """Why ``name`` is not a safe relative path inside a bundle, or None when it is."""
    if not isinstance(name, str) or not name:
        return "it is empty or not text"
    if name.startswith("/"):
        return "it is an absolute path"
    if "\\" in name:
        return "it holds a backslash"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        return "it is not valid UTF-8"
    if len(encoded) > MAX_PATH_BYTES:
        return f"it is longer than {MAX_PATH_BYTES} bytes"
    parts = name.split("/")
    if ".." in parts:
        return "it climbs out of its folder with '..'"
    if "" in parts or "." in parts:
        return "it has an empty or '.' part"
    if len(parts) > MAX_DEPTH:
        return f"it is more than {MAX_DEPTH} folders deep"
    if any(len(p.encode("utf-8")) > MAX_COMPONENT_BYTES for p in parts):
        return f"a part of it is longer than {MAX_COMPONENT_BYTES} bytes"
    return None


def check_name(name: object) -> str:
    """``name`` when it is a safe relative path; raises :class:`ConfinementError` (status ``unsafe``)."""
    problem = name_problem(name)
    if problem:
        raise ConfinementError(
            f"{name!r} is not a safe path inside the bundle: {problem}.", path=str(name), status="unsafe"
        )
    return name  # type: ignore[return-value]  # name_problem proved it is a str


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return kind
    return "special file"


class BundleDir:
    """The bundle's top folder, held open; every read goes through it.

    The folder itself is the one the user named (a symlink to it is the user's choice and is resolved once);
    everything below it is the media's and is confined.
    """

    def __init__(self, path: str | Path) -> None:
        self.given = str(path)
        self.path = Path(os.path.realpath(path))
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise InputError(
                f"The bundle folder {path} does not exist.",
                hint="Give the bundle's top folder on the media (the one holding bundle.json and SHA256SUMS).",
            ) from exc
        except NotADirectoryError as exc:
            raise InputError(
                f"{path} is not a folder.",
                hint="Give the bundle's top folder on the media (the one holding bundle.json and SHA256SUMS).",
            ) from exc
        except OSError as exc:
            raise InputError(f"Cannot open the bundle folder {path}: {exc.strerror}.") from exc

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> BundleDir:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- opening ----------------------------------------------------------------------------------------

    def _lstat(self, directory: int, part: str, shown: str, name: str) -> os.stat_result:
        try:
            return os.stat(part, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise ConfinementError(f"{shown} is not on the media.", path=name, status="missing") from exc
        except OSError as exc:
            raise ConfinementError(f"{shown} cannot be read: {exc.strerror}.", path=name, status="unreadable") from exc

    def _open(self, directory: int, part: str, flags: int, info: os.stat_result, shown: str, name: str) -> int:
        try:
            fd = os.open(part, flags, dir_fd=directory)
        except OSError as exc:  # changed since the lstat: a symlink put in its place, or it went away
            raise ConfinementError(
                f"{shown} changed while it was being opened ({exc.strerror}): refused.", path=name, status="unsafe"
            ) from exc
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
            os.close(fd)
            raise ConfinementError(f"{shown} changed while it was being opened: refused.", path=name, status="unsafe")
        return fd

    def open_fd(self, name: str) -> int:
        """A read-only descriptor of the regular file ``name``; raises :class:`ConfinementError`."""
        parts = check_name(name).split("/")
        directory, opened = self.fd, []
        try:
            for depth, part in enumerate(parts[:-1], 1):
                shown = "/".join(parts[:depth])
                info = self._lstat(directory, part, shown, name)
                if stat.S_ISLNK(info.st_mode):
                    raise ConfinementError(
                        f"{shown} is a symbolic link: refused (a bundle holds none, and a link may lead out of it).",
                        path=name,
                        status="unsafe",
                    )
                if not stat.S_ISDIR(info.st_mode):
                    raise ConfinementError(
                        f"{name} is not on the media ({shown} is a {_kind(info.st_mode)}, not a folder).",
                        path=name,
                        status="missing",
                    )
                directory = self._open(directory, part, _DIR_FLAGS, info, shown, name)
                opened.append(directory)
            info = self._lstat(directory, parts[-1], name, name)
            if stat.S_ISLNK(info.st_mode):
                raise ConfinementError(
                    f"{name} is a symbolic link: refused (a bundle holds none, and a link may lead out of it).",
                    path=name,
                    status="unsafe",
                )
            if not stat.S_ISREG(info.st_mode):
                raise ConfinementError(
                    f"{name} is a {_kind(info.st_mode)}, not a regular file: refused.", path=name, status="not a file"
                )
            return self._open(directory, parts[-1], _FILE_FLAGS, info, name, name)
        finally:
            for fd in opened:
                os.close(fd)

    def open(self, name: str) -> BinaryIO:
        """The regular file ``name``, opened for reading (unbuffered); see :meth:`open_fd`."""
        return os.fdopen(self.open_fd(name), "rb", buffering=0)

    def read(self, name: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
        """All of a small file (an index, a manifest); refuses one larger than ``limit``."""
        with self.open(name) as reader:
            if os.fstat(reader.fileno()).st_size > limit:
                raise ConfinementError(
                    f"{name} is larger than {limit} bytes, far more than such a file holds: refused.",
                    path=name,
                    status="too large",
                )
            data = reader.read(limit + 1)
        if len(data) > limit:
            raise ConfinementError(f"{name} grew while it was read: refused.", path=name, status="unsafe")
        return data

    def real_path(self, name: str) -> Path:
        """The absolute path of ``name`` for a tool that opens files itself, after checking it as :meth:`open`
        does (the media is not expected to change under us; what such a tool reads is re-hashed)."""
        os.close(self.open_fd(name))
        return self.path / name

    # -- walking ----------------------------------------------------------------------------------------

    def walk(self) -> Iterator[tuple[str, str]]:
        """Every entry below the root as (relative name, kind), symbolic links reported and never followed."""
        yield from self._walk(self.fd, "", 1)

    def _walk(self, directory: int, prefix: str, depth: int) -> Iterator[tuple[str, str]]:
        with os.scandir(directory) as entries:
            listing = sorted((e.name, e.stat(follow_symlinks=False)) for e in entries)
        for name, info in listing:
            relative = prefix + name
            kind = _kind(info.st_mode)
            yield relative, kind
            if kind != "folder":
                continue
            if depth >= MAX_DEPTH:
                yield relative + "/", "too deep"
                continue
            try:
                child = self._open(directory, name, _DIR_FLAGS, info, relative, relative)
            except ConfinementError:
                yield relative, "changed"
                continue
            try:
                yield from self._walk(child, relative + "/", depth + 1)
            finally:
                os.close(child)


def sha256_stream(
    reader: BinaryIO, size: int, progress: Task | None = None, *, cancel: threading.Event | None = None
) -> tuple[str, int]:
    """(sha256, bytes read) of at most ``size`` + 1 bytes: enough to notice a file longer than it should be,
    never more. Read ahead of the hashing (:func:`hashing.overlapped_pump`), from the descriptor given only."""
    digest = hashlib.sha256()
    read = hashing.overlapped_pump(reader, None, [digest], progress, limit=size + 1, cancel=cancel)
    return digest.hexdigest(), read
