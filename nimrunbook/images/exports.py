"""What one image's trip leaves on record, and what an export directory holds.

An export directory (``nimrunbook images export``, a bundle's ``images/``)::

    images.json          which images it holds, their digests, and the backend that wrote them
    oci/                 one OCI image layout naming each ref (skopeo), or
    images.docker.tar    one ``docker save`` archive (Docker backend)
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from nimrunbook.errors import InputError, VerificationError
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.views import refused
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
    """The export's index, checked for the fields an import uses (it arrives on media)."""
    try:
        index = json.loads((directory / INDEX_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"{directory} holds no {INDEX_NAME}: it is not an image export of nimrunbook.",
            hint="Give the directory `nimrunbook images export` wrote.",
        ) from exc
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(
            f"Cannot read {directory / INDEX_NAME} as JSON.",
            hint="Give the directory `nimrunbook images export` wrote, copied completely.",
        ) from exc
    images = index.get("images") if isinstance(index, dict) else None
    if not (
        isinstance(images, list)
        and all(isinstance(i, dict) and isinstance(i.get("source"), str) for i in images)
        and index.get("backend") in ("skopeo", "docker")
    ):
        raise InputError(
            f"{directory / INDEX_NAME} is not an index written by `nimrunbook images export` "
            "(a backend, and images each with a source).",
            hint="Give the directory `nimrunbook images export` wrote, unchanged.",
        )
    return index


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


class ExportFolder:
    """An export folder as an import reads it (an :class:`nimrunbook.images.views.ExportSource`).

    It is on removable media too, and nothing signed it, so every name is checked before use: a file the import
    reads must be a regular file inside the folder, reached by no symbolic link; a manifest must hash to its
    digest. The blobs, too large to hash twice, are hashed by skopeo as it reads them (a blob that does not match
    its digest fails the copy), and the pushed image's digest is checked against the export's index.
    """

    MAX_JSON = 64 * 1024 * 1024  # an index or a manifest; far more than either holds

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(os.path.realpath(directory))

    def _file(self, relative: str) -> Path:
        path = self.root / relative
        if os.path.realpath(path) != str(path):
            raise refused(f"{relative} in the export {self.root} is, or lies under, a symbolic link: refused.")
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError as exc:
            raise refused(f"{relative} is not in the export {self.root} ({exc.strerror}).") from exc
        if not stat.S_ISREG(info.st_mode):
            raise refused(f"{relative} in the export {self.root} is not a regular file: refused.")
        return path

    def _read(self, relative: str) -> bytes:
        with open(self._file(relative), "rb") as reader:
            data = reader.read(self.MAX_JSON + 1)
        if len(data) > self.MAX_JSON:
            raise refused(f"{relative} in the export {self.root} is larger than such a file can be: refused.")
        return data

    @staticmethod
    def _json(data: bytes, relative: str) -> object:
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise refused(f"{relative} of the export is not JSON.") from exc

    def layout_index(self) -> dict:
        relative = f"{OCI_DIR}/index.json"
        index = self._json(self._read(relative), relative)
        if not isinstance(index, dict):
            raise refused(f"{relative} of the export is not a JSON object.")
        return index

    def manifest(self, hex_digest: str) -> object:
        relative = f"{OCI_DIR}/blobs/sha256/{hex_digest}"
        data = self._read(relative)
        if hashlib.sha256(data).hexdigest() != hex_digest:
            raise refused(f"The manifest {relative} of the export does not hash to its name.")
        return self._json(data, relative)

    def blob(self, hex_digest: str) -> Path:
        return self._file(f"{OCI_DIR}/blobs/sha256/{hex_digest}")

    def archive(self) -> Path:
        return self._file(ARCHIVE_NAME)
