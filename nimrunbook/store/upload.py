"""Upload objects in parallel, skip what is already there, verify every object, and re-verify at any time.

Each object carries its sha256 in its metadata (``x-amz-meta-sha256``), hashed
once before the upload. An object counts as done only when the store reports
the expected size and digest after the upload; an object already present with
both is skipped, so a re-run after an interruption resumes and a second run
uploads nothing. boto3's transfer manager does the multipart work in parallel
(``workers``) and reports bytes through an s3transfer subscriber.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from s3transfer.subscribers import BaseSubscriber

from nimrunbook.errors import StorageError, VerificationError
from nimrunbook.hashing import HashJournal, sha256_file
from nimrunbook.progress import Progress, ProgressMode, human_bytes, make_progress
from nimrunbook.store.client import S3Settings, error_code, make_client, storage_error
from nimrunbook.store.plan import PlannedObject

log = logging.getLogger(__name__)

SHA_METADATA = "sha256"
# 8 MiB parts (the aws CLI's default too): measured fastest here, and s3transfer raises the part size by
# itself where a file would need more than S3's 10,000 parts (80 GB at 8 MiB).
PART_SIZE = 8 * 1024 * 1024


class _BytesSubscriber(BaseSubscriber):
    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_progress(self, future, bytes_transferred: int, **kwargs) -> None:  # noqa: ARG002
        self.progress.advance(bytes_transferred)


@dataclass
class TransferResult:
    """One row per object: uploaded, skipped (already there) or failed, with the reason."""

    table: pd.DataFrame
    seconds: float

    @property
    def ok(self) -> bool:
        return not (self.table["status"] == "failed").any()

    def counts(self) -> dict[str, int]:
        return {status: int((self.table["status"] == status).sum()) for status in ("uploaded", "skipped", "failed")}

    def raise_for_failures(self) -> None:
        failed = self.table[self.table["status"] == "failed"]
        if len(failed):
            lines = "\n".join(f"  {row.key}: {row.detail}" for row in failed.head(20).itertuples())
            raise StorageError(
                f"{len(failed)} of {len(self.table)} objects were not stored correctly:\n{lines}",
                hint="Run the upload again: complete objects are skipped and the rest are sent again.",
            )


def _remote(client, bucket: str, key: str) -> tuple[int, str | None] | None:
    """(size, recorded sha256) of an object, or None when absent."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    # Metadata names are HTTP header names, so case-insensitive: AWS answers x-amz-meta-sha256, rclone -Sha256.
    metadata = {name.lower(): value for name, value in head.get("Metadata", {}).items()}
    return int(head["ContentLength"]), metadata.get(SHA_METADATA)


def _digest(obj: PlannedObject, journal: HashJournal | None) -> str | None:
    """The object's sha256; None (with the reason logged) when the file changed since it was recorded."""
    if obj.sha256 is None:
        obj.sha256 = journal.sha256(obj.source) if journal else sha256_file(obj.source)
        return obj.sha256
    if journal is None or journal.lookup(obj.source) == obj.sha256:
        return obj.sha256
    actual = journal.sha256(obj.source)  # identity changed: hash again, once
    return obj.sha256 if actual == obj.sha256 else None


