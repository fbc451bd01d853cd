"""Connecting to the S3-compatible object store (MinIO, AWS S3, others) the way DataRobot will.

DataRobot reads profiles with virtual-hosted addressing (``<bucket>.<domain>``)
over HTTPS with a verifiable chain, so those are the defaults: path-style and
``insecure`` exist for diagnosis, warn loudly, and are recorded in the run.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

from nimrunbook.errors import InputError, StorageError, require_bool
from nimrunbook.redact import redact, register_secret

log = logging.getLogger(__name__)


@dataclass
class S3Settings:
    """Where profiles go. Credentials come from here, else the environment or an AWS profile."""

    bucket: str
    endpoint_url: str | None = None  # None for AWS S3
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    profile: str | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    path_style: bool = False
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        require_bool("insecure", self.insecure)
        require_bool("path_style", self.path_style)
        if not self.bucket:
            raise InputError("No bucket given.", hint="Name the dedicated bucket NIM profiles go to (bucket=...).")
        if self.endpoint_url and urlparse(self.endpoint_url).scheme not in ("http", "https"):
            raise InputError(
                f"The endpoint {self.endpoint_url!r} has no scheme (http:// or https://).",
                hint="Write it as a URL, e.g. https://minio.example.com:9000 (DataRobot needs https).",
            )
        register_secret(self.secret_access_key)
        register_secret(self.access_key_id)
        if self.insecure:
            self._warn(
                "TLS verification is OFF (insecure). Anyone on the path can read or alter the profiles; this run is "
                "recorded as insecure. Pass the CA bundle instead (ca_bundle=...)."
            )
        if self.path_style:
            self._warn(
                "Path-style addressing is on. DataRobot reads the bucket with virtual-hosted addressing "
                "(<bucket>.<domain>), so check that works before relying on this upload."
            )

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)

    @property
    def endpoint_host(self) -> str | None:
        return urlparse(self.endpoint_url).hostname if self.endpoint_url else None

    @property
    def bucket_host(self) -> str:
        """The host DataRobot will connect to for this bucket."""
        if self.endpoint_url:
            return self.endpoint_host if self.path_style else f"{self.bucket}.{self.endpoint_host}"
        return f"{self.bucket}.s3.{self.region}.amazonaws.com"

    @property
    def port(self) -> int:
        parsed = urlparse(self.endpoint_url or "https://s3.amazonaws.com")
        return parsed.port or (443 if parsed.scheme == "https" else 80)

    def record(self) -> dict:
        """For the run record: everything but the credentials."""
        return {
            "bucket": self.bucket,
            "endpoint_url": self.endpoint_url,
            "region": self.region,
            "profile": self.profile,
            "ca_bundle": self.ca_bundle,
            "insecure": self.insecure,
            "path_style": self.path_style,
            "credentials": "given" if self.access_key_id else ("profile" if self.profile else "environment"),
        }


def make_client(
    settings: S3Settings,
    max_connections: int = 10,
    *,
    read_timeout: float = 120,
    retries: int = 5,
    hash_payloads: bool = True,
):
    """A boto3 S3 client for ``settings`` (``read_timeout`` seconds per answer, ``retries`` after a failed request).

    ``hash_payloads=False``: over HTTPS, request bodies are signed as UNSIGNED-PAYLOAD instead of by their sha256
    (botocore would hash every byte again for the signature), for a sender that puts its own sha256 of each body in
    ``x-amz-checksum-sha256`` (:mod:`nimrunbook.store.send`); over plain HTTP botocore signs the payload anyway.
    """
    if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
        raise InputError(
            f"The CA bundle {settings.ca_bundle} does not exist.",
            hint="Give the PEM file of the CA that signed the object store's certificate.",
        )
    # boto3 >= 1.36 streams uploads as aws-chunked with a trailing CRC checksum unless told otherwise; S3 servers
    # other than AWS's (rclone, older MinIO and Ceph) refuse that (MissingContentLength). Checksums only when the
    # operation requires them, for any endpoint that is not AWS: publish sends its own x-amz-checksum-sha256 per
    # part as a plain header (nimrunbook.store.send), and every object still carries its sha256.
    checksums = "when_required" if settings.endpoint_url else "when_supported"
    s3_options: dict = {"addressing_style": "path" if settings.path_style else "virtual"}
    if not hash_payloads:
        s3_options["payload_signing_enabled"] = False
    config = Config(
        s3=s3_options,
        retries={"max_attempts": retries, "mode": "standard"},
        max_pool_connections=max_connections,
        connect_timeout=10,
        read_timeout=read_timeout,
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    try:
        session = boto3.session.Session(profile_name=settings.profile) if settings.profile else boto3.session.Session()
        return session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            region_name=settings.region,
            aws_access_key_id=settings.access_key_id,
            aws_secret_access_key=settings.secret_access_key,
            verify=False if settings.insecure else (settings.ca_bundle or True),
            config=config,
        )
    except S3_FAILURES as exc:  # an unknown profile, a region botocore cannot use, a broken AWS config file
        raise storage_error(exc, settings, "setting up the S3 client") from exc


# What S3 answers, by error code (and HTTP status where a HEAD request has no body to carry a code).
DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403", "AllAccessDisabled", "AccountProblem"})
UNKNOWN_KEY_CODES = frozenset({"InvalidAccessKeyId"})
WRONG_SECRET_CODES = frozenset({"SignatureDoesNotMatch"})
BAD_CREDENTIAL_CODES = UNKNOWN_KEY_CODES | WRONG_SECRET_CODES
NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})
CLOCK_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired"})
REGION_CODES = frozenset({"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"})
BAD_DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"})
BUSY_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "503", "500"})
SHA_METADATA = "sha256"  # x-amz-meta-sha256: the digest each object carries
S3_FAILURES = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)  # what a boto3 call raises
CREDENTIAL_FAILURES = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
)
# The store cannot be talked to at all: every further request would fail the same way.
UNREACHABLE_FAILURES = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.SSLError,
)


def error_code(exc: BaseException) -> str:
    """S3's error code of a failed request (``AccessDenied``...), else the exception's type name."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


