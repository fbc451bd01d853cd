"""What a bundle claims to hold (SHA256SUMS and bundle.json), parsed strictly and checked against itself.

Both files come off the media, so they are parsed as hostile input: every
problem is collected as one sentence for the verification record, never raised
as a Python error. The cross-check ties what the import uses to what is hashed:
every file, object and part of bundle.json must be listed in SHA256SUMS with
the same digest (and every SHA256SUMS entry in bundle.json), so that nothing
the import reads escapes the hashing, and a digest in bundle.json is never
trusted on its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nimrunbook.bundle import layout
from nimrunbook.bundle.confine import BundleDir, name_problem
from nimrunbook.errors import ConfinementError, VerificationError
from nimrunbook.store.keys import looks_like_nim_key, object_key

_SUMS_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")
HEX64 = re.compile(r"[0-9a-f]{64}")
_BLOB = re.compile(r".*/blobs/sha256/(?P<digest>[^/]+)")


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


def parse_sums(data: bytes) -> tuple[dict[str, str], list[str]]:
    """SHA256SUMS as {path: sha256} and the problems found (bad lines, unsafe or repeated names)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {}, [f"{layout.SUMS} is not UTF-8 text: it is not a checksum list."]
    sums: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        match = _SUMS_LINE.fullmatch(line)
        if not match:
            problems.append(f"{layout.SUMS} line {number} is not '<sha256>  <path>': {_short(line)}.")
            continue
        name = match["name"]
        unsafe = name_problem(name)
        if unsafe:
            problems.append(f"{layout.SUMS} line {number} names {_short(name)}, which is not a safe path: {unsafe}.")
        elif name in sums:
            problems.append(f"{layout.SUMS} lists {name} twice.")
        else:
            sums[name] = match["digest"].lower()
    if not sums and not problems:
        problems.append(f"{layout.SUMS} lists no file.")
    return sums, problems


