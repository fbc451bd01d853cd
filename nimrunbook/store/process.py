"""Process a publish plan into a directory in the flat NIM layout (the guide's ``--process --dest-dir``).

Layout of the directory::

    objects/<key>        one file per object: upload this folder's contents to the bucket root
    nim-objects.json     versioned manifest: image, profiles, every object's key, size, sha256
    SHA256SUMS           `sha256sum -c SHA256SUMS` checks every object
    .nimrunbook/         the hash journal and files being written (never shipped)

Files are hard-linked from the cache when both sit on one filesystem (no
bytes copied) and copied otherwise, hashed while copied or in one read when
linked, written under a temporary name and renamed when complete, so a
re-run skips what is complete and nothing half-written is ever in objects/.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from nimrunbook import __version__
from nimrunbook.errors import InputError
from nimrunbook.hashing import HashJournal, copy_and_hash, sha256_file
from nimrunbook.localdisk import STATE_DIR, commit, partial_path, require_free_space, write_text_atomic
from nimrunbook.locks import folder_lock
from nimrunbook.progress import SILENT, Reporter, Task, human_bytes
from nimrunbook.store.plan import PlannedObject, PublishPlan
from nimrunbook.userfiles import read_json

log = logging.getLogger(__name__)

MANIFEST_NAME = "nim-objects.json"
SUMS_NAME = "SHA256SUMS"
OBJECTS_DIR = "objects"
MANIFEST_FORMAT = "nimrunbook.nim-objects"
MANIFEST_VERSION = 1


@dataclass
class ProcessResult:
    directory: Path
    objects: int
    bytes: int
    linked: int
    copied: int
    skipped: int
    seconds: float


def _same_filesystem(a: Path, b: Path) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def _place(obj: PlannedObject, target: Path, incomplete: Path, journal: HashJournal, link: bool, progress: Task) -> str:
    """Write one object atomically; returns 'linked', 'copied' or 'skipped' and sets obj.sha256."""
    if target.exists() and target.stat().st_size == obj.size:
        known = journal.lookup(target)
        if known:
            obj.sha256 = known
            progress.advance(obj.size)
            return "skipped"
    incomplete.unlink(missing_ok=True)
    if link:
        os.link(obj.source, incomplete)
        obj.sha256 = journal.sha256(incomplete, progress)  # same inode as the blob: one read
        commit(incomplete, target)
        return "linked"
    obj.sha256 = copy_and_hash(obj.source, target, progress, partial=incomplete)
    journal.record(target, obj.sha256)
    return "copied"


def manifest_document(plan: PublishPlan, image: str | None, profile_names: dict[str, str] | None = None) -> dict:
    return {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "tool": f"nimrunbook {__version__}",
        "image": image,
        "profiles": [{"id": pid, "name": (profile_names or {}).get(pid)} for pid in plan.profiles],
        "objects": [
            {"key": o.key, "uri": o.uri, "size": o.size, "sha256": o.sha256, "profiles": o.profiles}
            for o in plan.objects
        ],
    }


def process_to_directory(
    plan: PublishPlan,
    destination: str | Path,
    *,
    image: str | None = None,
    profile_names: dict[str, str] | None = None,
    workers: int = 2,
    journal: HashJournal | None = None,
    progress: Reporter = SILENT,
) -> ProcessResult:
    """Write ``plan`` into ``destination`` in the flat NIM layout; see the module docstring.

    ``journal``: where digests are remembered (default: in the destination). Pass the cache's
    journal to share digests between destinations: a hard link has its blob's identity.
    """
    root = Path(destination)
    root.mkdir(parents=True, exist_ok=True)
    with folder_lock(root, "processing profiles into"):  # two writers would share .incomplete names
        return _process(plan, root, image, profile_names, workers, journal, progress)


def _process(
    plan: PublishPlan,
    root: Path,
    image: str | None,
    profile_names: dict[str, str] | None,
    workers: int,
    journal: HashJournal | None,
    progress: Reporter,
) -> ProcessResult:
    objects_dir, state = root / OBJECTS_DIR, root / STATE_DIR
    objects_dir.mkdir(parents=True, exist_ok=True)
    (state / "incomplete").mkdir(parents=True, exist_ok=True)
    journal = journal or HashJournal.of_directory(root)
    link = bool(plan.objects) and _same_filesystem(plan.objects[0].source, objects_dir)
    if not link:
        require_free_space(
            root,
            sum(o.size for o in plan.objects if not (objects_dir / o.key).exists()),
            what="Processing (into another filesystem than the cache's, so files are copied)",
            hint="Choose a destination on the cache's filesystem (files are then hard-linked, using no space) "
            "or free space; complete files are kept on a re-run.",
        )
    started = time.monotonic()
    reporter = progress.task(f"process {len(plan.objects)} objects", plan.total_bytes)
    with reporter, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(
            pool.map(
                lambda o: _place(
                    o, objects_dir / o.key, partial_path(state / "incomplete" / o.key), journal, link, reporter
                ),
                sorted(plan.objects, key=lambda o: -o.size),  # largest first: no long file is left for last
            )
        )
    write_text_atomic(root / MANIFEST_NAME, json.dumps(manifest_document(plan, image, profile_names), indent=2) + "\n")
    write_text_atomic(root / SUMS_NAME, "".join(f"{o.sha256}  {OBJECTS_DIR}/{o.key}\n" for o in plan.objects))
    result = ProcessResult(
        root,
        len(plan.objects),
        plan.total_bytes,
        outcomes.count("linked"),
        outcomes.count("copied"),
        outcomes.count("skipped"),
        round(time.monotonic() - started, 3),
    )
    log.info(
        "processed %d objects (%s) into %s: %d linked, %d copied, %d already complete",
        result.objects,
        human_bytes(result.bytes),
        root,
        result.linked,
        result.copied,
        result.skipped,
    )
    return result


def load_processed(directory: str | Path) -> tuple[dict, list[PlannedObject]]:
    """Read a processed directory back: its manifest and one object per file, with recorded digests."""
    root = Path(directory)
    if not (root / MANIFEST_NAME).exists():
        raise InputError(
            f"{root} holds no {MANIFEST_NAME}: it is not a directory nimrunbook processed.",
            hint="Process the cache into it first (nimrunbook profiles process), or give the right directory.",
        )
    document = read_json(root / MANIFEST_NAME, "processed profiles manifest", hint="Process the cache again.")
    if document.get("format") != MANIFEST_FORMAT or document.get("version", 0) > MANIFEST_VERSION:
        raise InputError(
            f"{root / MANIFEST_NAME} is format {document.get('format')} version {document.get('version')}; "
            f"this nimrunbook reads {MANIFEST_FORMAT} up to version {MANIFEST_VERSION}.",
            hint="Use the nimrunbook version that wrote it, or a newer one.",
        )
    objects = [
        PlannedObject(o["key"], o["uri"], root / OBJECTS_DIR / o["key"], o["size"], list(o["profiles"]), o["sha256"])
        for o in document["objects"]
    ]
    return document, objects


def verify_directory(directory: str | Path, progress: Reporter = SILENT) -> list[str]:
    """Re-hash every object against the manifest; returns the problems (empty when all is well)."""
    _, objects = load_processed(directory)
    problems: list[str] = []
    with progress.task("verify directory", sum(o.size for o in objects)) as reporter:
        for obj in objects:
            if not obj.source.exists():
                problems.append(f"missing: {obj.key}")
            elif obj.source.stat().st_size != obj.size:
                problems.append(
                    f"truncated or grown: {obj.key} ({obj.source.stat().st_size} bytes, expected {obj.size})"
                )
            elif sha256_file(obj.source, reporter) != obj.sha256:
                problems.append(f"corrupt: {obj.key} (sha256 differs)")
    return problems
