"""Connecting to the S3-compatible object store (MinIO, AWS S3, others) the way DataRobot will.

DataRobot reads profiles with virtual-hosted addressing (``<bucket>.<domain>``)
over HTTPS with a verifiable chain, so those are the defaults: path-style and
``insecure`` exist for diagnosis, warn loudly, and are recorded in the run.
"""

from __future__ import annotations

import logging
import os
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


def make_client(settings: S3Settings, max_connections: int = 10, *, read_timeout: float = 120, retries: int = 5):
    """A boto3 S3 client for ``settings`` (``read_timeout`` seconds per answer, ``retries`` after a failed request)."""
    if settings.ca_bundle and not os.path.isfile(settings.ca_bundle):
        raise InputError(
            f"The CA bundle {settings.ca_bundle} does not exist.",
            hint="Give the PEM file of the CA that signed the object store's certificate.",
        )
    session = boto3.session.Session(profile_name=settings.profile) if settings.profile else boto3.session.Session()
    # boto3 >= 1.36 streams uploads as aws-chunked with a trailing CRC checksum unless told otherwise; S3 servers
    # other than AWS's (rclone, older MinIO and Ceph) refuse that (MissingContentLength). Checksums only when the
    # operation requires them, for any endpoint that is not AWS; every object still carries its sha256.
    checksums = "when_required" if settings.endpoint_url else "when_supported"
    config = Config(
        s3={"addressing_style": "path" if settings.path_style else "virtual"},
        retries={"max_attempts": retries, "mode": "standard"},
        max_pool_connections=max_connections,
        connect_timeout=10,
        read_timeout=read_timeout,
        request_checksum_calculation=checksums,
        response_checksum_validation=checksums,
    )
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        region_name=settings.region,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        verify=False if settings.insecure else (settings.ca_bundle or True),
        config=config,
    )


# What S3 answers, by error code (and HTTP status where a HEAD request has no body to carry a code).
DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403"})
BAD_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})
NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "NotFound", "404"})
SHA_METADATA = "sha256"  # x-amz-meta-sha256: the digest each object carries
S3_FAILURES = (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError)  # what a boto3 call raises


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


def stat_object(client, bucket: str, key: str) -> tuple[int, str | None] | None:
    """(size, recorded sha256) of an object, or None when the store says it does not exist."""
    try:
        head = client.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    # Metadata names are HTTP header names, so case-insensitive: AWS answers x-amz-meta-sha256, rclone -Sha256.
    metadata = {name.lower(): value for name, value in head.get("Metadata", {}).items()}
    return int(head["ContentLength"]), metadata.get(SHA_METADATA)


def storage_error(exc: BaseException, settings: S3Settings, doing: str) -> StorageError:
    """A boto3 failure as a :class:`StorageError` saying what to do; never carries a secret.

    Read by S3's error code and HTTP status, then by botocore's exception type; raise it ``from exc``.
    """
    code = error_code(exc)
    text = redact(str(exc))
    where = settings.endpoint_url or "AWS S3"
    if is_access_denied(exc) or code in BAD_CREDENTIAL_CODES:
        return StorageError(
            f"The object store refused {doing} ({code}).",
            hint="Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile) and "
            f"that they may read and write bucket {settings.bucket}.",
        )
    if is_not_found(exc):
        return StorageError(
            f"The bucket {settings.bucket} does not exist at {where} ({doing}).",
            hint="Create it (a dedicated bucket, nothing else in it), or correct the bucket name.",
        )
    if isinstance(exc, botocore.exceptions.SSLError):
        return StorageError(
            f"TLS verification failed for {settings.bucket_host} ({doing}): {text}",
            hint="Pass the CA bundle that signed the endpoint's certificate (ca_bundle=...), and check that its "
            f"SANs cover {settings.bucket_host}; run the preflight for details.",
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return StorageError(
            f"The object store at {where} cannot be reached ({doing}): {text}",
            hint=f"Check that {settings.bucket_host} resolves (for MinIO set MINIO_DOMAIN) and the port is open.",
        )
    if isinstance(exc, botocore.exceptions.ConnectTimeoutError | botocore.exceptions.ReadTimeoutError):
        return StorageError(
            f"The object store at {where} did not answer in time ({doing}): {text}",
            hint="Check the network path (proxy, firewall) and the store's load, then run this step again: it resumes.",
        )
    return StorageError(f"The object store failed {doing}: {text}")
