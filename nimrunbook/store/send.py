"""Send one file to S3 so that only the expected bytes can become an object: content, not metadata.

A digest on record (a manifest, a bundle, the hash journal) says what a file
held when it was hashed; bit rot, or a change that kept the mtime, makes it a
lie. So the bytes are hashed as they are sent, and the object is made visible
only when they hash to the expected sha256:

- a file of one part or less is read into memory, hashed and compared, and then
  sent in one PutObject;
- a larger file is one multipart upload of our own (s3transfer cannot refuse an
  upload after reading it): one thread reads it once, in order, hashing the
  whole of it and handing each part to a bounded pool of senders
  (:class:`PartSenders`); CompleteMultipartUpload is called only when the
  whole digest matches, otherwise AbortMultipartUpload, and nothing appears in
  the bucket.

Each PutObject and UploadPart also carries its own sha256 as S3's
``x-amz-checksum-sha256`` header, so a store that checks it (AWS S3, MinIO)
refuses bytes damaged on the way, and reports its checksum afterwards for the
caller to compare (:func:`server_checksum_verdict`). A store that refuses the
header itself is sent no more of them (:class:`ServerChecksums`).

Uploads of ours that a killed publish left behind are aborted by the next one
(:func:`abort_abandoned_uploads`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import botocore.exceptions

from nimrunbook.hashing import count_hashed
from nimrunbook.progress import Task
from nimrunbook.store.client import (
    S3_FAILURES,
    SHA_METADATA,
    StoredObject,
    error_code,
    head_object,
    is_access_denied,
)

log = logging.getLogger(__name__)

# 8 MiB parts (the aws CLI's default too), raised where a file would need more than S3's 10,000 parts (80 GB).
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
_MiB = 1024 * 1024
# What a store that does not take x-amz-checksum-* headers answers to them.
CHECKSUM_REFUSED_CODES = frozenset({"InvalidArgument", "InvalidRequest", "NotImplemented", "XNotImplemented"})
NOT_SUPPORTED_CODES = frozenset({"NotImplemented", "XNotImplemented", "InvalidRequest", "MethodNotAllowed"})

T = TypeVar("T")


class ContentMismatch(Exception):
    """The bytes read from a file are not the bytes expected; nothing was stored. ``str()`` is for the user."""


class Stopped(Exception):
    """The transfer stopped (a failure every object would repeat, or an interrupt) before this file was complete."""


def part_size_for(size: int) -> int:
    """:data:`PART_SIZE`, or the whole MiB that keeps a file of ``size`` bytes within :data:`MAX_PARTS` parts."""
    needed = -(-size // MAX_PARTS)
    return max(PART_SIZE, -(-needed // _MiB) * _MiB)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_checksum(part_digests: list[bytes]) -> str:
    """S3's checksum of a multipart object: the sha256 of its parts' sha256 digests, ``-<parts>``."""
    return f"{b64(hashlib.sha256(b''.join(part_digests)).digest())}-{len(part_digests)}"


class ServerChecksums:
    """Whether the store takes ``x-amz-checksum-sha256``; the first refusal decides for the rest of the run.

    A request refused with one of :data:`CHECKSUM_REFUSED_CODES` is sent again without the checksum; only when
    that one succeeds was the checksum the cause, and later requests go without it.
    """

    def __init__(self) -> None:
        self.accepted = True
        self.refusal: str | None = None
        self._lock = threading.Lock()

    def call(self, request: Callable[[bool], T]) -> tuple[T, bool]:
        """``request(with_checksum)``: (its result, whether the checksum went with it)."""
        if not self.accepted:
            return request(False), False
        try:
            return request(True), True
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in CHECKSUM_REFUSED_CODES:
                raise
            result = request(False)  # raises its own error when the checksum was not the cause
            with self._lock:
                if self.accepted:
                    self.accepted = False
                    self.refusal = error_code(exc)
                    log.warning(
                        "the object store refuses S3 checksum headers (%s): objects are sent without them; each is "
                        "still hashed while it is sent and compared with its expected sha256",
                        self.refusal,
                    )
            return result, False


class PartSenders:
    """UploadPart calls on ``workers`` threads, shared by every file of one transfer; at most ``workers`` more parts
    wait in memory, so a reader that is ahead of the network waits instead of filling the memory."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="nimrunbook-part")
        self._slots = threading.BoundedSemaphore(max(1, workers) * 2)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        self._slots.acquire()
        try:
            future = self._pool.submit(work)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _done: self._slots.release())
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PartSenders:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


@dataclass
class Sent:
    """One file sent: the sha256 of the bytes read and sent, and the S3 checksum that went with them (None when the
    store takes none)."""

    sha256: str
    checksum: str | None
    parts: int


