"""The smoke test's verdict: per profile pulled, fetched, identical, and when not, the cause and what to do.

Causes are read from what the NIM's own ``download-to-cache`` printed, and
from comparing the bytes it left in the scratch cache with the digests
recorded at publish time. The NIM's wording is not specified by NVIDIA, so
the patterns are broad (S3 error codes, HTTP statuses, Go/OpenSSL/rustls TLS
wording) and a failure they do not recognise is still a failure, reported
with the NIM's own last lines.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import pandas as pd

from nimrunbook.errors import VerificationError, problems_error
from nimrunbook.nim import error_lines


class Cause(StrEnum):
    IMAGE_NOT_IN_REGISTRY = "image not in the registry"
    REGISTRY_DENIED = "registry refused access"
    REGISTRY_TLS_NOT_TRUSTED = "registry TLS not trusted"
    PULL_FAILED = "pull failed"
    ACCESS_DENIED = "access denied"
    OBJECT_MISSING = "object missing"
    BYTES_DIFFER = "bytes differ"
    TLS_NOT_TRUSTED = "TLS not trusted"
    ENDPOINT_UNREACHABLE = "endpoint unreachable"
    NGC_WANTED = "NIM asked for NGC"
    TIMED_OUT = "timed out"
    NOT_RECORDED = "not in the publish record"
    DOWNLOAD_FAILED = "download failed"


FIXES: dict[Cause, str] = {
    Cause.IMAGE_NOT_IN_REGISTRY: "Mirror the image into the internal registry under the same path and tag (step 02, "
    "or 06 from a bundle), then run the smoke test again.",
    Cause.REGISTRY_DENIED: "Give the Docker engine the internal registry's credentials (`docker login <registry>`), "
    "the ones DataRobot's image pull secret holds.",
    Cause.REGISTRY_TLS_NOT_TRUSTED: "Install the registry's CA for the Docker engine "
    "(/etc/docker/certs.d/<registry>/ca.crt), as the cluster's nodes must have it.",
    Cause.PULL_FAILED: "Fix what the pull error says; check that the registry is running and reachable.",
    Cause.ACCESS_DENIED: "Grant the read-only key s3:GetObject on every object of the bucket (and check the key "
    "and secret are the ones DataRobot uses).",
    Cause.OBJECT_MISSING: "Publish the profile again (step 04, or 06 from a bundle): re-running uploads only what "
    "is missing.",
    Cause.BYTES_DIFFER: "The object changed after it was published: publish the profile again (step 04 or 06); it "
    "re-sends objects whose checksum differs.",
    Cause.TLS_NOT_TRUSTED: "Pass the CA bundle that signed the endpoint's certificate (s3_ca_bundle / --ca-bundle), "
    "and check that its SANs cover <bucket>.<domain>; DataRobot needs the same CA.",
    Cause.ENDPOINT_UNREACHABLE: "Check that <bucket>.<domain> resolves on this host and the port is open; if this "
    "host's firewall drops traffic from Docker networks, run the smoke test with network='host'.",
    Cause.NGC_WANTED: "This NIM did not read NIM_REPOSITORY_OVERRIDE for download-to-cache: check the NIM version "
    "supports s3:// repository overrides.",
    Cause.TIMED_OUT: "download-to-cache did not finish in the time given: allow more (timeout), or find what it "
    "waits for in its last lines (a slow or stalled endpoint).",
    Cause.NOT_RECORDED: "The publish record has no checksum for this file: publish the profile (step 04 or 06) and "
    "give that step's record.",
    Cause.DOWNLOAD_FAILED: "Read the NIM's last lines (in the result's runs) and fix what they say.",
}

# Causes that stop every profile alike: re-running profile by profile would only repeat them.
SHARED_CAUSES = frozenset({Cause.TLS_NOT_TRUSTED, Cause.ENDPOINT_UNREACHABLE, Cause.NGC_WANTED, Cause.TIMED_OUT})

_PATTERNS: tuple[tuple[Cause, re.Pattern[str]], ...] = (
    (Cause.NGC_WANTED, re.compile(r"NGC_API_KEY|NGC_CLI_API_KEY|api\.ngc\.nvidia\.com|authn\.nvidia\.com")),
    (Cause.ACCESS_DENIED, re.compile(r"AccessDenied|Forbidden|\b403\b|InvalidAccessKeyId|SignatureDoesNotMatch")),
    (Cause.OBJECT_MISSING, re.compile(r"NoSuchKey|NoSuchBucket|\b404\b|(?i:not found|does not exist)")),
    (Cause.TLS_NOT_TRUSTED, re.compile(r"x509|(?i:certificate|\bTLS\b|\bSSL\b|handshake)")),
    (
        Cause.ENDPOINT_UNREACHABLE,
        re.compile(
            r"(?i:connection refused|timed out|timeout|no such host|name or service not known|failed to lookup|"
            r"dns error|no route to host|network is unreachable|dial tcp|could not connect|connect error)"
        ),
    ),
    (Cause.BYTES_DIFFER, re.compile(r"(?i:checksum|hash mismatch|digest mismatch|integrity)")),
)
_ERROR_LINE = re.compile(r"(?i)\berror\b|\bfailed\b|exception|traceback")


def classify(output: str) -> tuple[Cause, str]:
    """The cause a failed ``download-to-cache`` names, and the line that names it.

    Read first: the lines in NIM's own error log shapes (:func:`nimrunbook.nim.error_lines`), then any line
    that speaks of an error, then every line.
    """
    lines = [line for line in output.splitlines() if line.strip()]
    for candidates in (error_lines(output), [line for line in lines if _ERROR_LINE.search(line)], lines):
        for cause, pattern in _PATTERNS:
            for line in reversed(candidates):
                if pattern.search(line):
                    return cause, line.strip()
    return Cause.DOWNLOAD_FAILED, (lines[-1].strip() if lines else "no output")


@dataclass
class FileCheck:
    """One manifest file of one profile: what the NIM left in the scratch cache against the recorded digest."""

    profile_id: str
    path: str  # the file's path in the profile's workspace
    key: str  # its object key
    status: str  # identical | bytes differ | not fetched | not recorded
    size: int | None = None
    sha256: str | None = None
    expected_sha256: str | None = None


@dataclass
class ProfileCheck:
    profile_id: str
    name: str | None
    pulled: bool
    fetched: bool
    identical: bool
    files: int = 0
    bytes: int = 0
    cause: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.pulled and self.fetched and self.identical

    @property
    def fix(self) -> str:
        return FIXES.get(Cause(self.cause), "") if self.cause else ""


@dataclass
class DownloadRun:
    """One ``download-to-cache`` in the smoke test's container."""

    profiles: list[str]
    exit_code: int
    seconds: float
    output: str = field(repr=False, default="")  # redacted
    timed_out: bool = False

    @property
    def last_lines(self) -> list[str]:
        return self.output.strip().splitlines()[-8:]


