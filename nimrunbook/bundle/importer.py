"""Import a verified bundle inside the secure zone: images to the registry, profiles to the bucket.

Refuses a bundle that does not verify, then uses only what verification
hashed: the verified bundle.json, files through the confinement module, and
for every object the sha256 verification computed (never bundle.json's digest
alone), which the upload checks again against the bytes it sends. Nothing is
written inside the bundle, which is often read-only media: split files are
joined, and the images' ``dir:`` views built, in a staging folder outside it,
named by position, never by a key from the bundle. The free space there is
checked before a byte is joined, and split objects are joined a batch at a
time, each batch uploaded and removed before the next, so the staging folder
needs room for the largest of them, not for all. It resumes like the images and
store modules do (present digests and objects are skipped) and verifies the
bucket and the registry against the bundle's manifest at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nimrunbook.bundle.confine import BundleDir
from nimrunbook.bundle.image_import import import_images
from nimrunbook.bundle.parts import reassemble
from nimrunbook.bundle.verify import VerificationReport, VerifiedBundle, verify
from nimrunbook.errors import DiskSpaceError, InputError, VerificationError
from nimrunbook.images import ImageCopy, RegistryAccess
from nimrunbook.localdisk import free_bytes, staging_folder
from nimrunbook.locks import folder_lock
from nimrunbook.progress import SILENT, Reporter, human_bytes
from nimrunbook.store import S3Settings, TransferResult, make_client, publish
from nimrunbook.store import verify as verify_bucket
from nimrunbook.store.client import S3_FAILURES, stat_object, storage_error
from nimrunbook.store.plan import PlannedObject
from nimrunbook.store.upload import require_verified

log = logging.getLogger(__name__)

STAGING_RESERVE = 64 * 1024 * 1024  # left free in the staging folder for everyone else


@dataclass
class ImportResult:
    verification: VerificationReport
    images: list[ImageCopy] = field(default_factory=list)
    upload: TransferResult | None = None
    bucket_check: pd.DataFrame | None = None


def _planned(entry: dict, source: Path, sha256: str) -> PlannedObject:
    """The upload of one object: ``sha256`` is what verification computed, and the upload checks it again."""
    return PlannedObject(entry["key"], entry["uri"], source, entry["size"], list(entry.get("profiles") or []), sha256)


def _missing_from_bucket(objects: list[dict], settings: S3Settings, workers: int) -> list[dict]:
    """The split objects the bucket does not hold yet with their size and sha256 (joining them costs time and room)."""
    if not objects:
        return []
    client = make_client(settings, max_connections=workers * 2 + 2)

    def absent(entry: dict) -> bool:
        try:
            return stat_object(client, settings.bucket, entry["key"]) != (entry["size"], entry["sha256"])
        except S3_FAILURES as exc:
            raise storage_error(exc, settings, f"checking {entry['key']}") from exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return [e for e, missing in zip(objects, pool.map(absent, objects), strict=True) if missing]


def _batches(objects: list[dict], room: int) -> Iterator[list[dict]]:
    batch, size = [], 0
    for entry in sorted(objects, key=lambda e: e["size"]):
        if batch and size + entry["size"] > room:
            yield batch
            batch, size = [], 0
        batch.append(entry)
        size += entry["size"]
    if batch:
        yield batch


def _to_join(verified: VerifiedBundle, settings: S3Settings, staging: Path, workers: int) -> tuple[list[dict], int]:
    """The split objects to join (those the bucket lacks) and the room to join them in; checked before any
    work starts, so a staging folder that is too small is said at once, not after the images were pushed."""
    split = [e for e in verified.manifest["objects"] if e.get("parts")]
    for entry in split:
        for part in entry["parts"]:
            verified.digest(part["path"])
    to_join = _missing_from_bucket(split, settings, workers)
    room = free_bytes(staging) - STAGING_RESERVE
    largest = max((e["size"] for e in to_join), default=0)
    if largest > room:
        raise DiskSpaceError(
            f"Joining the split files of the bundle needs {human_bytes(largest)} free in the staging folder "
            f"{staging.parent} (for the largest one; they are joined and uploaded a batch at a time), and it has "
            f"{human_bytes(max(room, 0))} to spare.",
            hint="Give a staging folder with more room (--staging-dir, staging_dir=...); the import resumes.",
        )
    return to_join, room


def _upload_objects(
    root: BundleDir,
    verified: VerifiedBundle,
    settings: S3Settings,
    staging: Path,
    joins: tuple[list[dict], int],
    workers: int,
    progress: Reporter,
) -> tuple[TransferResult, list[PlannedObject]]:
    entries = verified.manifest["objects"]
    split = [e for e in entries if e.get("parts")]
    planned = [
        _planned(e, root.real_path(e["path"]), verified.digest(e["path"])) for e in entries if not e.get("parts")
    ]
    to_join, room = joins
    results = [publish(planned, settings, workers=workers, progress=progress)] if planned else []
    position = {id(e): n for n, e in enumerate(entries)}
    for batch in _batches(to_join, room):
        joined = []
        with progress.task(f"join {len(batch)} split files", sum(e["size"] for e in batch)) as reporter:
            for entry in batch:
                target = staging / f"object-{position[id(entry)]:06d}"  # by position: a key never becomes a path
                if reassemble(root, entry["parts"], entry["size"], target, reporter) != entry["sha256"]:
                    raise VerificationError(
                        f"The parts of {entry['key']} do not join into the file bundle.json records.",
                        hint="Do not import this bundle; copy its parts again from the source media.",
                    )
                joined.append(_planned(entry, target, entry["sha256"]))
        results.append(publish(joined, settings, workers=workers, progress=progress))
        for obj in joined:
            obj.source.unlink(missing_ok=True)
        planned += joined
    joining = {id(e) for e in to_join}
    skipped = [e for e in split if id(e) not in joining]
    planned += [_planned(e, staging / "not-joined", e["sha256"]) for e in skipped]  # for the bucket check only
    tables = [r.table for r in results]
    if skipped:
        tables.append(
            pd.DataFrame(
                [
                    {
                        "key": e["key"],
                        "size": e["size"],
                        "status": "skipped",
                        "detail": "already in the bucket with the same size and sha256",
                    }
                    for e in skipped
                ]
            )
        )
    table = (
        pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=["key", "size", "status", "detail"])
    )
    seconds = round(sum(r.seconds for r in results), 3)
    aborted = [key for r in results for key in r.aborted]
    hints = list(dict.fromkeys(hint for r in results for hint in r.hints))
    return TransferResult(table, seconds, aborted, hints), planned


def import_(
    path: str | Path,
    *,
    registry: str | None,
    settings: S3Settings | None,
    access: RegistryAccess | None = None,
    public_key: str | Path | None = None,
    allow_unsigned: bool = False,
    staging_dir: str | Path | None = None,
    workers: int = 8,
    record_dir: str | Path | None = None,
    progress: Reporter = SILENT,
) -> ImportResult:
    """Verify, then import; raises :class:`VerificationError` before touching anything if the bundle is bad.

    ``staging_dir`` is where split files are joined and image views built (default: the system's temporary
    folder); never inside the bundle. ``allow_unsigned`` as for :func:`verify`.
    """
    if workers < 1:
        raise InputError(f"workers must be 1 or more, not {workers}.")
    with BundleDir(path) as root, folder_lock(root.path, "importing the bundle"):
        report = verify(
            root.path, public_key=public_key, allow_unsigned=allow_unsigned, record_dir=record_dir, progress=progress
        )
        if not report.ok or report.verified is None:
            report.raise_for_failure()
        verified = report.verified
        assert verified is not None
        result = ImportResult(report)
        with staging_folder(staging_dir, root.path) as staging:
            uploading = bool(verified.manifest["objects"]) and settings is not None
            joins = _to_join(verified, settings, staging, workers) if uploading else ([], 0)
            if verified.manifest["images"] and registry:
                result.images = import_images(
                    root, verified, registry, staging, access=access, workers=2, progress=progress
                )
            if uploading:
                result.upload, objects = _upload_objects(root, verified, settings, staging, joins, workers, progress)
                result.upload.raise_for_failures()
                result.bucket_check = verify_bucket(objects, settings, workers=workers, progress=progress)
                require_verified(result.bucket_check)
    log.info(
        "bundle %s imported%s: %d images, %s",
        report.bundle_id,
        " (UNSIGNED)" if report.unsigned else "",
        len(result.images),
        result.upload.counts() if result.upload else "no profiles",
    )
    return result
