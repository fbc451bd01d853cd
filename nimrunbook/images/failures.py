"""What a registry client said, as an error that says what to do.

Registry clients report failures in layers, and each layer is read for what
structure it has before any wording: the HTTP status the Docker engine's API
answers with (404, 401, 403), skopeo's exit status, the OCI distribution
spec's error codes that every registry sends and every client prints as
``<code>: <message>`` (``manifest unknown: ...``, ``unauthorized: ...``), and
last the Go runtime's transport errors (``x509: ...``, ``dial tcp ...``) that
both the engine and skopeo pass through unchanged.
"""

from __future__ import annotations

import re
from enum import Enum

from nimrunbook.errors import DiskSpaceError, DockerError, ImageNotFoundError, NimRunbookError, RegistryAuthError
from nimrunbook.images.access import NGC_REGISTRY
from nimrunbook.images.refs import ImageRef
from nimrunbook.redact import redact


class Failure(Enum):
    AUTH = "access refused"
    NOT_FOUND = "not found"
    TLS = "TLS"
    UNREACHABLE = "unreachable"
    DISK_FULL = "disk full"
    OTHER = "other"


# OCI distribution spec error codes (UPPER_SNAKE on the wire), as clients print them: lower case, spaces, then ":".
_SPEC_CODES = {
    "unauthorized": Failure.AUTH,
    "denied": Failure.AUTH,
    "manifest unknown": Failure.NOT_FOUND,
    "name unknown": Failure.NOT_FOUND,
}
_SPEC_CODE_RE = re.compile(r"(?:^|[\s:\"])(" + "|".join(_SPEC_CODES) + r"):", re.IGNORECASE)
_STATUS_IN_TEXT_RE = re.compile(r"\b(?:status code from registry|status(?: code)?:?)\s+(\d{3})\b", re.IGNORECASE)
_STATUS_FAILURES = {401: Failure.AUTH, 403: Failure.AUTH, 404: Failure.NOT_FOUND}
# Fixed messages of the Docker engine and of Go's net, crypto/tls and os packages.
_ENGINE_AUTH = ("no basic auth credentials", "authentication required")
_TLS = ("x509:", "tls:", "server gave http response to https client")
_UNREACHABLE = ("dial tcp", "connection refused", "no such host", "i/o timeout", "context deadline exceeded")
_DISK_FULL = ("no space left on device",)
SKOPEO_NOT_FOUND_EXIT = 2  # skopeo's exit status for "the image does not exist" (where it can tell)


def classify(text: str, *, status: int | None = None, exit_code: int | None = None) -> Failure:
    """What kind of failure a registry client reported; see the module docstring for the order read."""
    lowered = text.lower()
    if status in _STATUS_FAILURES:
        return _STATUS_FAILURES[status]
    if exit_code == SKOPEO_NOT_FOUND_EXIT:
        return Failure.NOT_FOUND
    if any(word in lowered for word in _DISK_FULL):
        return Failure.DISK_FULL
    spec = _SPEC_CODE_RE.search(text)
    if spec:
        return _SPEC_CODES[spec.group(1).lower()]
    quoted = _STATUS_IN_TEXT_RE.search(text)
    if quoted and int(quoted.group(1)) in _STATUS_FAILURES:
        return _STATUS_FAILURES[int(quoted.group(1))]
    if any(word in lowered for word in _ENGINE_AUTH):
        return Failure.AUTH
    if any(word in lowered for word in _TLS):
        return Failure.TLS
    if any(word in lowered for word in _UNREACHABLE):
        return Failure.UNREACHABLE
    return Failure.OTHER


def registry_of(ref: str) -> str:
    """The registry host of an image reference (Docker Hub when it names none), for messages."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def registry_failure(
    ref: str, text: str, *, status: int | None = None, exit_code: int | None = None, tool: str = "Docker"
) -> NimRunbookError:
    """What ``tool`` said about ``ref`` (with its HTTP status or exit status), as an error with the fix.

    Secrets are redacted from ``text``. Raise the result ``from`` the original exception.
    """
    text = redact(text.strip())
    registry = registry_of(ref)
    failure = classify(text, status=status, exit_code=exit_code)
    if failure is Failure.AUTH:
        fix = (
            "Check NGC_API_KEY (an NGC API key with access to this NIM; user $oauthtoken)."
            if registry == NGC_REGISTRY
            else f"Log in first (`docker login {registry}`) or check the credentials in your Docker config."
        )
        return RegistryAuthError(f"The registry {registry} refused access to {ref}: {text}", hint=fix)
    if failure is Failure.NOT_FOUND:
        return ImageNotFoundError(
            f"The image {ref} was not found: {text}",
            hint="Check the image name and tag (e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5) "
            "against the NGC catalog or your registry.",
        )
    if failure is Failure.TLS:
        return DockerError(
            f"TLS verification of {registry} failed: {text}",
            hint=f"Pass the CA bundle that signed {registry}'s certificate (ca_bundles={{'{registry}': 'ca.pem'}}, "
            f"CLI --registry-ca {registry}=ca.pem; the Docker engine reads /etc/docker/certs.d/{registry}/ca.crt).",
        )
    if failure is Failure.UNREACHABLE:
        return DockerError(
            f"The registry {registry} cannot be reached: {text}",
            hint="Check the host name, port, proxy settings and that the registry is running.",
        )
    if failure is Failure.DISK_FULL:
        return DiskSpaceError(
            f"The disk filled up while copying {ref}: {text}", hint="Free space, then run again: it resumes."
        )
    return DockerError(f"{tool} failed on {ref}: {text}")


def missing_image(ref: ImageRef) -> NimRunbookError:
    """The source of a copy has no such tag: the registry answered, without a manifest."""
    return registry_failure(str(ref), f"manifest unknown: {ref.registry} has no manifest for {ref.tag or ref.digest}")