def http_status(exc: BaseException) -> int | None:
    if isinstance(exc, botocore.exceptions.ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


def is_access_denied(exc: BaseException) -> bool:
    """The store answered and refused: the credentials are valid but may not do this."""
    return error_code(exc) in DENIED_CODES or http_status(exc) == 403


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES or http_status(exc) == 404


def is_fatal(exc: BaseException) -> bool:
    """A failure every further request of this run would repeat: the store is unreachable, or refuses the
    credentials, or the bucket is gone. A transfer stops starting new objects after one of these."""
    if isinstance(exc, UNREACHABLE_FAILURES + CREDENTIAL_FAILURES):
        return True
    code = error_code(exc)
    return code in BAD_CREDENTIAL_CODES | CLOCK_CODES | {"NoSuchBucket"} or is_access_denied(exc)


@dataclass(frozen=True)
class StoredObject:
    """What the store says about one object."""

    size: int
    sha256: str | None  # the x-amz-meta-sha256 it carries (what we recorded when we sent it)
    checksum_sha256: str | None = None  # the store's own SHA256 checksum (base64; a multipart one is composite)


def head_object(client, bucket: str, key: str, *, checksum: bool = False) -> StoredObject | None:
    """The object ``key``, or None when the store says it does not exist. ``checksum`` asks for the store's own
    checksum (ChecksumMode); a store that keeps none answers without it."""
    extra = {"ChecksumMode": "ENABLED"} if checksum else {}
    try:
        head = client.head_object(Bucket=bucket, Key=key, **extra)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    # Metadata names are HTTP header names, so case-insensitive: AWS answers x-amz-meta-sha256, rclone -Sha256.
    metadata = {name.lower(): value for name, value in head.get("Metadata", {}).items()}
    return StoredObject(int(head["ContentLength"]), metadata.get(SHA_METADATA), head.get("ChecksumSHA256"))


def stat_object(client, bucket: str, key: str) -> tuple[int, str | None] | None:
    """(size, recorded sha256) of an object, or None when the store says it does not exist."""
    stored = head_object(client, bucket, key)
    return None if stored is None else (stored.size, stored.sha256)


def list_keys(client, settings: S3Settings) -> list[str]:
    """Every key in the bucket (all pages), or a :class:`StorageError` saying why not."""
    try:
        return [
            o["Key"]
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket)
            for o in page.get("Contents", [])
        ]
    except S3_FAILURES as exc:
        raise storage_error(exc, settings, "listing the bucket") from exc


def resolves(host: str | None, port: int) -> bool:
    if not host:
        return True
    try:
        socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
        return True
    except (socket.gaierror, UnicodeError):
        return False


