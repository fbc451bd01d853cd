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

from nimrunbook.errors import InputError, StorageError
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

    @classmethod
    def from_environment(cls, bucket: str | None = None, **overrides) -> S3Settings:
        """The guide's variables: NIM_BUCKET_NAME, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_CA_BUNDLE, keys."""
        return cls(
            bucket=bucket or os.environ.get("NIM_BUCKET_NAME", ""),
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
            ca_bundle=os.environ.get("AWS_CA_BUNDLE") or None,
            **overrides,
        )


def make_client(settings: S3Settings, max_connections: int = 10):
    """A boto3 S3 client for ``settings``."""
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
        retries={"max_attempts": 5, "mode": "standard"},
        max_pool_connections=max_connections,
        connect_timeout=10,
        read_timeout=120,
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


def error_code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


def storage_error(exc: Exception, settings: S3Settings, doing: str) -> StorageError:
    """A boto3 failure as a :class:`StorageError` saying what to do; never carries a secret."""
    code = error_code(exc)
    text = redact(str(exc))
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "AccessDenied", "Forbidden"):
        return StorageError(
            f"The object store refused {doing} ({code}).",
            hint="Check the access key and secret (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile) and "
            f"that they may read and write bucket {settings.bucket}.",
        )
    if code in ("NoSuchBucket", "404", "NotFound"):
        return StorageError(
            f"The bucket {settings.bucket} does not exist at {settings.endpoint_url or 'AWS S3'} ({doing}).",
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
            f"The object store at {settings.endpoint_url or 'AWS S3'} cannot be reached ({doing}): {text}",
            hint=f"Check that {settings.bucket_host} resolves (for MinIO set MINIO_DOMAIN) and the port is open.",
        )
    return StorageError(f"The object store failed {doing}: {text}")