@dataclass
class SmokeResult:
    """What the NIM made of the published profiles; ``ok`` when every profile was pulled, fetched and identical."""

    image: str
    digest: str | None
    bucket: str
    endpoint_url: str | None
    region: str
    network: str
    credentials: str  # how the container got them ("environment", "profile NAME"); never the keys
    environment: list[str]  # names of the container's environment variables, as Docker reports them
    profiles: list[ProfileCheck]
    files: list[FileCheck] = field(default_factory=list)
    runs: list[DownloadRun] = field(default_factory=list)
    seconds: float = 0.0
    scratch_removed: bool = True

    @property
    def ok(self) -> bool:
        return bool(self.profiles) and all(p.ok for p in self.profiles)

    def frame(self) -> pd.DataFrame:
        """One row per profile, problems first: the table for the report."""
        columns = ["profile", "name", "pulled", "fetched", "identical", "files", "bytes", "cause", "detail", "fix"]
        rows = [
            {
                "profile": p.profile_id,
                "name": p.name,
                "pulled": p.pulled,
                "fetched": p.fetched,
                "identical": p.identical,
                "files": p.files,
                "bytes": p.bytes,
                "cause": p.cause or "",
                "detail": p.detail,
                "fix": p.fix,
            }
            for p in sorted(self.profiles, key=lambda p: p.ok)
        ]
        return pd.DataFrame(rows, columns=columns)

    def files_frame(self) -> pd.DataFrame:
        """One row per manifest file of each profile."""
        columns = ["profile_id", "path", "key", "status", "size", "sha256", "expected_sha256"]
        return pd.DataFrame([asdict(f) for f in self.files], columns=columns)

    def as_dict(self) -> dict:
        """For the run record: everything but the NIM's full output (its last lines are kept)."""
        document = asdict(self)
        document["runs"] = [
            {
                "profiles": r.profiles,
                "exit_code": r.exit_code,
                "seconds": r.seconds,
                "timed_out": r.timed_out,
                "last_lines": r.last_lines,
            }
            for r in self.runs
        ]
        document["ok"] = self.ok
        return document

    def summary(self) -> str:
        good = sum(p.ok for p in self.profiles)
        verdict = "PASSED" if self.ok else "FAILED"
        return (
            f"Smoke test {verdict}: {good} of {len(self.profiles)} profiles pulled, fetched and identical; image "
            f"{self.image}{' (' + self.digest + ')' if self.digest else ''}, bucket s3://{self.bucket}/, network "
            f"{self.network}, {self.seconds:.1f} s."
        )

    def raise_for_failure(self) -> None:
        if self.ok:
            return
        failed = [p for p in self.profiles if not p.ok]
        fixes = " ".join(dict.fromkeys(p.fix for p in failed if p.fix))
        raise problems_error(
            VerificationError,
            f"The NIM could not read {len(failed)} of {len(self.profiles)} profiles from s3://{self.bucket}/ as "
            "published",
            [f"{p.name or p.profile_id[:12]} ({p.profile_id[:12]}): {p.cause}: {p.detail}" for p in failed],
            hint=fixes or None,
        )
