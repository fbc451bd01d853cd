"""Push a verified bundle's images to the internal registry, reading only what verification hashed.

The images imported are the ones the verified bundle.json names, with the
digest it names. The OCI layout's index and every manifest are read through
the confinement module and must hash to their SHA256SUMS digest, so the bytes
parsed are the bytes verified; every digest they name must be a well-formed
sha256, which then is the only path it can lead to (``blobs/sha256/<hex>``),
and that blob must have hashed to it. skopeo reads each image from a ``dir:``
view built in the staging folder, outside the bundle (the media may be
read-only): symbolic links to the verified blobs, so no byte is copied.

The nimrunbook.images import does the same for a plain export folder, but
builds its view inside that folder, by hard links, and trusts the names in
it; it is not used for bundles.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nimrunbook.bundle import layout
from nimrunbook.bundle.confine import BundleDir
from nimrunbook.bundle.verify import VerifiedBundle
from nimrunbook.errors import InputError, VerificationError
from nimrunbook.images import ImageCopy, RegistryAccess
from nimrunbook.images.ecr import is_ecr, prepare_ecr
from nimrunbook.images.mirror import _backend, _check_digest
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.skopeo import LIST_TYPES, SkopeoBackend
from nimrunbook.progress import ProgressMode, make_progress

_DIGEST = re.compile(r"sha256:(?P<hex>[0-9a-f]{64})")
MAX_MANIFESTS = 256  # per image: a list of a few platforms, each one manifest; never a loop


def _refused(message: str) -> VerificationError:
    return VerificationError(message, hint="Do not import this bundle; it was not written by nimrunbook bundle create.")


def _verified_json(root: BundleDir, verified: VerifiedBundle, name: str):
    """A JSON file of the bundle, parsed from bytes that hash to what verification hashed."""
    data = root.read(name)
    if hashlib.sha256(data).hexdigest() != verified.digest(name):
        raise _refused(f"{name} changed since it was verified.")
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _refused(f"{name} is not JSON.") from None


def _blob(verified: VerifiedBundle, digest: object) -> str:
    """The bundle path of a blob, from a digest that must be a well-formed sha256 that verification hashed."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if not match:
        raise _refused(f"The image layout names a blob {str(digest)[:80]!r}, which is not a sha256 digest.")
    name = f"{layout.OCI_LAYOUT}/blobs/sha256/{match['hex']}"
    if verified.digest(name) != match["hex"]:
        raise _refused(f"The blob {name} did not hash to its name.")
    return name


def dir_view(root: BundleDir, verified: VerifiedBundle, index: dict, entry: dict, view: Path) -> None:
    """Present the image ``entry`` of the bundle's OCI layout in skopeo's ``dir:`` format at ``view``."""
    source, digest = entry["source"], entry.get("digest")
    named = [
        m
        for m in index.get("manifests", [])
        if isinstance(m, dict) and (m.get("annotations") or {}).get("org.opencontainers.image.ref.name") == source
    ]
    if len(named) != 1 or named[0].get("digest") != digest:
        raise _refused(
            f"The bundle's image layout does not hold {source} with the digest bundle.json names ({digest})."
        )
    view.mkdir(parents=True)
    (view / "version").write_text("Directory Transport Version: 1.1\n")
    top = _blob(verified, digest)
    (view / "manifest.json").symlink_to(root.real_path(top))
    pending, seen = [top], {top}
    while pending:
        manifest = _verified_json(root, verified, pending.pop())
        if not isinstance(manifest, dict):
            raise _refused(f"A manifest of {source} is not a JSON object.")
        if manifest.get("mediaType") in LIST_TYPES or "manifests" in manifest:
            children, suffix = manifest.get("manifests"), ".manifest.json"
        else:
            children, suffix = [manifest.get("config"), *(manifest.get("layers") or [])], ""
        if not isinstance(children, list) or not all(isinstance(c, dict) for c in children):
            raise _refused(f"A manifest of {source} does not list its parts as entries.")
        for child in children:
            name = _blob(verified, child.get("digest"))
            link = view / (name.rsplit("/", 1)[1] + suffix)
            if not link.is_symlink():
                link.symlink_to(root.real_path(name))
            if suffix and name not in seen:
                seen.add(name)
                pending.append(name)
                if len(seen) > MAX_MANIFESTS:
                    raise _refused(f"The manifests of {source} name more than {MAX_MANIFESTS} manifests.")


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
    progress: ProgressMode = "log",
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
        raise _refused(f"bundle.json names an image that is not a reference: {error.message}") from None
    if is_ecr(targets[0].registry):
        prepare_ecr(targets[0].registry, [t.path for t in targets], access, ecr_client)
    engine = _backend(backends.pop(), access, docker_client)
    reporter = make_progress(progress, f"import {len(entries)} images", len(entries), unit="images")
    with reporter:
        if isinstance(engine, SkopeoBackend):
            index = _verified_json(root, verified, f"{layout.OCI_LAYOUT}/index.json")
            if not isinstance(index, dict):
                raise _refused("The bundle's image layout index is not a JSON object.")

            def one(numbered: tuple[int, dict, ImageRef]) -> ImageCopy:
                number, entry, target = numbered
                started = time.monotonic()
                if engine.digest(target) == entry["digest"]:
                    reporter.advance(1)
                    return ImageCopy(entry["source"], str(target), entry["digest"], "skipped", engine.name, 0.0)
                view = staging / f"image-{number}"  # named by position: nothing from the bundle names a path here
                dir_view(root, verified, index, entry, view)
                engine.copy(f"dir:{view}", f"docker://{target}", None, target.registry, entry["source"])
                actual = engine.digest(target)
                _check_digest(entry["digest"], actual, target)
                reporter.advance(1)
                elapsed = round(time.monotonic() - started, 3)
                return ImageCopy(entry["source"], str(target), actual, "copied", engine.name, elapsed)

            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                return list(pool.map(one, [(n, e, t) for n, (e, t) in enumerate(zip(entries, targets, strict=True))]))
        verified.digest(layout.DOCKER_ARCHIVE)
        engine.load(root.real_path(layout.DOCKER_ARCHIVE))
        results = []
        for entry, target in zip(entries, targets, strict=True):
            started = time.monotonic()
            if engine.image_id(entry["source"]) != entry.get("image_id"):
                raise _refused(f"The archive's {entry['source']} is not the image bundle.json names.")
            engine.push(entry["source"], target)
            elapsed = round(time.monotonic() - started, 3)
            results.append(
                ImageCopy(
                    entry["source"],
                    str(target),
                    engine.digest(target),
                    "copied",
                    engine.name,
                    elapsed,
                    entry["image_id"],
                )
            )
            reporter.advance(1)
        return results
