"""The skopeo backend: daemonless copies that keep manifest digests and resume dropped layers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from nimrunbook.engine import registry_failure
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.refs import ImageRef
from nimrunbook.redact import redact

log = logging.getLogger(__name__)


def available() -> bool:
    return shutil.which("skopeo") is not None


LIST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


def dir_view_of_layout(layout: Path, ref_name: str, view: Path) -> None:
    """Present one image of an OCI layout in skopeo's ``dir:`` format, by hard links (no bytes copied).

    skopeo 1.9 (Debian 12) writes Docker-typed manifests into an OCI layout
    with --preserve-digests but will not read them back from it; its ``dir:``
    transport reads any manifest byte for byte, so the digest survives.
    """
    index = json.loads((layout / "index.json").read_text())
    matches = [
        m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == ref_name
    ]
    if not matches:
        from nimrunbook.errors import VerificationError

        raise VerificationError(
            f"The image layout {layout} has no image named {ref_name}.", hint="Export the image again."
        )
    blobs = layout / "blobs" / "sha256"
    view.mkdir(parents=True, exist_ok=True)
    (view / "version").write_text("Directory Transport Version: 1.1\n")
    top = matches[0]["digest"].removeprefix("sha256:")
    os.link(blobs / top, view / "manifest.json")
    pending = [top]
    while pending:
        manifest = json.loads((blobs / pending.pop()).read_bytes())
        if manifest.get("mediaType") in LIST_TYPES or "manifests" in manifest:
            for instance in manifest.get("manifests", []):
                digest = instance["digest"].removeprefix("sha256:")
                os.link(blobs / digest, view / f"{digest}.manifest.json")
                pending.append(digest)
            continue
        for blob in [manifest.get("config", {}), *manifest.get("layers", [])]:
            digest = blob.get("digest", "").removeprefix("sha256:")
            if digest and not (view / digest).exists():
                os.link(blobs / digest, view / digest)


class SkopeoBackend:
    name = "skopeo"

    def __init__(self, access: RegistryAccess) -> None:
        self.access = access

    def _tls_options(self, stack: ExitStack, host: str, side: str) -> list[str]:
        """TLS flags for one side (``src``, ``dest``, or ``""`` for inspect)."""
        prefix = f"--{side}-" if side else "--"
        if not self.access.verifies(host):
            return [f"{prefix}tls-verify=false"]
        cert_dir = stack.enter_context(self.access.cert_dir(host))
        return [f"{prefix}cert-dir={cert_dir}"] if cert_dir else []

    def _run(self, args: list[str], ref: str) -> str:
        """Run skopeo, logging its lines as they come (a 20 GB image takes a while), redacted."""
        process = subprocess.Popen(["skopeo", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            log.info("[skopeo %s] %s", ref, redact(line.rstrip()))
        if process.wait() != 0:
            raise registry_failure("\n".join(lines[-20:]), ref)
        return "\n".join(lines)

    def raw_manifest(self, ref: ImageRef) -> bytes | None:
        """The manifest a tag points to, or None when the tag does not exist there."""
        with ExitStack() as stack:
            authfile = stack.enter_context(self.access.auth_file())
            tls = self._tls_options(stack, ref.registry, "")
            result = subprocess.run(
                ["skopeo", "inspect", "--raw", f"--authfile={authfile}", *tls, f"docker://{ref}"],
                capture_output=True,
                check=False,
                timeout=600,
            )
        if result.returncode == 0:
            return result.stdout
        error = result.stderr.decode("utf-8", "replace")
        if "manifest unknown" in error.lower() or "not found" in error.lower():
            return None
        raise registry_failure(error, str(ref))

    def digest(self, ref: ImageRef) -> str | None:
        raw = self.raw_manifest(ref)
        return None if raw is None else "sha256:" + hashlib.sha256(raw).hexdigest()

    def layer_bytes(self, ref: ImageRef) -> int:
        """Compressed size of the image's config and layers, for the disk check before an export."""
        raw = self.raw_manifest(ref)
        if raw is None:
            return 0
        manifest = json.loads(raw)
        parts = [manifest.get("config", {}), *manifest.get("layers", [])]
        return sum(int(p.get("size", 0)) for p in parts) + sum(
            int(m.get("size", 0)) for m in manifest.get("manifests", [])
        )

    def copy(
        self, source: str, destination: str, source_host: str | None, destination_host: str | None, ref: str
    ) -> str:
        """``skopeo copy`` between transports (``docker://...``, ``oci:DIR:NAME``); returns the digest written."""
        with ExitStack() as stack, tempfile.TemporaryDirectory() as scratch:
            authfile = stack.enter_context(self.access.auth_file())
            digest_file = Path(scratch) / "digest"
            args = ["copy", "--all", "--preserve-digests", f"--authfile={authfile}", f"--digestfile={digest_file}"]
            if source_host:
                args += self._tls_options(stack, source_host, "src")
            if destination_host:
                args += self._tls_options(stack, destination_host, "dest")
            self._run([*args, source, destination], ref)
            return digest_file.read_text().strip()
