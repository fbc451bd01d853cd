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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nimrunbook import __version__
from nimrunbook.bundle import layout, signing
from nimrunbook.bundle.parts import WriteRecord, WrittenFile, write_file
from nimrunbook.hashing import HashJournal, sha256_file
from nimrunbook.images import RegistryAccess, export
from nimrunbook.images.backend import BackendName, open_backend
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import require_free_space, write_text_atomic
from nimrunbook.progress import SILENT, Reporter, human_bytes
from nimrunbook.store.plan import PublishPlan

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


def _files_under(root: Path, relative_dir: str) -> list[Path]:
    base = root / relative_dir
    if not base.exists():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.endswith(".incomplete"))


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
        "3. Verify, import and record it with nimrunbook (refuses a bundle that does not verify):",
        "",
        "     nimrunbook bundle verify . [--public-key signer.pub]",
        "     nimrunbook bundle import . --registry <internal-registry> --bucket <bucket> --endpoint-url <https://...>",
        "",
        f"Without nimrunbook: images are an OCI image layout in {layout.IMAGES_DIR}/oci (skopeo or crane can push",
        f"them by name); profile objects are in {layout.OBJECTS_DIR}/, one file per object, named as the object key",
        "(upload them to the bucket root, e.g. aws s3 cp profiles/objects/ s3://<bucket>/ --recursive). Files split",
        "into .partNNNN pieces must be joined first (cat NAME.part* > NAME).",
        "",
    ]
    return "\n".join(lines)


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
) -> BundleResult:
    """Write a bundle into ``destination`` (a folder on the removable media)."""
    started = time.monotonic()
    root = Path(destination)
    (root / layout.STATE_DIR).mkdir(parents=True, exist_ok=True)
    record = WriteRecord(root / layout.STATE_DIR / "written.jsonl")
    access = access or RegistryAccess()
    have = have or {}
    have_objects, have_images = have.get("objects", {}), have.get("images", {})
    left_out: dict[str, list] = {"images": [], "objects": []}

    wanted_images = list(images)
    if have_images and wanted_images:
        engine = open_backend(image_backend, access, docker_client=docker_client)
        current = {ref: engine.digest(ImageRef.parse(ref)) for ref in wanted_images}
        left_out["images"] = [ref for ref in wanted_images if have_images.get(ref) and have_images[ref] == current[ref]]
        wanted_images = [ref for ref in wanted_images if ref not in left_out["images"]]

    objects = list(plan.objects) if plan else []
    if have_objects:
        kept = []
        for obj in objects:
            there = have_objects.get(obj.key)
            if there and there.get("size") == obj.size and there.get("sha256") == obj.digest(journal):
                left_out["objects"].append(obj.key)
            else:
                kept.append(obj)
        objects = kept

    pending = [o for o in objects if record.complete(root, f"{layout.OBJECTS_DIR}/{o.key}") is None]
    needed = sum(o.size for o in pending)
    require_free_space(
        root,
        needed,
        what="The bundle's profiles (the images come on top)",
        hint="Use larger media, or make an incremental bundle against the inside's inventory (have=...); "
        "files already written are kept on a re-run.",
    )

    image_results = []
    if wanted_images:
        image_results = export(
            wanted_images,
            root / layout.IMAGES_DIR,
            access=access,
            backend=image_backend,
            docker_client=docker_client,
            progress=progress,
        )

    written: dict[str, WrittenFile] = {}
    skipped = 0
    with progress.task(f"write {len(pending)} profile objects", needed) as reporter:
        for obj in objects:
            relative = f"{layout.OBJECTS_DIR}/{obj.key}"
            done = record.complete(root, relative)
            if done is None:
                done = write_file(obj.source, root, relative, part_size, reporter)
                record.add(done)
                if journal is not None and not done.parts and journal.lookup(obj.source) is None:
                    journal.record(obj.source, done.sha256)  # the cache blob need not be hashed again
            else:
                skipped += 1
            obj.sha256 = done.sha256
            written[obj.key] = done

    files = _image_file_entries(root)
    for done in written.values():
        files += done.parts if done.parts else [{"path": done.path, "size": done.size, "sha256": done.sha256}]

    document = {
        "format": layout.FORMAT,
        "version": layout.VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "user": getpass.getuser(),
        "tool": f"nimrunbook {__version__}",
        "images": [r.as_dict() for r in image_results],
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
        "left_out": left_out,
        "part_size": part_size,
        "signed": bool(sign_key),
        "files": [],
    }
    write_text_atomic(root / layout.README, _readme(document))
    readme = root / layout.README
    files.append({"path": layout.README, "size": readme.stat().st_size, "sha256": sha256_file(readme)})
    document["files"] = files
    write_text_atomic(root / layout.MANIFEST, json.dumps(document, indent=2) + "\n")
    manifest_sha = hashlib.sha256((root / layout.MANIFEST).read_bytes()).hexdigest()
    sums = "".join(f"{f['sha256']}  {f['path']}\n" for f in files) + f"{manifest_sha}  {layout.MANIFEST}\n"
    write_text_atomic(root / layout.SUMS, sums)
    if sign_key:
        for name in layout.SIGNED_FILES:
            signing.sign(root / name, sign_key)
    else:
        for name in layout.SIGNED_FILES:
            (root / f"{name}.sig").unlink(missing_ok=True)
    result = BundleResult(
        root,
        len(files) + 2,
        sum(f["size"] for f in files),
        len(objects) - skipped,
        skipped,
        left_out,
        bool(sign_key),
        round(time.monotonic() - started, 3),
    )
    log.info(
        "bundle written to %s: %d files, %s; %d objects written, %d already there; left out %d images, %d objects",
        root,
        result.files,
        human_bytes(result.bytes),
        result.objects_written,
        skipped,
        len(left_out["images"]),
        len(left_out["objects"]),
    )
    return result
