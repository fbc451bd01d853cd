"""Mirror, export and import NIM images, keeping paths, tags and (with skopeo) manifest digests.

NIM images are 10-30 GB each, and the digest approved outside must be the
digest that runs inside. So every copy is checked: an image whose digest is
already at the destination is skipped, and a digest that differs after the
copy is an error, never a warning. Several images copy in parallel, except
into one OCI layout, whose index must never have two writers. How the bytes
travel is the backend's business (:mod:`nimrunbook.images.backend`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nimrunbook.errors import InputError
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.backend import BackendName, open_backend
from nimrunbook.images.ecr import is_ecr, prepare_ecr
from nimrunbook.images.exports import ExportFolder, ImageCopy, check_digest, read_index
from nimrunbook.images.failures import missing_image
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import staging_folder
from nimrunbook.locks import folder_lock
from nimrunbook.progress import SILENT, Reporter

log = logging.getLogger(__name__)


def parse_refs(refs: Sequence[str]) -> list[ImageRef]:
    """Every ref parsed by the one rule (a registry, a path and a tag); at least one."""
    if not refs:
        raise InputError(
            "No images given.", hint="Name at least one image, e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5."
        )
    return [ImageRef.parse(r) for r in refs]


def _prepare_destination(targets: Sequence[ImageRef], access: RegistryAccess, ecr_client) -> None:
    """ECR needs a repository per image path, and a login from its token; other registries need nothing."""
    if targets and is_ecr(targets[0].registry):
        created = prepare_ecr(targets[0].registry, [t.path for t in targets], access, ecr_client)
        log.info("created ECR repositories: %s", ", ".join(created) or "none needed")


def mirror(
    refs: Sequence[str],
    destination_registry: str,
    *,
    access: RegistryAccess | None = None,
    backend: BackendName = "auto",
    workers: int = 2,
    docker_client=None,
    ecr_client=None,
    progress: Reporter = SILENT,
) -> list[ImageCopy]:
    """Copy each image registry to registry, keeping its path, tag and manifest digest."""
    access = access or RegistryAccess()
    images = parse_refs(refs)
    targets = [image.moved_to(destination_registry) for image in images]
    _prepare_destination(targets, access, ecr_client)
    engine = open_backend(backend, access, docker_client=docker_client)

    def one(pair: tuple[ImageRef, ImageRef]) -> ImageCopy:
        source, target = pair
        started = time.monotonic()
        expected = engine.digest(source)
        if expected is None:
            raise missing_image(source)
        if engine.digest(target) == expected:
            log.info("%s already has %s (%s); skipped", target, source, expected)
            task.advance(1)
            return ImageCopy(str(source), str(target), expected, "skipped", engine.name, 0.0)
        engine.copy(source, target)
        actual = engine.digest(target)
        check_digest(expected, actual, target)
        task.advance(1)
        return ImageCopy(str(source), str(target), actual, "copied", engine.name, round(time.monotonic() - started, 3))

    with (
        progress.task(f"mirror {len(images)} images", len(images), unit="images") as task,
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
    ):
        return list(pool.map(one, zip(images, targets, strict=True)))


def export(
    refs: Sequence[str],
    directory: str | Path,
    *,
    access: RegistryAccess | None = None,
    backend: BackendName = "auto",
    docker_client=None,
    progress: Reporter = SILENT,
) -> list[ImageCopy]:
    """Write every image into ``directory`` (see :mod:`nimrunbook.images.exports`); a re-run resumes."""
    images = parse_refs(refs)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root, "exporting images into"):  # one writer per OCI layout and its index
        engine = open_backend(backend, access, docker_client=docker_client)
        with progress.task(f"export {len(images)} images", len(images), unit="images") as task:
            return engine.export(images, root, task)


def import_(
    directory: str | Path,
    destination_registry: str,
    *,
    access: RegistryAccess | None = None,
    workers: int = 2,
    docker_client=None,
    ecr_client=None,
    staging_dir: str | Path | None = None,
    progress: Reporter = SILENT,
) -> list[ImageCopy]:
    """Push every image of an export to ``destination_registry``, same paths and tags, digests checked.

    The export is read as media (:class:`nimrunbook.images.exports.ExportFolder`): never written to, so it may be
    mounted read-only; skopeo's views are built under ``staging_dir`` (default: the system's temporary folder).
    """
    access = access or RegistryAccess()
    root = Path(directory)
    index = read_index(root)
    entries = index["images"]
    targets = [ImageRef.parse(e["source"]).moved_to(destination_registry) for e in entries]
    _prepare_destination(targets, access, ecr_client)
    engine = open_backend(index["backend"], access, docker_client=docker_client)
    with (
        staging_folder(staging_dir, root, "the export") as staging,
        progress.task(f"import {len(entries)} images", len(entries), unit="images") as task,
    ):
        return engine.import_(ExportFolder(root), entries, targets, staging, workers, task)