class _Schema:
    """Checks one parsed bundle.json, collecting a sentence per problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, where: str, what: str) -> None:
        self.problems.append(f"bundle.json: {where} {what}.")

    def field(self, entry: dict, key: str, kind: type | tuple, where: str) -> Any:
        value = entry.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):  # True is no size
            self.bad(where, f"has no valid {key!r}")
            return None
        return value

    def size(self, entry: dict, where: str) -> int | None:
        value = self.field(entry, "size", int, where)
        if value is not None and value < 0:
            self.bad(where, "has a negative size")
            return None
        return value

    def digest(self, entry: dict, where: str) -> str | None:
        value = self.field(entry, "sha256", str, where)
        if value is not None and not HEX64.fullmatch(value):
            self.bad(where, f"has a sha256 that is not 64 lower-case hex digits: {_short(value)}")
            return None
        return value

    def path(self, entry: dict, where: str) -> str | None:
        value = self.field(entry, "path", str, where)
        unsafe = name_problem(value) if value is not None else None
        if unsafe:
            self.bad(where, f"names {_short(value)}, which is not a safe path: {unsafe}")
            return None
        return value

    def entries(self, document: dict, key: str) -> list[dict]:
        value = document.get(key)
        if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
            self.bad(f"{key!r}", "is not a list of entries")
            return []
        return value

    def file(self, entry: dict, where: str) -> None:
        self.path(entry, where)
        self.size(entry, where)
        self.digest(entry, where)

    def object(self, entry: dict, index: int, keys: set[str]) -> None:
        key = self.field(entry, "key", str, f"object {index}")
        where = f"object {_short(key) if key else index}"
        if key is not None:
            uri = entry.get("uri")
            if not looks_like_nim_key(key) or not isinstance(uri, str) or object_key(uri) != key:
                self.bad(where, "has a key that is not the flat, percent-encoded NIM key of its uri")
            if key in keys:
                self.bad(where, "appears twice")
            keys.add(key)
        size = self.size(entry, where)
        self.digest(entry, where)
        if not isinstance(entry.get("profiles", []), list):
            self.bad(where, "has a 'profiles' that is not a list")
        parts = entry.get("parts") or []
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            self.bad(where, "has 'parts' that are not a list of entries")
            return
        if not parts:
            self.path(entry, where)
            return
        for number, part in enumerate(parts):
            self.file(part, f"{where} part {number}")
        sizes = [p.get("size") for p in parts]
        if size is not None and all(type(s) is int for s in sizes) and sum(sizes) != size:
            self.bad(where, f"has parts of {sum(sizes)} bytes in all, but a size of {size}")

    def wheelhouse(self, entry: object, files: set) -> None:
        """The wheelhouse entry (absent or null when none is carried): what it names is among the listed files."""
        if entry is None:
            return
        if not isinstance(entry, dict):
            self.bad("'wheelhouse'", "is not an entry")
            return
        for key in ("python_version", "platform", "nimrunbook"):
            self.field(entry, key, str, "the wheelhouse")
        for key in ("wheel", "install", "requirements"):
            path = entry.get(key)
            unsafe = name_problem(path)
            if unsafe:
                self.bad("the wheelhouse", f"has no safe {key!r} path ({unsafe})")
            elif path not in files:
                self.bad("the wheelhouse", f"names {_short(path)}, which is not among the bundle's files")


def parse_manifest(data: bytes) -> tuple[dict | None, list[str]]:
    """bundle.json as a dict (None when unusable) and the problems found in it."""
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return None, [f"{layout.MANIFEST} is not UTF-8 text."]
    except (ValueError, RecursionError) as exc:
        return None, [f"{layout.MANIFEST} is not JSON ({str(exc)[:120]})."]
    if not isinstance(document, dict):
        return None, [f"{layout.MANIFEST} is not a JSON object."]
    if (document.get("format"), document.get("version")) != (layout.FORMAT, layout.VERSION):
        return None, [
            f"{layout.MANIFEST} is not a {layout.FORMAT} version {layout.VERSION} manifest "
            f"(format {_short(str(document.get('format')))}, version {_short(str(document.get('version')))})."
        ]
    schema = _Schema()
    for index, entry in enumerate(schema.entries(document, "files")):
        schema.file(entry, f"file {index}")
    keys: set[str] = set()
    for index, entry in enumerate(schema.entries(document, "objects")):
        schema.object(entry, index, keys)
    for index, entry in enumerate(schema.entries(document, "images")):
        schema.field(entry, "source", str, f"image {index}")
    for key, kind in (("signed", bool), ("inside", dict)):
        if not isinstance(document.get(key), kind):
            schema.bad(repr(key), f"is not a {kind.__name__}")
    files = document.get("files")
    schema.wheelhouse(
        document.get("wheelhouse"),
        {f.get("path") for f in files if isinstance(f, dict)} if isinstance(files, list) else set(),
    )
    return (None if schema.problems else document), schema.problems


def cross_check(document: dict, sums: dict[str, str]) -> list[str]:
    """Problems that tie bundle.json to SHA256SUMS: everything used is listed there, with the same digest."""
    problems: list[str] = []
    if layout.MANIFEST not in sums:
        problems.append(f"{layout.SUMS} does not list {layout.MANIFEST}: its content is not covered by the checksums.")
    files = {f["path"]: f["sha256"] for f in document["files"]}

    def listed(name: str, digest: str, what: str) -> None:
        if name not in sums:
            problems.append(f"{what} {name} is not in {layout.SUMS}: it would be used without being checked.")
        elif sums[name] != digest:
            problems.append(
                f"{what} {name} has sha256 {digest[:12]}... in bundle.json but {sums[name][:12]}... in {layout.SUMS}."
            )

    for name, digest in files.items():
        listed(name, digest, "file")
    for name in sums:
        if name != layout.MANIFEST and name not in files:
            problems.append(f"{layout.SUMS} lists {name}, which bundle.json does not.")
        blob = _BLOB.fullmatch(name)
        if blob and blob["digest"] != sums[name]:
            problems.append(f"image blob {name} is listed with another digest than its name.")
    for entry in document["objects"]:
        if entry.get("parts"):
            for part in entry["parts"]:
                listed(part["path"], part["sha256"], f"a part of object {entry['key']},")
        else:
            listed(entry["path"], entry["sha256"], f"object {entry['key']},")
    if document["images"] and layout.IMAGES_INDEX not in sums:
        problems.append(f"{layout.SUMS} does not list the image index {layout.IMAGES_INDEX}.")
    return problems


def read_manifest(path: str | Path) -> dict:
    """bundle.json of the bundle at ``path``, read through the confinement module and checked: for showing
    what a bundle says. It proves nothing by itself; an import uses the copy verification returns."""
    with BundleDir(path) as root:
        try:
            data = root.read(layout.MANIFEST)
        except ConfinementError as error:
            raise VerificationError(error.message, hint="Give the bundle's top folder; verify the bundle.") from error
    document, problems = parse_manifest(data)
    if document is None:
        raise VerificationError(" ".join(problems[:5]), hint="Do not import this bundle; verify it to see why.")
    return document
