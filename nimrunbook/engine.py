"""The Docker engine: connecting to it, and turning its failures into messages a user can act on."""

from __future__ import annotations

import os

import docker
import docker.errors

from nimrunbook.errors import DiskSpaceError, DockerError, ImageNotFoundError, NimRunbookError, RegistryAuthError
from nimrunbook.redact import redact

NGC_REGISTRY = "nvcr.io"
NGC_USERNAME = "$oauthtoken"


def docker_client(base_url: str | None = None, timeout: int = 300) -> docker.DockerClient:
    """A client for ``base_url``, else DOCKER_HOST, else the default socket; a clear error if none answers."""
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)
        )
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        where = base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        raise DockerError(
            f"No Docker engine answers at {where} ({type(exc).__name__}).",
            hint="Start it (`systemctl start docker`, or as root `dockerd &`), or point DOCKER_HOST at a running "
            "engine (e.g. DOCKER_HOST=unix:///tmp/nimrunbook-engine/docker.sock), then run this step again.",
        ) from None


def registry_of(ref: str) -> str:
    """The registry host of an image reference (Docker Hub when it names none)."""
    first, sep, _ = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a digest reference keeps its ``@sha256:...`` as the tag."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


def auth_for(ref: str, ngc_api_key: str | None) -> dict | None:
    """Credentials for pulling ``ref``: the NGC key for nvcr.io; else None (the Docker config's)."""
    if registry_of(ref) == NGC_REGISTRY and ngc_api_key:
        return {"username": NGC_USERNAME, "password": ngc_api_key}
    return None


def translate_api_error(exc: Exception, ref: str) -> NimRunbookError:
    """A Docker API error about ``ref`` as one of our errors, with the fix, secrets redacted."""
    return registry_failure(str(getattr(exc, "explanation", None) or exc), ref)


def registry_failure(text: str, ref: str) -> NimRunbookError:
    """What a registry client (Docker, skopeo) said about ``ref``, as an error that says what to do."""
    text = redact(text.strip())
    lowered = text.lower()
    registry = registry_of(ref)
    if any(
        word in lowered for word in ("unauthorized", "denied", "authentication required", "forbidden", "no basic auth")
    ):
        fix = (
            "Check NGC_API_KEY (an NGC API key with access to this NIM; user $oauthtoken)."
            if registry == NGC_REGISTRY
            else f"Log in first (`docker login {registry}`) or check the credentials in your Docker config."
        )
        return RegistryAuthError(f"The registry {registry} refused access to {ref}: {text}", hint=fix)
    if any(word in lowered for word in ("not found", "manifest unknown", "no such image", "does not exist")):
        return ImageNotFoundError(
            f"The image {ref} was not found: {text}",
            hint="Check the image name and tag (e.g. nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5) "
            "against the NGC catalog or your registry.",
        )
    if "x509" in lowered or "certificate" in lowered or "tls:" in lowered:
        return DockerError(
            f"TLS verification of {registry} failed: {text}",
            hint=f"Pass the CA bundle that signed {registry}'s certificate (ca_bundles={{'{registry}': 'ca.pem'}}, "
            f"CLI --registry-ca {registry}=ca.pem; the Docker engine reads /etc/docker/certs.d/{registry}/ca.crt).",
        )
    if any(word in lowered for word in ("connection refused", "no such host", "timeout", "i/o timeout", "dial tcp")):
        return DockerError(
            f"The registry {registry} cannot be reached: {text}",
            hint="Check the host name, port, proxy settings and that the registry is running.",
        )
    if "no space left" in lowered:
        return DiskSpaceError(
            f"The disk filled up while copying {ref}: {text}", hint="Free space, then run again: it resumes."
        )
    return DockerError(f"Docker failed on {ref}: {text}")
