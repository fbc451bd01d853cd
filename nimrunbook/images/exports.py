"""What one image's trip leaves on record, and what an export directory holds.

An export directory (``nimrunbook images export``, a bundle's ``images/``)::

    images.json          which images it holds, their digests, and the backend that wrote them
    oci/                 one OCI image layout naming each ref (skopeo), or
    images.docker.tar    one ``docker save`` archive (Docker backend)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from nimrunbook.errors import InputError, VerificationError
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import write_text_atomic

OCI_DIR = "oci"
ARCHIVE_NAME = "images.docker.tar"
INDEX_NAME = "images.json"
INDEX_FORMAT = "nimrunbook.images"


@dataclass
class ImageCopy:
    """One image's trip, for the run record."""

    source: str
    destination: str
    digest: str | None
    status: Literal["copied", "skipped"]
    backend: str
    seconds: float
    image_id: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def read_index(directory: Path) -> dict:
    try:
        return json.loads((directory / INDEX_NAME).read_text())
    except FileNotFoundError as exc:
        raise InputError(
            f"{directory} holds no {INDEX_NAME}: it is not an image export of nimrunbook.",
            hint="Give the directory `nimrunbook images export` wrote.",
        ) from exc


def exported_before(directory: Path) -> dict[str, dict]:
    """What an earlier (perhaps interrupted) export into ``directory`` completed, by source ref."""
    if not (directory / INDEX_NAME).exists():
        return {}
    return {entry["source"]: entry for entry in read_index(directory)["images"]}


def write_index(directory: Path, backend: str, copies: list[dict]) -> None:
    document = {"format": INDEX_FORMAT, "version": 1, "backend": backend, "images": copies}
    write_text_atomic(directory / INDEX_NAME, json.dumps(document, indent=2) + "\n")


def check_digest(expected: str | None, actual: str | None, destination: ImageRef | str) -> None:
    """A copy whose digest differs from its source's is an error, never a warning."""
    if expected and actual != expected:
        raise VerificationError(
            f"{destination} has digest {actual} after the copy, but the source has {expected}.",
            hint="Do not deploy it. Delete the tag at the destination and mirror again; if it recurs, the registry "
            "rewrites manifests (use skopeo, or a registry that stores manifests as pushed).",
        )