def publish(
    objects: Sequence[PlannedObject],
    settings: S3Settings,
    *,
    workers: int = 8,
    journal: HashJournal | None = None,
    progress: ProgressMode = "log",
) -> TransferResult:
    """Upload ``objects`` to the bucket root; see the module docstring."""
    started = time.monotonic()
    client = make_client(settings, max_connections=workers * 2 + 2)
    try:
        client.head_bucket(Bucket=settings.bucket)
    except Exception as exc:  # noqa: BLE001
        raise storage_error(exc, settings, f"access to bucket {settings.bucket}") from None
    rows: dict[str, dict] = {}

    def prepare(obj: PlannedObject) -> PlannedObject | None:
        row = rows.setdefault(obj.key, {"key": obj.key, "size": obj.size, "status": "failed", "detail": ""})
        if not obj.source.exists() or obj.source.stat().st_size != obj.size:
            row["detail"] = f"local file {obj.source} is missing or its size changed"
            return None
        digest = _digest(obj, journal)
        if digest is None:
            row["detail"] = "local file changed since it was hashed into the manifest"
            return None
        remote = _remote(client, settings.bucket, obj.key)
        if remote == (obj.size, digest):
            row.update(status="skipped", detail="already in the bucket with the same size and sha256")
            return None
        return obj

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = [o for o in pool.map(prepare, objects) if o is not None]
    total = sum(o.size for o in pending)
    log.info(
        "uploading %d objects (%s) with %d workers; %d skipped",
        len(pending),
        human_bytes(total),
        workers,
        sum(r["status"] == "skipped" for r in rows.values()),
    )
    config = TransferConfig(max_concurrency=workers, multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE)
    reporter = make_progress(progress, f"upload {len(pending)} objects", total)
    with reporter, create_transfer_manager(client, config) as manager:
        futures = [
            (
                obj,
                manager.upload(
                    str(obj.source),
                    settings.bucket,
                    obj.key,
                    extra_args={"Metadata": {SHA_METADATA: obj.sha256}},
                    subscribers=[_BytesSubscriber(reporter)],
                ),
            )
            for obj in pending
        ]
        for obj, future in futures:
            try:
                future.result()
            except Exception as exc:  # noqa: BLE001 - recorded per object
                rows[obj.key]["detail"] = storage_error(exc, settings, f"uploading {obj.key}").message
    for obj, _ in futures:
        if rows[obj.key]["detail"]:
            continue
        remote = _remote(client, settings.bucket, obj.key)
        if remote == (obj.size, obj.sha256):
            rows[obj.key].update(status="uploaded", detail="verified: size and sha256")
        else:
            rows[obj.key]["detail"] = f"after upload the store reports {remote}, expected {(obj.size, obj.sha256)}"
    table = pd.DataFrame(list(rows.values()), columns=["key", "size", "status", "detail"])
    result = TransferResult(table, round(time.monotonic() - started, 3))
    log.info("upload finished: %s", result.counts())
    return result


def _content_sha256(client, bucket: str, key: str, progress: Progress) -> str:
    digest = hashlib.sha256()
    body = client.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in body.iter_chunks(8 * 1024 * 1024):
        digest.update(chunk)
        progress.advance(len(chunk))
    return digest.hexdigest()


def verify(
    objects: Sequence[PlannedObject],
    settings: S3Settings,
    *,
    deep: bool = False,
    workers: int = 8,
    progress: ProgressMode = "log",
) -> pd.DataFrame:
    """Check the bucket against a manifest: every object present with its size and sha256.

    ``deep`` reads every object back and hashes its content (what an auditor
    wants after a transfer); otherwise the recorded digest is compared.
    """
    client = make_client(settings, max_connections=workers * 2 + 2)
    reporter = make_progress(progress, f"verify {len(objects)} objects", sum(o.size for o in objects) if deep else None)

    def check(obj: PlannedObject) -> dict:
        row = {"key": obj.key, "size": obj.size, "status": "ok", "detail": ""}
        try:
            remote = _remote(client, settings.bucket, obj.key)
            if remote is None:
                row.update(status="missing", detail="not in the bucket")
            elif remote[0] != obj.size:
                row.update(status="size mismatch", detail=f"{remote[0]} bytes, expected {obj.size}")
            elif remote[1] != obj.sha256:
                row.update(status="checksum mismatch", detail=f"recorded sha256 {remote[1]}, expected {obj.sha256}")
            elif deep and _content_sha256(client, settings.bucket, obj.key, reporter) != obj.sha256:
                row.update(status="content mismatch", detail="the bytes stored do not hash to the expected sha256")
        except Exception as exc:  # noqa: BLE001
            row.update(status="error", detail=storage_error(exc, settings, f"checking {obj.key}").message)
        return row

    with reporter, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(check, objects))
    return pd.DataFrame(rows, columns=["key", "size", "status", "detail"])


def require_verified(table: pd.DataFrame) -> None:
    bad = table[table["status"] != "ok"]
    if len(bad):
        lines = "\n".join(f"  {row.key}: {row.status} ({row.detail})" for row in bad.head(20).itertuples())
        raise VerificationError(
            f"{len(bad)} of {len(table)} objects in the bucket do not match the manifest:\n{lines}",
            hint="Publish again to re-send them (matching objects are skipped).",
        )
