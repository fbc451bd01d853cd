"""Push a verified bundle's images to the internal registry, reading only what verification hashed.

The images imported are the ones the verified bundle.json names, with the
digest it names. The bundle is one :class:`nimrunbook.images.views.ExportSource`
(:class:`BundleImages`): the OCI layout's index and every manifest are read
through the confinement module and must hash to their SHA256SUMS digest, so the
bytes parsed are the bytes verified; every digest they name must be a
well-formed sha256, which then is the only path it can lead to
(``blobs/sha256/<hex>``), and that blob must have hashed to it. skopeo reads
each image from a ``dir:`` view built in the staging folder, outside the bundle
(the media may be read-only): symbolic links to the verified blobs, so no byte
is copied. The Docker backend loads the archive only when it hashed to its line.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from nimrunbook.bundle import layout
from nimrunbook.bundle.confine import BundleDir
from nimrunbook.bundle.verify import VerifiedBundle
from nimrunbook.errors import InputError, VerificationError
from nimrunbook.images import ImageCopy, RegistryAccess, open_backend
from nimrunbook.images.ecr import is_ecr, prepare_ecr
from nimrunbook.images.refs import ImageRef
from nimrunbook.progress import SILENT, Reporter


def _refused(message: str) -> VerificationError:
    return VerificationError(message, hint="Do not import this bundle; it was not written by nimrunbook bundle create.")


class BundleImages:
    """The images of a verified bundle, as an :class:`nimrunbook.images.views.ExportSource`."""

    def __init__(self, root: BundleDir, verified: VerifiedBundle) -> None:
        self.root = root
        self.verified = verified
        self._index: dict | None = None
        self._lock = threading.Lock()

    def _json(self, name: str):
        """A JSON file of the bundle, parsed from bytes that hash to what verification hashed."""
        data = self.root.read(name)
        if hashlib.sha256(data).hexdigest() != self.verified.digest(name):
            raise _refused(f"{name} changed since it was verified.")
        try:
            return json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            raise _refused(f"{name} is not JSON.") from exc

    def _blob_name(self, hex_digest: str) -> str:
        name = f"{layout.OCI_LAYOUT}/blobs/sha256/{hex_digest}"
        if self.verified.digest(name) != hex_digest:
            raise _refused(f"The blob {name} did not hash to its name.")
        return name

    def layout_index(self) -> dict:
        with self._lock:
            if self._index is None:
                index = self._json(f"{layout.OCI_LAYOUT}/index.json")
                if not isinstance(index, dict):
                    raise _refused("The bundle's image layout index is not a JSON object.")
                self._index = index
            return self._index

    def manifest(self, hex_digest: str) -> object:
        return self._json(self._blob_name(hex_digest))

    def blob(self, hex_digest: str) -> Path:
        return self.root.real_path(self._blob_name(hex_digest))

    def archive(self) -> Path:
        self.verified.digest(layout.DOCKER_ARCHIVE)
        return self.root.real_path(layout.DOCKER_ARCHIVE)


def import_images(
    root: BundleDir,
    verified: VerifiedBundle,
    registry: str,
    staging: Path,
    *,
    access: RegistryAccess | None = None,
    docker_client=None,
    ecr_client=None,
    workers: int = 2,
    progress: Reporter = SILENT,
) -> list[ImageCopy]:
    """Push every image of the verified bundle.json to ``registry`` (same paths and tags), digests checked."""
    access = access or RegistryAccess()
    entries = verified.manifest["images"]
    backends = {e.get("backend") for e in entries}
    if len(backends) != 1 or not backends <= {"skopeo", "docker"}:
        raise _refused(f"bundle.json's images name no single known backend ({sorted(map(str, backends))}).")
    try:
        targets = [ImageRef.parse(e["source"]).moved_to(registry) for e in entries]
    except InputError as error:
        raise _refused(f"bundle.json names an image that is not a reference: {error.message}") from error
    if is_ecr(targets[0].registry):
        prepare_ecr(targets[0].registry, [t.path for t in targets], access, ecr_client)
    engine = open_backend(backends.pop(), access, docker_client=docker_client)
    with progress.task(f"import {len(entries)} images", len(entries), unit="images") as task:
        return engine.import_(BundleImages(root, verified), entries, targets, staging, workers, task)
