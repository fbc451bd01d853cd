"""An exported image shown to skopeo as a ``dir:`` view in a staging folder, built only from proven bytes.

skopeo 1.9 (Debian 12) writes Docker-typed manifests into an OCI layout with
--preserve-digests but will not read them back from it; its ``dir:`` transport
reads any manifest byte for byte, so the digest survives. The view is built in
a staging folder outside the export, because the export is on removable media
(often mounted read-only): symbolic links to the layout's blobs, so no byte is
copied.

The media is not trusted, and the import may run as root. Whoever wrote it
chose every name in the layout, so the view follows only what an
:class:`ExportSource` proves: the image must be named once in the layout's
index with the digest the import expects; every digest the index and the
manifests name must be a well-formed sha256, which then can lead only to
``blobs/sha256/<hex>``; every manifest is parsed from bytes that hash to its
digest; the walk is bounded. Two sources exist: a verified bundle
(:mod:`nimrunbook.bundle.image_import`, every file hashed before) and a plain
export folder (:class:`nimrunbook.images.exports.ExportFolder`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from nimrunbook.errors import VerificationError

LIST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
MAX_MANIFESTS = 256  # per image: a list of a few platforms, each one manifest; never a loop
_DIGEST = re.compile(r"sha256:(?P<hex>[0-9a-f]{64})")


class ExportSource(Protocol):
    """Where an import reads exported images from; every method refuses what it cannot prove
    (raising :class:`VerificationError`)."""

    def layout_index(self) -> dict:
        """The OCI layout's ``index.json``."""
        ...

    def manifest(self, hex_digest: str) -> object:
        """The manifest blob ``hex_digest``, parsed from bytes that hash to it."""
        ...

    def blob(self, hex_digest: str) -> Path:
        """The path of the blob ``hex_digest``: a regular file inside the export, reached by no symbolic link."""
        ...

    def archive(self) -> Path:
        """The path of the ``docker save`` archive (Docker backend), checked like :meth:`blob`."""
        ...


def refused(message: str) -> VerificationError:
    return VerificationError(
        message, hint="Do not import it: it was not written by nimrunbook (bundle create, images export), or altered."
    )


def hex_of(digest: object) -> str:
    """The hex of a well-formed ``sha256:<64 hex>`` digest; refuses anything else (a digest that names a path)."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if not match:
        raise refused(f"The image layout names a blob {str(digest)[:80]!r}, which is not a sha256 digest.")
    return match["hex"]


def dir_view(source: ExportSource, index: dict, entry: dict, view: Path) -> None:
    """Present the image ``entry`` (``source`` ref and ``digest``) of the layout at ``view``, a new folder."""
    ref, digest = entry.get("source"), entry.get("digest")
    named = [
        m
        for m in index.get("manifests", [])
        if isinstance(m, dict) and (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == ref
    ]
    if len(named) != 1 or named[0].get("digest") != digest:
        raise refused(f"The image layout does not hold {ref} once with the digest expected ({digest}).")
    view.mkdir(parents=True)
    (view / "version").write_text("Directory Transport Version: 1.1\n")
    top = hex_of(digest)
    (view / "manifest.json").symlink_to(source.blob(top))
    pending, seen = [top], {top}
    while pending:
        manifest = source.manifest(pending.pop())
        if not isinstance(manifest, dict):
            raise refused(f"A manifest of {ref} is not a JSON object.")
        if manifest.get("mediaType") in LIST_TYPES or "manifests" in manifest:
            children, suffix = manifest.get("manifests"), ".manifest.json"
        else:
            children, suffix = [manifest.get("config"), *(manifest.get("layers") or [])], ""
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise refused(f"A manifest of {ref} does not list its parts as entries.")
        for child in children:
            child_hex = hex_of(child.get("digest"))
            link = view / (child_hex + suffix)
            if not link.is_symlink():
                link.symlink_to(source.blob(child_hex))
            if suffix and child_hex not in seen:
                seen.add(child_hex)
                pending.append(child_hex)
                if len(seen) > MAX_MANIFESTS:
                    raise refused(f"The manifests of {ref} name more than {MAX_MANIFESTS} manifests.")
