"""Publish objects to the bucket root, skip what is already there, verify every object, and re-verify at any time.

The rule for what is trusted (the journal is a cache, never evidence):

- **Skipped** only when the bucket already holds the object with the expected
  size and, in its ``x-amz-meta-sha256``, the expected sha256. The expected
  digest is the one on record: the processed manifest's, the bundle's (which
  verification computed), else the hash journal's for that file, else the file
  hashed now. The local file is not read for a skip: what the bucket holds was
  proven when it was sent (below), and a local file that rotted since is not
  sent again.
- **Sent** only as bytes that hash to the expected sha256: every byte is hashed
  again as it is read for sending, and a mismatch is refused before the object
  becomes visible (:mod:`nimrunbook.store.send`). So a file that rotted with its
  mtime restored, or that changed between a bundle's verification and its
  upload, never reaches the bucket, whatever the journal or a manifest says.
- **Uploaded** (done) only when, after the upload, the store reports the
  expected size and sha256 and its own SHA256 checksum (where it keeps one)
  agrees with the bytes sent; the ``server_checksum`` column says, per object,
  what the store reported.

Work overlaps: each object's upload starts as soon as its own digest is known
(a digest on record costs nothing; a file hashed now is hashed on its own
worker while others send), largest first, so hashing is never a phase in front
of the network. Unfinished multipart uploads of these keys that a killed
publish left are aborted first. A failure that every further request would
repeat (the store unreachable, the credentials refused) stops the objects not
yet started, each named in the result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from nimrunbook.errors import InputError, StorageError, VerificationError, problems_error
from nimrunbook.hashing import HashJournal, sha256_file
from nimrunbook.progress import SILENT, Reporter, Task, human_bytes
from nimrunbook.store.client import (
    S3_FAILURES,
    S3Settings,
    StoredObject,
    head_object,
    is_fatal,
    make_client,
    stat_object,
    storage_error,
)
from nimrunbook.store.plan import PlannedObject
from nimrunbook.store.send import (
    PART_SIZE,
    ContentMismatch,
    Destination,
    PartSenders,
    Stopped,
    abort_abandoned_uploads,
    send_file,
    server_checksum_verdict,
)

log = logging.getLogger(__name__)

__all__ = ["PART_SIZE", "TransferResult", "publish", "require_verified", "verify"]

COLUMNS = ["key", "size", "status", "detail", "server_checksum"]
MISMATCH_HINT = (
    "A file whose bytes are not those on record must not be published: download its profile again (a new blob), "
    "process it again, and check the disk."
)


@dataclass
class TransferResult:
    """One row per object: uploaded, skipped (already there) or failed, with the reason and what the store's own
    checksum said (``server_checksum``). ``aborted``: keys whose abandoned multipart uploads were aborted first."""

    table: pd.DataFrame
    seconds: float
    aborted: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)  # what to do about each kind of failure, first one first

    @property
    def ok(self) -> bool:
        return not (self.table["status"] == "failed").any()

    def counts(self) -> dict[str, int]:
        return {status: int((self.table["status"] == status).sum()) for status in ("uploaded", "skipped", "failed")}

    def server_checks(self) -> dict[str, int]:
        """How many uploaded objects the store's own checksum confirmed, reported nothing for, or was not sent."""
        if "server_checksum" not in self.table:
            return {}
        uploaded = self.table[self.table["status"] == "uploaded"]
        return {str(k): int(v) for k, v in uploaded["server_checksum"].value_counts().items()}

    def raise_for_failures(self) -> None:
        failed = self.table[self.table["status"] == "failed"]
        if len(failed):
            raise problems_error(
                StorageError,
                f"{len(failed)} of {len(self.table)} objects were not stored correctly",
                [f"{row.key}: {row.detail}" for row in failed.itertuples()],
                hint=" ".join(
                    [
                        *self.hints,
                        "Then run the upload again: complete objects are skipped and the rest are sent again.",
                    ]
                ),
            )


