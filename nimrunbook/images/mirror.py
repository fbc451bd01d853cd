"""Mirror, export and import NIM images, keeping paths, tags and (with skopeo) manifest digests.

NIM images are 10-30 GB each, and the digest approved outside must be the
digest that runs inside. So every copy is checked: an image whose digest is
already at the destination is skipped, and a digest that differs after the
copy is an error, never a warning. Several images copy in parallel, except
into one OCI layout, whose index must never have two writers.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from nimrunbook.engine import registry_failure
from nimrunbook.errors import InputError, VerificationError
from nimrunbook.images import skopeo
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.docker_backend import ARCHIVE_NAME, DockerBackend
from nimrunbook.images.ecr import is_ecr, prepare_ecr
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.skopeo import SkopeoBackend, dir_view_of_layout
from nimrunbook.localdisk import require_free_space, write_text_atomic
from nimrunbook.progress import SILENT, Reporter

log = logging.getLogger(__name__)

BackendName = Literal["auto", "skopeo", "docker"]
OCI_DIR = "oci"
INDEX_NAME = "images.json"  # what the export holds, for the run record and the import


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


def _backend(name: BackendName, access: RegistryAccess, docker_client=None):
    if name == "skopeo" or (name == "auto" and skopeo.available()):
        if not skopeo.available():
            raise InputError("skopeo is not installed.", hint="apt-get install skopeo, or use backend='docker'.")
        return SkopeoBackend(access)
    if docker_client is None:
        from nimrunbook.engine import docker_client as connect

        docker_client = connect()
    return DockerBackend(docker_client, access)


def _parse_all(refs: Sequence[str]) -> list[ImageRef]:
    if not refs:
        raise InputError(
            "No images given.", hint="Name at least one image, e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5."
        )
    return [ImageRef.parse(r) for r in refs]


def _check_digest(expected: str | None, actual: str | None, destination: ImageRef) -> None:
    if expected and actual != expected:
        raise VerificationError(
            f"{destination} has digest {actual} after the copy, but the source has {expected}.",
            hint="Do not deploy it. Delete the tag at the destination and mirror again; if it recurs, the registry "
            "rewrites manifests (use skopeo, or a registry that stores manifests as pushed).",
        )


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
    images = _parse_all(refs)
    targets = [image.moved_to(destination_registry) for image in images]
    if is_ecr(targets[0].registry):
        created = prepare_ecr(targets[0].registry, [t.path for t in targets], access, ecr_client)
        log.info("created ECR repositories: %s", ", ".join(created) or "none needed")
    engine = _backend(backend, access, docker_client)
    reporter = progress.task(f"mirror {len(images)} images", len(images), unit="images")

    def one(pair: tuple[ImageRef, ImageRef]) -> ImageCopy:
        source, target = pair
        started = time.monotonic()
        expected = engine.digest(source)
        if expected is None:
            raise registry_missing(source)
        if engine.digest(target) == expected:
            log.info("%s already has %s (%s); skipped", target, source, expected)
            reporter.advance(1)
            return ImageCopy(str(source), str(target), expected, "skipped", engine.name, 0.0)
        if isinstance(engine, SkopeoBackend):
            engine.copy(f"docker://{source}", f"docker://{target}", source.registry, target.registry, str(source))
        else:
            engine.pull(source)
            engine.push(str(source), target)
        actual = engine.digest(target)
        _check_digest(expected, actual, target)
        reporter.advance(1)
        return ImageCopy(str(source), str(target), actual, "copied", engine.name, round(time.monotonic() - started, 3))

    with reporter, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, zip(images, targets, strict=True)))


def registry_missing(ref: ImageRef):
    return registry_failure(f"manifest unknown: no tag {ref.tag} in {ref.registry}", str(ref))


def _read_index(directory: Path) -> dict:
    try:
        return json.loads((directory / INDEX_NAME).read_text())
    except FileNotFoundError:
        raise InputError(
            f"{directory} holds no {INDEX_NAME}: it is not an image export of nimrunbook.",
            hint="Give the directory `nimrunbook images export` wrote.",
        ) from None


def _write_index(directory: Path, document: dict) -> None:
    write_text_atomic(directory / INDEX_NAME, json.dumps(document, indent=2) + "\n")


def export(
    refs: Sequence[str],
    directory: str | Path,
    *,
    access: RegistryAccess | None = None,
    backend: BackendName = "auto",
    docker_client=None,
    progress: Reporter = SILENT,
) -> list[ImageCopy]:
    """Write every image into ``directory``: one OCI layout whose index names each ref (skopeo), or one
    ``docker save`` archive (Docker backend). Images go in one at a time: one writer per layout."""
    access = access or RegistryAccess()
    images = _parse_all(refs)
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    engine = _backend(backend, access, docker_client)
    done = {e["source"]: e for e in _read_index(root)["images"]} if (root / INDEX_NAME).exists() else {}
    results: list[ImageCopy] = []
    with progress.task(f"export {len(images)} images", len(images), unit="images") as reporter:
        if isinstance(engine, SkopeoBackend):
            _check_space(root, sum(engine.layer_bytes(i) for i in images if str(i) not in done))
            for image in images:
                started = time.monotonic()
                expected = engine.digest(image)
                if expected is None:
                    raise registry_missing(image)
                name = f"oci:{OCI_DIR}:{image}"
                if done.get(str(image), {}).get("digest") == expected:
                    result = ImageCopy(str(image), name, expected, "skipped", engine.name, 0.0)
                else:
                    written = engine.copy(
                        f"docker://{image}", f"oci:{root / OCI_DIR}:{image}", image.registry, None, str(image)
                    )
                    _check_digest(expected, written, image)
                    result = ImageCopy(
                        str(image), name, written, "copied", engine.name, round(time.monotonic() - started, 3)
                    )
                results.append(result)
                done[str(image)] = result.as_dict()
                _write_index(
                    root,
                    {
                        "format": "nimrunbook.images",
                        "version": 1,
                        "backend": engine.name,
                        "images": list(done.values()),
                    },
                )
                reporter.advance(1)
        else:
            started = time.monotonic()
            for image in images:
                engine.pull(image)
            _check_space(root, sum(engine.image_bytes(str(i)) for i in images))
            engine.save([str(i) for i in images], root / ARCHIVE_NAME)
            for image in images:
                results.append(
                    ImageCopy(
                        str(image),
                        ARCHIVE_NAME,
                        engine.digest(image),
                        "copied",
                        engine.name,
                        round(time.monotonic() - started, 3),
                        engine.image_id(str(image)),
                    )
                )
                reporter.advance(1)
            _write_index(
                root,
                {
                    "format": "nimrunbook.images",
                    "version": 1,
                    "backend": engine.name,
                    "images": [r.as_dict() for r in results],
                },
            )
    return results


def _check_space(directory: Path, needed: int) -> None:
    require_free_space(
        directory,
        needed,
        what="The export",
        hint="Free space or export to a larger disk; images already exported are kept and skipped on a re-run.",
    )


def import_(
    directory: str | Path,
    destination_registry: str,
    *,
    access: RegistryAccess | None = None,
    workers: int = 2,
    docker_client=None,
    ecr_client=None,
    progress: Reporter = SILENT,
) -> list[ImageCopy]:
    """Push every image of an export to ``destination_registry``, same paths and tags, digests checked."""
    access = access or RegistryAccess()
    root = Path(directory)
    index = _read_index(root)
    entries = index["images"]
    targets = [ImageRef.parse(e["source"]).moved_to(destination_registry) for e in entries]
    if targets and is_ecr(targets[0].registry):
        prepare_ecr(targets[0].registry, [t.path for t in targets], access, ecr_client)
    engine = _backend(index["backend"], access, docker_client)
    reporter = progress.task(f"import {len(entries)} images", len(entries), unit="images")

    def one(pair: tuple[dict, ImageRef]) -> ImageCopy:
        entry, target = pair
        started = time.monotonic()
        if engine.digest(target) == entry["digest"]:
            reporter.advance(1)
            return ImageCopy(entry["source"], str(target), entry["digest"], "skipped", engine.name, 0.0)
        with tempfile.TemporaryDirectory(dir=root, prefix=".import-") as view:
            dir_view_of_layout(root / OCI_DIR, entry["source"], Path(view) / "image")
            engine.copy(f"dir:{Path(view) / 'image'}", f"docker://{target}", None, target.registry, entry["source"])
        actual = engine.digest(target)
        _check_digest(entry["digest"], actual, target)
        reporter.advance(1)
        return ImageCopy(
            entry["source"], str(target), actual, "copied", engine.name, round(time.monotonic() - started, 3)
        )

    with reporter:
        if isinstance(engine, SkopeoBackend):
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                return list(pool.map(one, zip(entries, targets, strict=True)))
        engine.load(root / ARCHIVE_NAME)
        results = []
        for entry, target in zip(entries, targets, strict=True):
            started = time.monotonic()
            if engine.image_id(entry["source"]) != entry["image_id"]:
                raise VerificationError(
                    f"The archive's {entry['source']} is not the image that was exported.",
                    hint="The export was altered or mixed up; export it again.",
                )
            engine.push(entry["source"], target)
            results.append(
                ImageCopy(
                    entry["source"],
                    str(target),
                    engine.digest(target),
                    "copied",
                    engine.name,
                    round(time.monotonic() - started, 3),
                    entry["image_id"],
                )
            )
            reporter.advance(1)
        return results
