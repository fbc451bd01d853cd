"""Reading a file a person named: one wrapper, so every command and notebook refuses the same things alike.

What a person gives as a file may be anything: absent, a folder, a FIFO or a
device that would block the read for ever, a binary, text in another
encoding, JSON or YAML of the wrong shape, a notebook that is not one. Each of
these ends in one :class:`InputError` that names the file and what it is
instead, never in a traceback or a hang. A file is opened without blocking and
checked to be a regular file before a byte is read, reads are bounded, and
``-`` means standard input where a command says so.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from typing import Any

import yaml

from nimrunbook.errors import InputError

MAX_BYTES = 64 * 1024 * 1024  # far above any listing, manifest, node list or parameter file
STDIN = "-"

_OPEN_ERRORS = {
    errno.ENOENT: "it does not exist",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of its path is a file, not a folder",
    errno.ELOOP: "its path has too many symbolic links",
    errno.ENAMETOOLONG: "its name is too long",
    errno.ENXIO: "it is a socket or a device without a reader",
}
_SHAPES = {dict: "a mapping (key: value)", list: "a list", str: "text"}


def _shown(path: str) -> str:
    return "on standard input" if path == STDIN else repr(str(path))


def _refuse(what: str, path: str, reason: str, hint: str | None = None) -> InputError:
    where = "standard input" if path == STDIN else f"file {str(path)!r}"
    return InputError(f"Cannot read the {what} {where}: {reason}.", hint=hint)


def _open_regular(path: str, what: str):
    """An unbuffered reader of ``path``, refused unless it is a regular file we may read."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below without a read.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        reason = _OPEN_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
        raise _refuse(what, path, reason, "Check the path and give the file itself.") from exc
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            raise _refuse(what, path, "it is a folder, not a file", "Give the file inside it.")
        raise _refuse(
            what,
            path,
            "it is not a regular file (a FIFO, a socket or a device)",
            "Save the content to a regular file and give that.",
        )
    return os.fdopen(descriptor, "rb", buffering=0)


def check_file(path: str | os.PathLike, what: str) -> None:
    """Refuse ``path`` unless it is a regular file we may open (before a tool that reads it is started)."""
    if str(path) != STDIN:
        _open_regular(str(path), what).close()


