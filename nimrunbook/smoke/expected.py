"""What was published, as recorded when it was: each object's key, size and sha256.

The smoke test compares what the NIM fetched with these digests, never with
the bucket's own answer, so an object changed in the bucket after publishing
shows as "bytes differ". They come from a processed directory
(``nim-objects.json``), a bundle (``bundle.json``) or a run directory
(``run.json``, which points at the processed directories or the bundle).
A bundle arrives on removable media: its ``bundle.json`` is read confined and
checked against the bundle schema (:func:`nimrunbook.bundle.contents.read_manifest`),
and every entry is checked again here before use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from nimrunbook import userfiles
from nimrunbook.bundle import contents as bundle_contents
from nimrunbook.bundle import layout as bundle_layout
from nimrunbook.errors import InputError
from nimrunbook.store.process import MANIFEST_NAME as PROCESSED_MANIFEST

RUN_RECORD = "run.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ExpectedObject:
    """One published object: the NIM must fetch exactly these bytes under this key."""

    key: str
    sha256: str
    size: int
    uri: str | None = None


@dataclass
class Published:
    """The recorded objects, and the profiles the record says they are for."""

    objects: dict[str, ExpectedObject] = field(default_factory=dict)
    profile_names: dict[str, str | None] = field(default_factory=dict)  # id -> name, in recorded order
    images: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def profile_ids(self) -> list[str]:
        return list(self.profile_names)

    def add(self, other: Published) -> None:
        self.objects.update(other.objects)
        for pid, name in other.profile_names.items():
            self.profile_names[pid] = self.profile_names.get(pid) or name
        self.images += [i for i in other.images if i not in self.images]
        self.sources += other.sources

    @classmethod
    def of(cls, objects: Iterable[ExpectedObject]) -> Published:
        return cls(objects={o.key: o for o in objects})


def _bad(source: Path, what: str) -> InputError:
    return InputError(
        f"{source} is not a record nimrunbook can check against: {what}.",
        hint="Give the processed directory (nim-objects.json), the bundle (bundle.json) or the run directory "
        "(run.json) of the publish step, unchanged.",
    )


def _entries(document: dict, source: Path) -> Published:
    """Objects and profiles of a nim-objects.json or bundle.json document, each entry checked."""
    if not isinstance(document, dict) or not isinstance(document.get("objects"), list):
        raise _bad(source, "it has no list of objects")
    published = Published(sources=[str(source)])
    for entry in document["objects"]:
        if not isinstance(entry, dict):
            raise _bad(source, f"an object entry is {type(entry).__name__}, not a mapping")
        key, digest, size, uri = entry.get("key"), entry.get("sha256"), entry.get("size"), entry.get("uri")
        if not isinstance(key, str) or not key or "/" in key or len(key) > 1024:
            raise _bad(source, f"object key {key!r} is not a flat object key")
        if not isinstance(digest, str) or not _SHA256.match(digest):
            raise _bad(source, f"object {key} has no sha256 (got {digest!r})")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad(source, f"object {key} has no size (got {size!r})")
        published.objects[key] = ExpectedObject(key, digest, size, uri if isinstance(uri, str) else None)
    for profile in document.get("profiles") or []:
        if isinstance(profile, dict) and isinstance(profile.get("id"), str):
            name = profile.get("name")
            published.profile_names[profile["id"]] = name if isinstance(name, str) else None
    image = document.get("image")
    if isinstance(image, str) and image:
        published.images.append(image)
    for item in document.get("images") or []:  # a bundle's image copies
        source_ref = item.get("source") if isinstance(item, dict) else None
        if isinstance(source_ref, str) and source_ref not in published.images:
            published.images.append(source_ref)
    return published


def _read_json(path: Path) -> dict:
    return userfiles.read_json(path, "record of what was published")


def _from_run_record(path: Path) -> Published:
    record = _read_json(path)
    published = Published(sources=[str(path)])
    for entry in (record.get("publish") or {}).get("images", {}).values():
        directory = entry.get("directory") if isinstance(entry, dict) else None
        if directory:
            published.add(load_published(directory))
    bundle_path = (record.get("bundle") or {}).get("path")
    if bundle_path:
        published.add(load_published(bundle_path))
    if not published.objects:
        raise InputError(
            f"The run record {path} names no published profiles (no publish step, no imported bundle).",
            hint="Run the publish step (04) or the bundle import (06) first, or give the processed directory or "
            "the bundle itself.",
        )
    for selected in (record.get("selection") or {}).values():
        for entry in selected if isinstance(selected, list) else []:
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                published.profile_names.setdefault(entry["id"], entry.get("name"))
    return published


def load_published(path: str | Path) -> Published:
    """The recorded objects (and profiles) from a processed directory, a bundle, a run directory or their JSON."""
    where = Path(path)
    if where.name == bundle_layout.MANIFEST and not where.is_dir():
        where = where.parent
    # A folder that holds a bundle.json (whatever it is: a link, a FIFO) is a bundle from the media: it is read
    # confined and checked by the bundle schema, never as a plain file, whatever else the folder holds.
    if where.is_dir() and os.path.lexists(where / bundle_layout.MANIFEST):
        return _entries(bundle_contents.read_manifest(where), where / bundle_layout.MANIFEST)
    candidates = [where / PROCESSED_MANIFEST, where / RUN_RECORD] if where.is_dir() else [where]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        if candidate.name == RUN_RECORD:
            return _from_run_record(candidate)
        return _entries(_read_json(candidate), candidate)
    raise InputError(
        f"{where} holds no record of published objects ({PROCESSED_MANIFEST}, {bundle_layout.MANIFEST} or "
        f"{RUN_RECORD}).",
        hint="Give the processed directory, the bundle or the run directory of the publish step.",
    )
