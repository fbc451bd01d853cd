"""Create a bundle on removable media: images, profiles, a manifest, checksums and a signature.

No gzip anywhere: weights do not compress, and gzip runs at tens of MB/s.
Every payload byte is read once, hashed while it is written to the media.
Writing is resumable (a re-run skips complete files) and atomic per file.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nimrunbook import __version__
from nimrunbook.bundle import guard, layout, signing
from nimrunbook.bundle.parts import WriteRecord, WrittenFile, write_file
from nimrunbook.bundle.wheelhouse import (
    Wheelhouse,
    WheelhouseRequest,
    build_wheelhouse,
    left_out_because,
    remove_wheelhouse,
    wheelhouse_readme_lines,
)
from nimrunbook.hashing import FilePool, HashJournal, sha256_file
from nimrunbook.images import ImageBackend, ImageCopy, RegistryAccess, export
from nimrunbook.images.backend import BackendName, open_backend
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import INCOMPLETE_SUFFIX, require_free_space, write_text_atomic
from nimrunbook.progress import SILENT, Reporter, human_bytes
from nimrunbook.store.plan import PlannedObject, PublishPlan

log = logging.getLogger(__name__)


@dataclass
class BundleResult:
    path: Path
    files: int
    bytes: int
    objects_written: int
    objects_skipped: int
    left_out: dict = field(default_factory=dict)
    signed: bool = False
    seconds: float = 0.0
    wheelhouse: dict | None = None  # bundle.json's entry: what the wheelhouse carries, for whom


def _files_under(root: Path, relative_dir: str) -> list[Path]:
    base = root / relative_dir
    if not base.exists():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.endswith(INCOMPLETE_SUFFIX))


def _image_file_entries(root: Path) -> list[dict]:
    """Checksums of the exported images. OCI blobs are named by their sha256 and were verified by
    skopeo as it wrote them, so their names are their checksums; other files are hashed."""
    entries = []
    for path in _files_under(root, layout.IMAGES_DIR):
        relative = path.relative_to(root).as_posix()
        digest = path.name if path.parent.name == "sha256" and path.parent.parent.name == "blobs" else sha256_file(path)
        entries.append({"path": relative, "size": path.stat().st_size, "sha256": digest})
    return entries


def _readme(document: dict) -> str:
    signed = document.get("signed")
    key = "--public-key signer.pub" if signed else "--allow-unsigned"
    lines = [
        "NVIDIA NIM offline bundle (made by nimrunbook)",
        "=" * 46,
        "",
        f"Created {document['created']} on {document['host']} by {document['user']} with {document['tool']}.",
        f"Images: {len(document['images'])}; profile objects: {len(document['objects'])}; "
        f"profiles: {', '.join(p['name'] or p['id'][:12] for p in document['profiles']) or 'none'}.",
        "",
        "1. Check every file (run in this folder):",
        "",
        f"     sha256sum -c {layout.SUMS}",
        "",
    ]
    if signed:
        lines += [
            "2. Check the signature (signer.pub: the signer's public key, handed over separately):",
            "",
            f"     {signing.verify_command(layout.SUMS)}",
            f"     {signing.verify_command(layout.MANIFEST)}",
            "",
        ]
    else:
        lines += ["2. This bundle is not signed.", ""]
    lines += [
        "3. Install nimrunbook from this bundle, when the host inside has none (or an older one):",
        "",
        *wheelhouse_readme_lines(document.get("wheelhouse"), document["left_out"].get("wheelhouse")),
        "4. Verify, import and record it with nimrunbook (refuses a bundle that does not verify):",
        "",
        f"     nimrunbook bundle verify . {key}",
        f"     nimrunbook bundle import . {key} --registry <internal-registry> --bucket <bucket> --endpoint-url <https://...>",
        "",
        f"Without nimrunbook: images are an OCI image layout in {layout.IMAGES_DIR}/oci (skopeo or crane can push",
        f"them by name); profile objects are in {layout.OBJECTS_DIR}/, one file per object, named as the object key",
        "(upload them to the bucket root, e.g. aws s3 cp profiles/objects/ s3://<bucket>/ --recursive). Files split",
        "into .partNNNN pieces must be joined first (cat NAME.part* > NAME).",
        "",
    ]
    return "\n".join(lines)


@dataclass
class _LeftOut:
    """What the inside already has (from its inventory), so this bundle does not carry it."""

    images: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    wheelhouse: str | None = None  # why the wheelhouse is not carried, when it was asked for

    def as_dict(self) -> dict:
        return {"images": self.images, "objects": self.objects, "wheelhouse": self.wheelhouse}


def _leave_out_images(images: list[str], have: dict, open_images: Callable[[], ImageBackend]) -> list[str]:
    """The images whose digest inside (``have``) is the digest they have here now."""
    if not (have and images):
        return []
    engine = open_images()
    return [ref for ref in images if have.get(ref) and have[ref] == engine.digest(ImageRef.parse(ref))]


def _leave_out_objects(objects: list[PlannedObject], have: dict, journal: HashJournal | None) -> list[str]:
    """The objects the bucket inside holds with the same size and sha256."""
    left_out = []
    for obj in objects:
        there = have.get(obj.key)
        if there and there.get("size") == obj.size and there.get("sha256") == obj.digest(journal):
            left_out.append(obj.key)
    return left_out


def _carry_wheelhouse(
    root: Path, request: WheelhouseRequest | None, have: dict, left_out: _LeftOut, progress: Reporter
) -> Wheelhouse | None:
    """The wheelhouse for the inside, unless not asked for or the inside has this nimrunbook already."""
    left_out.wheelhouse = left_out_because(request, have) if request else None
    if request is None or left_out.wheelhouse:
        remove_wheelhouse(root)
        return None
    return build_wheelhouse(root, request, progress)


def _object_path(obj: PlannedObject) -> str:
    return f"{layout.OBJECTS_DIR}/{obj.key}"


def _write_objects(
    root: Path,
    record: WriteRecord,
    objects: list[PlannedObject],
    part_size: int | None,
    journal: HashJournal | None,
    progress: Reporter,
) -> tuple[dict[str, WrittenFile], int]:
    """Copy each object to the media (hashed on the way), several at once, skipping what an earlier run completed.

    Each object is recorded as soon as it is complete, so a failure (a pulled drive, a full disk) or an interrupt,
    which stops the others within one buffer (:class:`hashing.FilePool`), keeps every object already written.
    """
    complete: dict[str, WrittenFile] = {}
    for obj in objects:
        if (done := record.complete(root, _object_path(obj))) is not None:
            complete[obj.key] = done
    pending = [o for o in objects if o.key not in complete]
    pool = FilePool()

    def write(obj: PlannedObject) -> WrittenFile:
        done = write_file(obj.source, root, _object_path(obj), part_size, task, cancel=pool.cancel)
        record.add(done)
        if journal is not None and not done.parts and journal.lookup(obj.source) is None:
            journal.record(obj.source, done.sha256)  # the cache blob need not be hashed again
        return done

    with progress.task(f"write {len(pending)} profile objects", sum(o.size for o in pending)) as task:
        fresh = pool.map(write, pending, size=lambda o: o.size)
    complete.update((obj.key, done) for obj, done in zip(pending, fresh, strict=True))
    written = {obj.key: complete[obj.key] for obj in objects}  # in the plan's order, however they completed
    for obj in objects:
        obj.sha256 = written[obj.key].sha256
    return written, len(objects) - len(pending)


def _document(
    image_copies: list[ImageCopy],
    plan: PublishPlan | None,
    objects: list[PlannedObject],
    written: dict[str, WrittenFile],
    *,
    profile_names: dict[str, str] | None,
    inside: dict | None,
    left_out: _LeftOut,
    part_size: int | None,
    signed: bool,
    carried: Wheelhouse | None,
) -> dict:
    """bundle.json: what the bundle holds and for whom; ``files`` is filled in when the media is sealed."""
    return {
        "format": layout.FORMAT,
        "version": layout.VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "tool": f"nimrunbook {__version__}",
        "images": [c.as_dict() for c in image_copies],
        "profiles": [{"id": pid, "name": (profile_names or {}).get(pid)} for pid in (plan.profiles if plan else [])],
        "objects": [
            {
                "key": o.key,
                "uri": o.uri,
                "size": o.size,
                "sha256": o.sha256,
                "profiles": o.profiles,
                "path": written[o.key].path,
                "parts": written[o.key].parts,
            }
            for o in objects
        ],
        "inside": inside or {},
        "wheelhouse": carried.document if carried else None,
        "left_out": left_out.as_dict(),
        "part_size": part_size,
        "signed": signed,
        "files": [],
    }


def _seal(root: Path, document: dict, files: list[dict], sign_key: str | Path | None) -> list[dict]:
    """Write the README, bundle.json and SHA256SUMS (each atomically, in that order), then sign or unsign."""
    write_text_atomic(root / layout.README, _readme(document))
    readme = root / layout.README
    files = [*files, {"path": layout.README, "size": readme.stat().st_size, "sha256": sha256_file(readme)}]
    document["files"] = files
    write_text_atomic(root / layout.MANIFEST, json.dumps(document, indent=2) + "\n")
    manifest_sha = hashlib.sha256((root / layout.MANIFEST).read_bytes()).hexdigest()
    sums = "".join(f"{f['sha256']}  {f['path']}\n" for f in files) + f"{manifest_sha}  {layout.MANIFEST}\n"
    write_text_atomic(root / layout.SUMS, sums)
    for name in layout.SIGNED_FILES:
        if sign_key:
            signing.sign(root / name, sign_key)
        else:
            (root / f"{name}.sig").unlink(missing_ok=True)
    return files


@guard.one_writer
def create(
    destination: str | Path,
    *,
    images: Sequence[str] = (),
    plan: PublishPlan | None = None,
    profile_names: dict[str, str] | None = None,
    inside: dict | None = None,
    have: dict | None = None,
    sign_key: str | Path | None = None,
    part_size: int | None = None,
    access: RegistryAccess | None = None,
    image_backend: BackendName = "auto",
    journal: HashJournal | None = None,
    docker_client=None,
    progress: Reporter = SILENT,
    force: bool = False,
    wheelhouse: WheelhouseRequest | None = None,
) -> BundleResult:
    """Write a bundle into ``destination`` (a folder on the removable media), in phases:

    0. claim the folder: its lock, and no other bundle there unless ``force`` (:mod:`nimrunbook.bundle.guard`);
    1. leave out what the inside already has (``have``: its inventory);
    2. check the media has room for the profile objects still to write;
    3. the wheelhouse: nimrunbook and its dependencies for the inside, with install.sh (when ``wheelhouse`` asks
       for it; first, because it needs the package index and fails fastest; :mod:`nimrunbook.bundle.wheelhouse`);
    4. export the images (skipping those exported before);
    5. write the profile objects, split into ``part_size`` parts where asked;
    6. seal: README, bundle.json, SHA256SUMS, and the signature with ``sign_key``.
    """
    started = time.monotonic()
    root = Path(destination)
    guard.claim(root, guard.request_of(images, plan, part_size), force=force)
    (root / layout.STATE_DIR).mkdir(parents=True, exist_ok=True)
    record = WriteRecord(root / layout.STATE_DIR / "written.jsonl")
    have = have or {}

    left_out = _LeftOut(
        _leave_out_images(
            list(images),
            have.get("images", {}),
            lambda: open_backend(image_backend, access, docker_client=docker_client),
        ),
        _leave_out_objects(list(plan.objects) if plan else [], have.get("objects", {}), journal),
    )
    wanted_images = [ref for ref in images if ref not in left_out.images]
    objects = [o for o in (plan.objects if plan else []) if o.key not in left_out.objects]

    require_free_space(
        root,
        sum(o.size for o in objects if record.complete(root, _object_path(o)) is None),
        what="The bundle's profiles (the images come on top)",
        hint="Use larger media, or make an incremental bundle against the inside's inventory (have=...); "
        "files already written are kept on a re-run.",
    )
    carried = _carry_wheelhouse(root, wheelhouse, have, left_out, progress)
    image_copies = []
    if wanted_images:
        image_copies = export(
            wanted_images,
            root / layout.IMAGES_DIR,
            access=access,
            backend=image_backend,
            docker_client=docker_client,
            progress=progress,
        )
    written, skipped = _write_objects(root, record, objects, part_size, journal, progress)

    files = _image_file_entries(root)
    for done in written.values():
        files += done.parts or [{"path": done.path, "size": done.size, "sha256": done.sha256}]
    files += carried.files if carried else []
    document = _document(
        image_copies,
        plan,
        objects,
        written,
        profile_names=profile_names,
        inside=inside,
        left_out=left_out,
        part_size=part_size,
        signed=bool(sign_key),
        carried=carried,
    )
    files = _seal(root, document, files, sign_key)

    result = BundleResult(
        root,
        len(files) + 2,
        sum(f["size"] for f in files),
        len(objects) - skipped,
        skipped,
        left_out.as_dict(),
        bool(sign_key),
        round(time.monotonic() - started, 3),
        carried.document if carried else None,
    )
    log.info(
        "bundle written to %s: %d files, %s; %d objects written, %d already there; left out %d images, %d objects",
        root,
        result.files,
        human_bytes(result.bytes),
        result.objects_written,
        skipped,
        len(left_out.images),
        len(left_out.objects),
    )
    return result