class _Stop:
    """Why the objects not yet started are not sent (set once, by the first failure every object would repeat)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()


def _expected_digest(obj: PlannedObject, journal: HashJournal | None, hashing: threading.Semaphore) -> tuple[str, str]:
    """(the sha256 the bytes must have, where it comes from), without reading the file when one is on record.

    A file hashed now waits for ``hashing``: a few files hashed at a time, in the order they are sent, start the
    first upload after one file's hash, where every worker hashing at once would start them all after all of theirs.
    """
    if obj.sha256:
        return obj.sha256, "the manifest"
    known = journal.lookup(obj.source) if journal else None
    if known:
        return known, f"the hash journal {journal.path}"
    with hashing:
        digest = journal.sha256(obj.source) if journal else sha256_file(obj.source)
    return digest, "hashing it before the upload"


class _Publisher:
    def __init__(self, settings: S3Settings, client, destination: Destination, journal: HashJournal | None) -> None:
        self.settings, self.client, self.destination, self.journal = settings, client, destination, journal
        self.stop = _Stop(destination.stop)
        self.rows: dict[str, dict] = {}
        self.hints: list[str] = []
        # hashing is CPU work: half the cores hash, the others encrypt and send
        self.hashing = threading.Semaphore(max(1, (os.cpu_count() or 2) // 2))

    def row(self, obj: PlannedObject) -> dict:
        return self.rows.setdefault(
            obj.key, {"key": obj.key, "size": obj.size, "status": "failed", "detail": "", "server_checksum": ""}
        )

    def look(self, obj: PlannedObject) -> StoredObject | None | BaseException:
        """What the bucket holds for ``obj``; an object whose digest is on record and matches is skipped here."""
        row = self.row(obj)
        if self.stop.event.is_set():
            row["detail"] = f"not checked: {self.stop.reason}"
            return None
        try:
            stored = head_object(self.client, self.settings.bucket, obj.key)
        except S3_FAILURES as exc:
            self._failed(row, exc, f"checking {obj.key}")
            return exc
        if obj.sha256 and stored is not None and (stored.size, stored.sha256) == (obj.size, obj.sha256):
            row.update(status="skipped", detail="already in the bucket with the same size and sha256")
        return stored

    def send(self, obj: PlannedObject, stored: StoredObject | None, progress: Task) -> None:
        row = self.row(obj)
        if self.stop.event.is_set():
            row["detail"] = f"not sent: {self.stop.reason}"
            return
        try:
            expected, expected_from = _expected_digest(obj, self.journal, self.hashing)
            if stored is not None and (stored.size, stored.sha256) == (obj.size, expected):
                row.update(status="skipped", detail="already in the bucket with the same size and sha256")
                progress.advance(obj.size)
            else:
                sent = send_file(
                    self.destination,
                    obj.key,
                    obj.source,
                    obj.size,
                    expected,
                    expected_from=expected_from,
                    progress=progress,
                )
                self._check_stored(obj, row, sent)
            obj.sha256 = obj.sha256 or expected
        except ContentMismatch as exc:
            row["detail"] = str(exc)
            if MISMATCH_HINT not in self.hints:
                self.hints.append(MISMATCH_HINT)
        except Stopped:
            row["detail"] = f"not sent: {self.stop.reason or 'the transfer stopped'}"
        except OSError as exc:
            row["detail"] = f"the local file {obj.source} cannot be read ({exc.strerror or exc})"
        except S3_FAILURES as exc:
            self._failed(row, exc, f"uploading {obj.key}")

    def _check_stored(self, obj: PlannedObject, row: dict, sent) -> None:
        stored, _ = self.destination.checksums.call(
            lambda with_checksum: head_object(self.client, self.settings.bucket, obj.key, checksum=with_checksum)
        )
        if stored is None or (stored.size, stored.sha256) != (obj.size, sent.sha256):
            found = "nothing" if stored is None else f"{stored.size} bytes with sha256 {stored.sha256}"
            row["detail"] = f"after the upload the store reports {found}, expected {obj.size} bytes with {sent.sha256}"
            return
        consistent, verdict = server_checksum_verdict(stored, sent)
        row["server_checksum"] = verdict
        if not consistent:
            self.client.delete_object(Bucket=self.settings.bucket, Key=obj.key)  # never leave wrong bytes behind
            row["detail"] = f"{verdict}: it did not store what was sent, and the object was deleted"
            return
        row.update(
            status="uploaded",
            detail="verified: the bytes sent hash to the expected sha256, and the store holds that size and sha256",
        )

    def _failed(self, row: dict, exc: BaseException, doing: str) -> None:
        error = storage_error(exc, self.settings, doing)
        row["detail"] = error.message
        if error.hint and error.hint not in self.hints:
            self.hints.append(error.hint)
        if is_fatal(exc):
            self.stop.set(f"an earlier request failed: {error.message}")


def publish(
    objects: Sequence[PlannedObject],
    settings: S3Settings,
    *,
    workers: int = 8,
    journal: HashJournal | None = None,
    progress: Reporter = SILENT,
) -> TransferResult:
    """Upload ``objects`` to the bucket root; see the module docstring for what is trusted and what is checked.

    ``journal`` supplies (and keeps) the digests of objects whose sha256 is not on record; it is never evidence.
    Objects whose digest was not on record get it set (``obj.sha256``) once it is known.
    """
    if workers < 1:
        raise InputError(f"workers must be 1 or more, not {workers}.")
    started = time.monotonic()
    client = make_client(settings, max_connections=workers * 2 + 2)
    try:
        client.head_bucket(Bucket=settings.bucket)
        aborted = abort_abandoned_uploads(client, settings.bucket, [o.key for o in objects])
    except S3_FAILURES as exc:
        raise storage_error(exc, settings, f"access to bucket {settings.bucket}") from exc
    body_client = make_client(settings, max_connections=workers * 2 + 2, hash_payloads=False)
    with PartSenders(workers) as senders:
        destination = Destination(client, settings.bucket, senders, body_client)
        publisher = _Publisher(settings, client, destination, journal)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nimrunbook-object") as pool:
            stored = dict(zip([o.key for o in objects], pool.map(publisher.look, objects), strict=True))
            pending = [o for o in objects if publisher.rows[o.key]["status"] != "skipped"]
            pending = [
                o
                for o in pending
                if not isinstance(stored[o.key], BaseException) and not publisher.rows[o.key]["detail"]
            ]
            total = sum(o.size for o in pending)
            log.info(
                "uploading up to %d objects (%s) with %d workers; %d already in the bucket",
                len(pending),
                human_bytes(total),
                workers,
                sum(r["status"] == "skipped" for r in publisher.rows.values()),
            )
            with progress.task(f"upload {len(pending)} objects", total) as task:
                try:
                    largest_first = sorted(pending, key=lambda o: -o.size)
                    list(pool.map(lambda o: publisher.send(o, stored[o.key], task), largest_first))
                except BaseException:  # an interrupt: the objects in flight stop at their next part and abort
                    publisher.stop.set("interrupted")
                    raise
    table = pd.DataFrame([publisher.rows[o.key] for o in objects], columns=COLUMNS)
    result = TransferResult(table, round(time.monotonic() - started, 3), aborted, publisher.hints)
    log.info("upload finished: %s; the store's own checksums: %s", result.counts(), result.server_checks())
    return result


def _content_sha256(client, bucket: str, key: str, progress: Task) -> str:
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
    progress: Reporter = SILENT,
) -> pd.DataFrame:
    """Check the bucket against a manifest: every object present with its size and sha256.

    ``deep`` reads every object back and hashes its content (what an auditor
    wants after a transfer); otherwise the recorded digest is compared.
    """
    client = make_client(settings, max_connections=workers * 2 + 2)
    reporter = progress.task(f"verify {len(objects)} objects", sum(o.size for o in objects) if deep else None)
    stop = _Stop(threading.Event())

    def check(obj: PlannedObject) -> dict:
        row = {"key": obj.key, "size": obj.size, "status": "ok", "detail": ""}
        if stop.event.is_set():
            return {**row, "status": "error", "detail": f"not checked: {stop.reason}"}
        try:
            remote = stat_object(client, settings.bucket, obj.key)
            if remote is None:
                row.update(status="missing", detail="not in the bucket")
            elif remote[0] != obj.size:
                row.update(status="size mismatch", detail=f"{remote[0]} bytes, expected {obj.size}")
            elif remote[1] != obj.sha256:
                row.update(status="checksum mismatch", detail=f"recorded sha256 {remote[1]}, expected {obj.sha256}")
            elif deep and _content_sha256(client, settings.bucket, obj.key, reporter) != obj.sha256:
                row.update(status="content mismatch", detail="the bytes stored do not hash to the expected sha256")
        except Exception as exc:  # noqa: BLE001 - recorded per object (a store's answer, or a read that failed)
            error = storage_error(exc, settings, f"checking {obj.key}")
            row.update(status="error", detail=error.message)
            if is_fatal(exc):
                stop.set(f"an earlier request failed: {error.message}")
        return row

    with reporter, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(pool.map(check, objects))
    return pd.DataFrame(rows, columns=["key", "size", "status", "detail"])


def require_verified(table: pd.DataFrame) -> None:
    bad = table[table["status"] != "ok"]
    if len(bad):
        raise problems_error(
            VerificationError,
            f"{len(bad)} of {len(table)} objects in the bucket do not match the manifest",
            [f"{row.key}: {row.status} ({row.detail})" for row in bad.itertuples()],
            hint="Publish again to re-send them (matching objects are skipped).",
        )