def storage_error(exc: BaseException, settings: S3Settings, doing: str) -> StorageError:
    """A boto3 failure as a :class:`StorageError` saying what happened and what to do; never carries a secret.

    Read by S3's error code and HTTP status, then by botocore's exception type; raise it ``from exc``.
    """
    code = error_code(exc)
    text = redact(str(exc))
    where = settings.endpoint_url or "AWS S3"
    again = "Run this step again afterwards: what is complete is kept and skipped."
    if isinstance(exc, botocore.exceptions.ProfileNotFound):
        return StorageError(
            f"There is no AWS profile {settings.profile!r} ({doing}).",
            hint="Name a profile of ~/.aws/config or ~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE), "
            "or give the keys in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY instead.",
        )
    if isinstance(exc, CREDENTIAL_FAILURES):
        return StorageError(
            f"No usable AWS credentials for {where} ({doing}): {text}",
            hint="Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or name an AWS profile that has both "
            "(--aws-profile, s3_aws_profile).",
        )
    if code in UNKNOWN_KEY_CODES:
        return StorageError(
            f"The object store does not know this access key ({code}, {doing}).",
            hint="Check the access key id (AWS_ACCESS_KEY_ID or the AWS profile): it must be a key of this store, "
            f"{where}, with access to bucket {settings.bucket}.",
        )
    if code in WRONG_SECRET_CODES:
        return StorageError(
            f"The object store refused the request signature ({code}, {doing}): the secret access key does not "
            "belong to this access key, or a proxy changed the request.",
            hint="Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile).",
        )
    if code in CLOCK_CODES:
        return StorageError(
            f"The object store refused the request's time ({code}, {doing}): this machine's clock differs from the "
            "store's by more than S3 allows (15 minutes).",
            hint="Set this machine's clock (NTP, or the air gap's time source), then run this step again.",
        )
    if code in REGION_CODES:
        return StorageError(
            f"The object store wants another region than {settings.region} ({code}, {doing}).",
            hint="Give the bucket's region (AWS_REGION, --region, s3_region).",
        )
    if code in BAD_DIGEST_CODES:
        return StorageError(
            f"The object store received other bytes than were sent ({code}, {doing}): they were damaged on the way.",
            hint="Check the network path (proxies that rewrite bodies, faulty hardware). " + again,
        )
    if code == "NoSuchUpload":
        return StorageError(
            f"The multipart upload was removed from the store while it ran ({doing}): another publish of the same "
            "keys, or a lifecycle rule, aborted it.",
            hint="Run one publish at a time per bucket, then run this step again.",
        )
    if code == "NoSuchBucket" or (is_not_found(exc) and getattr(exc, "operation_name", "") == "HeadBucket"):
        return StorageError(
            f"The bucket {settings.bucket} does not exist at {where} ({doing}).",
            hint="Create it (a dedicated bucket, nothing else in it), or correct the bucket name.",
        )
    if is_access_denied(exc):
        return StorageError(
            f"The object store refused {doing} ({code}).",
            hint="Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile) and "
            f"that they may read and write bucket {settings.bucket}.",
        )
    if is_not_found(exc):
        return StorageError(
            f"The object store has no such object ({code}, {doing}).",
            hint="It was deleted while this step ran, or never stored; publish again to send it.",
        )
    if code in BUSY_CODES or (http_status(exc) or 0) >= 500:
        return StorageError(
            f"The object store failed {doing} on its side ({code}).",
            hint="It is overloaded or unwell; check its health and free space. " + again,
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return StorageError(
            f"TLS verification failed for {settings.bucket_host} ({doing}): {text}",
            hint="Pass the CA bundle that signed the endpoint's certificate (ca_bundle=...), and check that its "
            f"SANs cover {settings.bucket_host}; run the preflight for details.",
        )
    if isinstance(exc, botocore.exceptions.ProxyConnectionError):
        return StorageError(
            f"The proxy on the way to {where} cannot be reached ({doing}): {text}",
            hint="Check HTTPS_PROXY / NO_PROXY: an object store inside the air gap is usually reached without one.",
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        host = settings.bucket_host
        if not resolves(host, settings.port):
            return StorageError(
                f"The name {host} does not resolve, so bucket {settings.bucket} cannot be reached at {where} ({doing}).",
                hint=f"Add a DNS record for it (a wildcard *.{settings.endpoint_host or 's3.amazonaws.com'} covers "
                "every bucket; for MinIO set MINIO_DOMAIN), or correct the endpoint or bucket name.",
            )
        return StorageError(
            f"The object store at {where} cannot be reached ({doing}): {text}",
            hint=f"{host} resolves; check that the store runs and listens on port {settings.port}, and that no "
            "firewall is in the way. " + again,
        )
    if isinstance(exc, botocore.exceptions.ConnectionClosedError | botocore.exceptions.ResponseStreamingError):
        return StorageError(
            f"The object store at {where} closed the connection in the middle of {doing}.",
            hint="It restarted, or a proxy or load balancer in front of it cut the transfer (check its body size and "
            "time limits). " + again,
        )
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError):
        return StorageError(
            f"The object store at {where} did not answer in time ({doing}): {text}",
            hint="Check the network path (proxy, firewall) and the store's load, then run this step again: it resumes.",
        )
    if isinstance(exc, botocore.exceptions.HTTPClientError | botocore.exceptions.ConnectionError):
        return StorageError(f"The connection to the object store at {where} failed ({doing}): {text}", hint=again)
    if isinstance(exc, botocore.exceptions.ClientError):
        return StorageError(f"The object store refused {doing} ({code}): {text}", hint=again)
    return StorageError(f"The object store failed {doing}: {text}", hint=again)
