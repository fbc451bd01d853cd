"""Preflight the object store before hundreds of GB move: each check with its own message and fix.

These are the checks whose failure otherwise shows up only inside the air gap,
as a NIM that cannot read its profiles: the bucket's virtual-hosted name must
resolve, its certificate must verify and cover that name, the credentials must
work, the bucket must exist, hold nothing but NIM objects, and take writes.
"""

from __future__ import annotations

import socket
import ssl
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

import pandas as pd

from nimrunbook.errors import PreflightError, StorageError, problems_error
from nimrunbook.store.client import S3_FAILURES, S3Settings, is_not_found, make_client, storage_error
from nimrunbook.store.keys import looks_like_nim_key

Status = Literal["ok", "warn", "fail", "skipped"]


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class PreflightReport:
    settings: dict
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.status != "fail" for c in self.checks)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.checks], columns=["name", "status", "detail", "fix"])

    def raise_for_failures(self) -> None:
        failed = [c for c in self.checks if c.status == "fail"]
        if failed:
            raise problems_error(
                PreflightError,
                "The object store preflight failed",
                [f"{c.name}: {c.detail} Fix: {c.fix}" for c in failed],
                hint="Fix each check named above, then run the preflight again.",
            )


def certificate_names(host: str, port: int, server_name: str) -> tuple[str, list[str]]:
    """Subject and SANs of the certificate a server presents, read without verifying it."""
    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=server_name) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    certificate = x509.load_der_x509_certificate(der)
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(v) for v in sans.get_values_for_type(x509.DNSName)]
        names += [str(v) for v in sans.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return certificate.subject.rfc4514_string(), names


def _check_resolves(settings: S3Settings) -> Check:
    host = settings.bucket_host
    try:
        addresses = sorted({info[4][0] for info in socket.getaddrinfo(host, settings.port, proto=socket.IPPROTO_TCP)})
        return Check("bucket host resolves", "ok", f"{host} -> {', '.join(addresses)}")
    except socket.gaierror as exc:
        return Check(
            "bucket host resolves",
            "fail",
            f"{host} does not resolve ({exc.strerror}).",
            f"Add a DNS record (a wildcard *.{settings.endpoint_host} covers every bucket); for MinIO set "
            f"MINIO_DOMAIN={settings.endpoint_host} so it serves virtual-hosted buckets.",
        )


def _check_tls(settings: S3Settings) -> Check:
    if settings.endpoint_url and not settings.endpoint_url.startswith("https://"):
        return Check("TLS", "fail", f"{settings.endpoint_url} is not HTTPS.", "DataRobot requires an HTTPS endpoint.")
    host = settings.bucket_host
    try:
        subject, sans = certificate_names(host, settings.port, host)
    except OSError as exc:
        return Check(
            "TLS", "fail", f"No TLS connection to {host}:{settings.port} ({exc}).", "Check the endpoint and port."
        )
    described = f"certificate subject {subject}; SANs {', '.join(sans) or '(none)'}"
    if settings.insecure:
        return Check("TLS", "warn", f"not verified (insecure); {described}", "Pass ca_bundle= instead of insecure.")
    context = (
        ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else ssl.create_default_context()
    )
    try:
        with (
            socket.create_connection((host, settings.port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return Check("TLS", "ok", f"verified for {host}; {described}")
    except ssl.SSLCertVerificationError as exc:
        if "hostname" in (exc.verify_message or "").lower() or "Hostname mismatch" in str(exc):
            return Check(
                "TLS",
                "fail",
                f"The certificate does not cover {host}: {described}.",
                f"Reissue it with a SAN of *.{settings.endpoint_host} (virtual-hosted buckets need the wildcard).",
            )
        which = settings.ca_bundle or "the system trust store"
        return Check(
            "TLS",
            "fail",
            f"The certificate does not verify against {which} ({exc.verify_message}); {described}.",
            "Pass the CA bundle (PEM) of the CA that signed it as ca_bundle=; the same CA must be mounted into "
            "DataRobot's workloads.",
        )
    except (ssl.SSLError, OSError) as exc:
        return Check("TLS", "fail", f"TLS handshake with {host} failed ({exc}).", "Check the endpoint's TLS setup.")


def run_preflight(settings: S3Settings, *, probe: bool = True) -> PreflightReport:
    """Run every check; later checks that need an earlier one are skipped when it failed."""
    checks = [_check_resolves(settings)]
    if checks[0].status == "fail":
        return PreflightReport(settings.record(), checks + [Check("TLS", "skipped", "host does not resolve")])
    checks.append(_check_tls(settings))
    if checks[-1].status == "fail":
        return PreflightReport(settings.record(), checks)
    try:
        client = make_client(settings)
        client.head_bucket(Bucket=settings.bucket)
        checks.append(Check("credentials", "ok", "accepted"))
        checks.append(Check("bucket exists", "ok", settings.bucket))
    except (StorageError, *S3_FAILURES) as exc:
        if isinstance(exc, StorageError):  # the client could not be made (an unknown AWS profile)
            checks.append(Check("credentials", "fail", exc.message, exc.hint or ""))
        elif is_not_found(exc):
            checks.append(Check("credentials", "ok", "accepted"))
            checks.append(
                Check("bucket exists", "fail", f"{settings.bucket} does not exist.", "Create the dedicated bucket.")
            )
        else:
            error = storage_error(exc, settings, "a request with these credentials")
            checks.append(Check("credentials", "fail", error.message, error.hint or ""))
        return PreflightReport(settings.record(), checks)
    try:
        listing = client.list_objects_v2(Bucket=settings.bucket, MaxKeys=1000)
    except S3_FAILURES as exc:
        error = storage_error(exc, settings, "listing the bucket")
        checks.append(Check("dedicated bucket", "fail", error.message, error.hint or ""))
        return PreflightReport(settings.record(), checks)
    foreign = [o["Key"] for o in listing.get("Contents", []) if not looks_like_nim_key(o["Key"])]
    if foreign:
        checks.append(
            Check(
                "dedicated bucket",
                "warn",
                f"{len(foreign)} objects are not NIM profile files, e.g. {foreign[0]!r}.",
                "DataRobot wants a bucket that holds only NIM profiles at its root; use a dedicated bucket.",
            )
        )
    else:
        checks.append(Check("dedicated bucket", "ok", f"{listing.get('KeyCount', 0)} objects, all NIM keys"))
    if probe:
        key = f"nimrunbook-preflight-{uuid.uuid4().hex}"
        try:
            client.put_object(Bucket=settings.bucket, Key=key, Body=b"nimrunbook preflight probe")
            read_back = client.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
            client.delete_object(Bucket=settings.bucket, Key=key)
            if read_back == b"nimrunbook preflight probe":
                checks.append(Check("write, read, delete", "ok", "probe object put, read back and deleted"))
            else:
                checks.append(
                    Check(
                        "write, read, delete",
                        "fail",
                        f"The probe object came back as {len(read_back)} other bytes.",
                        "The store does not return what it was given; check its configuration (gateways, "
                        "encryption, compression) before publishing.",
                    )
                )
        except S3_FAILURES as exc:
            error = storage_error(exc, settings, "writing a probe object")
            checks.append(Check("write, read, delete", "fail", error.message, error.hint or ""))
    for warning in settings.warnings:
        checks.append(Check("settings", "warn", warning))
    return PreflightReport(settings.record(), checks)