def read_bytes(path: str | os.PathLike, what: str, *, limit: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file (or standard input for ``-``), at most ``limit`` of them."""
    path = str(path)
    if path == STDIN:
        stream = getattr(sys.stdin, "buffer", None)  # a replaced sys.stdin (a notebook's, a test's) is text
        data = stream.read(limit + 1) if stream is not None else sys.stdin.read(limit + 1).encode("utf-8")
    else:
        with _open_regular(path, what) as reader:
            try:
                data = reader.read(limit + 1) or b""
            except OSError as exc:
                raise _refuse(what, path, exc.strerror or str(exc)) from exc
    if len(data) > limit:
        raise _refuse(what, path, f"it is larger than {limit // (1024 * 1024)} MiB, far too large for a {what}")
    return data


def read_text(path: str | os.PathLike, what: str, *, limit: int = MAX_BYTES, allow_empty: bool = False) -> str:
    """UTF-8 text (a byte-order mark is allowed) of a file or of standard input; never empty unless allowed."""
    data = read_bytes(path, what, limit=limit)
    path = str(path)
    if b"\0" in data:
        raise _refuse(what, path, "it is a binary file, not text", f"Give the {what} as text.")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise _refuse(
            what,
            path,
            f"it is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line})",
            "Save it as UTF-8 (iconv -t UTF-8), or give the tool's output unchanged.",
        ) from exc
    if not text.strip() and not allow_empty:
        raise InputError(f"The {what} {_shown(path)} is empty.", hint=f"Give the {what} itself.")
    return text


def _require_shape(document: Any, shape: type | None, what: str, path: str, hint: str | None) -> Any:
    if shape is not None and not isinstance(document, shape):
        holds = type(document).__name__ if document is not None else "nothing"
        raise _refuse(what, path, f"it holds {holds}, not {_SHAPES.get(shape, shape.__name__)}", hint)
    return document


def read_json(path: str | os.PathLike, what: str, *, shape: type | None = dict, hint: str | None = None) -> Any:
    """A JSON document of the expected ``shape`` (a dict by default; None: any)."""
    text = read_text(path, what)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _refuse(
            what, str(path), f"it is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})", hint
        ) from exc
    return _require_shape(document, shape, what, str(path), hint)


def read_yaml(path: str | os.PathLike, what: str, *, shape: type | None = dict, hint: str | None = None) -> Any:
    """A YAML document (JSON is YAML too) of the expected ``shape`` (a dict by default; None: any)."""
    text = read_text(path, what)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise _refuse(what, str(path), f"it is not YAML ({problem}{where})", hint) from exc
    return _require_shape(document, shape, what, str(path), hint)


def read_notebook(path: str | os.PathLike, what: str = "notebook"):
    """A Jupyter notebook (nbformat 4), validated: a file named ``.ipynb`` that is not one is refused here."""
    import nbformat

    document = read_json(path, what, hint="Give a Jupyter notebook (.ipynb) saved by JupyterLab or nimrunbook.")
    if not isinstance(document.get("cells"), list) or not isinstance(document.get("nbformat"), int):
        raise _refuse(
            what,
            str(path),
            "it is JSON but not a Jupyter notebook (no cells, no nbformat)",
            "Give a notebook of the runbook (nimrunbook init copies them) or one saved by JupyterLab.",
        )
    try:
        notebook = nbformat.reads(json.dumps(document), as_version=4)
        nbformat.validate(notebook)
    except (nbformat.ValidationError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise _refuse(
            what,
            str(path),
            f"it is not a valid Jupyter notebook ({' '.join(str(exc).split())[:200]})",
            "Open it in JupyterLab and save it again, or take a fresh copy (nimrunbook init).",
        ) from exc
    return notebook


def _kind(path: str) -> str | None:
    """What is at ``path`` (following symbolic links): "folder", "file", "other", or None when nothing is."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return "under a file"
    except OSError as exc:
        return exc.strerror or "unreadable"
    return "folder" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


_NOT_A_FOLDER = {
    "file": "it is a file, not a folder",
    "other": "it is not a folder (a FIFO, a socket or a device)",
    "under a file": "a part of its path is a file, not a folder",
}


def check_folder(path: str | os.PathLike, what: str, *, may_be_absent: bool = False) -> None:
    """Refuse ``path`` as ``what`` unless it is a folder; ``may_be_absent``: a folder we create is fine too,
    as long as what exists of its path are folders."""
    path = str(path)
    kind = _kind(path)
    if kind == "folder":
        return
    if kind is None and may_be_absent:
        parent = os.path.dirname(os.path.abspath(path))
        while _kind(parent) is None and parent != os.path.dirname(parent):
            parent = os.path.dirname(parent)
        if _kind(parent) == "folder":
            return
        kind = "under a file"
    reason = "it does not exist" if kind is None else _NOT_A_FOLDER.get(kind, kind)
    raise InputError(f"Cannot use {path!r} as the {what}: {reason}.", hint=f"Give a folder as the {what}.")


def check_output_file(path: str | os.PathLike, what: str) -> None:
    """Refuse ``path`` as a file we are about to (re)write unless it is a regular file or absent, in a folder."""
    path = str(path)
    kind = _kind(path)
    if kind in (None, "file") and _kind(os.path.dirname(os.path.abspath(path))) == "folder":
        return
    reason = {
        None: "its folder does not exist",
        "file": "its folder does not exist",
        "folder": "it is a folder",
        "other": "it is not a regular file (a FIFO, a socket or a device)",
        "under a file": "a part of its path is a file, not a folder",
    }.get(kind, kind)
    raise InputError(
        f"Cannot write the {what} to {path!r}: {reason}.", hint="Give the name of a file in an existing folder."
    )


PEM_CERTIFICATE = "-----BEGIN CERTIFICATE-----"


def check_certificates(path: str | os.PathLike, what: str = "CA bundle") -> str:
    """The text of a PEM file that holds at least one certificate (a CA bundle); refused otherwise."""
    text = read_text(path, what, limit=16 * 1024 * 1024)
    if PEM_CERTIFICATE not in text:
        raise _refuse(
            what,
            str(path),
            "it holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            "Give the CA's certificate in PEM form (openssl x509 -inform der -in ca.der -out ca.pem converts DER).",
        )
    return text