@dataclass
class Destination:
    """Where files go and what is shared while they are sent.

    ``client`` signs request bodies by their sha256 (SigV4's x-amz-content-sha256, which stores check too);
    ``body_client`` may sign them as UNSIGNED-PAYLOAD (``make_client(hash_payloads=False)``) and is used only for
    bodies that carry our own ``x-amz-checksum-sha256``: one sha256 of each part serves the store's check, where
    botocore would otherwise hash every byte once more for the signature.
    """

    client: object
    bucket: str
    senders: PartSenders
    body_client: object | None = None
    checksums: ServerChecksums = field(default_factory=ServerChecksums)
    stop: threading.Event = field(default_factory=threading.Event)

    def for_body(self, with_checksum: bool):
        """The client to send a body with: a body without our checksum is always signed by its sha256."""
        return self.body_client if with_checksum and self.body_client is not None else self.client


def _read_exactly(reader: BinaryIO, amount: int) -> bytes:
    chunks, got = [], 0
    while got < amount:
        chunk = reader.read(amount - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _mismatch(source: Path, actual: str, expected: str, expected_from: str) -> ContentMismatch:
    return ContentMismatch(
        f"the bytes read from {source} hash to sha256 {actual}, not the expected {expected} (from {expected_from}): "
        "the file changed after that digest was taken (bit rot, or an edit, even one that kept its mtime); nothing was stored"
    )


def send_file(
    destination: Destination,
    key: str,
    source: Path,
    size: int,
    expected: str,
    *,
    expected_from: str,
    progress: Task,
) -> Sent:
    """Store the ``size`` bytes of ``source`` as ``key`` only if they hash to ``expected``; see the module docstring.

    Raises :class:`ContentMismatch` (nothing stored), :class:`Stopped`, ``OSError`` (the file cannot be read) or
    what boto3 raises; an upload that does not complete is aborted.
    """
    with open(source, "rb", buffering=0) as reader:
        if size <= PART_SIZE:
            return _put(destination, key, reader, source, size, expected, expected_from, progress)
        return _Multipart(destination, key, reader, source, size, expected, expected_from, progress).run()


def _put(
    destination: Destination,
    key: str,
    reader: BinaryIO,
    source: Path,
    size: int,
    expected: str,
    expected_from: str,
    progress: Task,
) -> Sent:
    data = _read_exactly(reader, size)
    if len(data) != size or reader.read(1):
        raise ContentMismatch(f"{source} no longer has {size} bytes; nothing was stored")
    digest = hashlib.sha256(data).digest()
    count_hashed(size)
    if digest.hex() != expected:
        raise _mismatch(source, digest.hex(), expected, expected_from)
    checksum = b64(digest)

    def put(with_checksum: bool) -> None:
        extra = {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": checksum} if with_checksum else {}
        destination.for_body(with_checksum).put_object(
            Bucket=destination.bucket, Key=key, Body=data, Metadata={SHA_METADATA: expected}, **extra
        )

    _, with_checksum = destination.checksums.call(put)
    progress.advance(size)
    return Sent(expected, checksum if with_checksum else None, 1)


class _Multipart:
    """One multipart upload: read once, hash the whole, send the parts; complete only on a match."""

    def __init__(
        self,
        destination: Destination,
        key: str,
        reader: BinaryIO,
        source: Path,
        size: int,
        expected: str,
        expected_from: str,
        progress: Task,
    ) -> None:
        self.destination, self.key, self.reader, self.source = destination, key, reader, source
        self.size, self.expected, self.expected_from, self.progress = size, expected, expected_from, progress
        self.client, self.bucket = destination.client, destination.bucket
        self.upload_id: str | None = None
        self.with_checksum = False
        self.failure: BaseException | None = None  # the first part that failed

    def run(self) -> Sent:
        def create(with_checksum: bool) -> dict:
            extra = {"ChecksumAlgorithm": "SHA256"} if with_checksum else {}
            return self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, Metadata={SHA_METADATA: self.expected}, **extra
            )

        created, self.with_checksum = self.destination.checksums.call(create)
        self.upload_id = created["UploadId"]
        futures: list[Future[tuple[dict, bytes | None]]] = []
        try:
            digest = self._read_and_send(futures)
            if digest != self.expected:
                raise _mismatch(self.source, digest, self.expected, self.expected_from)
            wait(futures)
            if self.failure is not None:
                raise self.failure
            results = [future.result() for future in futures]
            parts = [entry for entry, _ in results]
            self._complete(parts)
        except BaseException:
            if self.failure is None:
                self.failure = Stopped()  # parts not yet started do not start
            for future in futures:
                future.cancel()
            wait(futures)  # a part still being sent could otherwise land after the abort
            abort_upload(self.client, self.bucket, self.key, self.upload_id)
            raise
        checksum = composite_checksum([d for _, d in results if d is not None]) if self.with_checksum else None
        return Sent(digest, checksum, len(parts))

    def _read_and_send(self, futures: list) -> str:
        whole = hashlib.sha256()
        part_size, read, number = part_size_for(self.size), 0, 0
        while True:
            if self.failure is not None:
                raise self.failure
            if self.destination.stop.is_set():
                raise Stopped
            data = _read_exactly(self.reader, part_size)
            if not data:
                break
            number += 1
            read += len(data)
            if read > self.size:
                raise ContentMismatch(
                    f"{self.source} grew beyond {self.size} bytes while it was sent; nothing was stored"
                )
            whole.update(data)
            count_hashed(len(data))
            future = self.destination.senders.submit(lambda n=number, d=data: self._send_part(n, d))
            future.add_done_callback(self._note_failure)
            futures.append(future)
        if read != self.size:
            raise ContentMismatch(
                f"{self.source} shrank to {read} of {self.size} bytes while it was sent; nothing was stored"
            )
        return whole.hexdigest()

    def _note_failure(self, future: Future) -> None:
        if future.cancelled() or future.exception() is None:
            return
        if self.failure is None or isinstance(self.failure, Stopped):  # the cause wins over the parts it stopped
            self.failure = future.exception()

    def _send_part(self, number: int, data: bytes) -> tuple[dict, bytes | None]:
        if self.failure is not None or self.destination.stop.is_set():
            raise Stopped
        entry: dict = {"PartNumber": number}
        extra, digest = {}, None
        if self.with_checksum:
            digest = hashlib.sha256(data).digest()
            count_hashed(len(data))
            entry["ChecksumSHA256"] = extra["ChecksumSHA256"] = b64(digest)
        response = self.destination.for_body(self.with_checksum).upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=data, **extra
        )
        entry["ETag"] = response["ETag"]
        self.progress.advance(len(data))
        return entry, digest

    def _complete(self, parts: list[dict]) -> None:
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": parts}
            )
        except botocore.exceptions.ClientError as exc:
            # A retried Complete whose first attempt did complete (the answer was lost) finds no upload any more.
            if error_code(exc) != "NoSuchUpload" or not self._completed_before():
                raise

    def _completed_before(self) -> bool:
        stored = head_object(self.client, self.bucket, self.key)
        return stored is not None and (stored.size, stored.sha256) == (self.size, self.expected)


def abort_upload(client, bucket: str, key: str, upload_id: str | None) -> None:
    """Abort a multipart upload, so its parts stop taking room; when the store cannot be told (it is gone), the
    next publish aborts it (:func:`abort_abandoned_uploads`)."""
    if upload_id is None:
        return
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except S3_FAILURES as exc:
        log.warning("could not abort the multipart upload of %s (%s); the next publish aborts it", key, error_code(exc))


def abort_abandoned_uploads(client, bucket: str, keys: Collection[str]) -> list[str]:
    """Abort every unfinished multipart upload of ``keys`` (what a killed publish of them left); uploads of other
    keys are left alone. Returns the keys whose uploads were aborted.

    Run before sending, while no other publish of the same keys runs (two at once into one bucket would abort each
    other's uploads). A store that does not list uploads, or a key that may not, is logged and skipped.
    """
    wanted, found = set(keys), []
    try:
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            found += [u for u in page.get("Uploads", []) if u.get("Key") in wanted]
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "NoSuchUpload":  # rclone serve s3's answer when there is none
            found = []
        elif not (is_access_denied(exc) or error_code(exc) in NOT_SUPPORTED_CODES):
            raise
        else:
            log.warning(
                "cannot list or abort unfinished multipart uploads in %s (%s): uploads a killed publish left are "
                "not aborted; an AbortIncompleteMultipartUpload lifecycle rule on the bucket removes them",
                bucket,
                error_code(exc),
            )
    aborted = []
    for upload in found:
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted.append(upload["Key"])
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchUpload":  # gone meanwhile: nothing to do
                raise
    if aborted:
        log.info("aborted %d unfinished multipart uploads that an earlier publish left: %s", len(aborted), aborted)
    return aborted


def server_checksum_verdict(stored: StoredObject, sent: Sent) -> tuple[bool, str]:
    """(consistent, what the store's own checksum says) for an object just sent."""
    if sent.checksum is None:
        return True, "not accepted by the store"
    if not stored.checksum_sha256:
        return True, "not reported by the store"
    # AWS reports a multipart object's checksum as <base64>-<parts>; some stores leave the suffix out.
    reported = stored.checksum_sha256.split("-")[0]
    whole = b64(bytes.fromhex(sent.sha256))
    if reported in (sent.checksum.split("-")[0], whole):
        return True, "matches (SHA256)"
    return False, f"the store reports SHA256 checksum {stored.checksum_sha256}, but the bytes sent have {sent.checksum}"
