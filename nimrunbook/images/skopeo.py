"""The skopeo backend: daemonless copies that keep manifest digests and resume dropped layers."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from nimrunbook.errors import DockerError
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.exports import OCI_DIR, ImageCopy, check_digest, exported_before, write_index
from nimrunbook.images.failures import Failure, classify, missing_image, registry_failure
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.views import ExportSource, dir_view
from nimrunbook.localdisk import require_free_space, writeback_while_written
from nimrunbook.progress import Task
from nimrunbook.redact import redact

log = logging.getLogger(__name__)


def available() -> bool:
    return shutil.which("skopeo") is not None


def manifest_digest(raw: bytes) -> str:
    """The digest a registry names a manifest by: sha256 of its bytes as served."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def layer_bytes(raw: bytes) -> int:
    """Compressed size of the image's config and layers, for the disk check before an export."""
    manifest = json.loads(raw)
    parts = [manifest.get("config", {}), *manifest.get("layers", [])]
    return sum(int(p.get("size", 0)) for p in parts) + sum(int(m.get("size", 0)) for m in manifest.get("manifests", []))


class SkopeoBackend:
    name = "skopeo"
    INSPECT_TIMEOUT = 600

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
        code = process.wait()
        if code != 0:
            raise registry_failure(ref, "\n".join(lines[-20:]), exit_code=code, tool="skopeo")
        return "\n".join(lines)

    def raw_manifest(self, ref: ImageRef) -> bytes | None:
        """The manifest a tag points to, or None when the registry says it does not exist."""
        with ExitStack() as stack:
            authfile = stack.enter_context(self.access.auth_file())
            tls = self._tls_options(stack, ref.registry, "")
            try:
                result = subprocess.run(
                    ["skopeo", "inspect", "--raw", f"--authfile={authfile}", *tls, f"docker://{ref}"],
                    capture_output=True,
                    check=False,
                    timeout=self.INSPECT_TIMEOUT,
                )
            except subprocess.TimeoutExpired as exc:
                raise DockerError(
                    f"The registry {ref.registry} did not answer for {ref} within {self.INSPECT_TIMEOUT} s.",
                    hint="Check the network path (proxy, firewall) to the registry, then run this step again.",
                ) from exc
        if result.returncode == 0:
            return result.stdout
        error = result.stderr.decode("utf-8", "replace")
        if classify(error, exit_code=result.returncode) is Failure.NOT_FOUND:
            return None
        raise registry_failure(str(ref), error, exit_code=result.returncode, tool="skopeo")

    def digest(self, ref: ImageRef) -> str | None:
        raw = self.raw_manifest(ref)
        return None if raw is None else manifest_digest(raw)

    def _copy(
        self, source: str, destination: str, source_host: str | None, destination_host: str | None, ref: str
    ) -> str:
        """``skopeo copy`` between transports (``docker://...``, ``oci:DIR:NAME``, ``dir:``); returns the digest."""
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

    def copy(self, source: ImageRef, destination: ImageRef) -> None:
        self._copy(f"docker://{source}", f"docker://{destination}", source.registry, destination.registry, str(source))

    def export(self, images: Sequence[ImageRef], directory: Path, task: Task) -> list[ImageCopy]:
        """Each image into one OCI layout, one at a time (one writer per layout), its digest checked;
        the index is rewritten after each, so a re-run skips what is complete."""
        done = exported_before(directory)
        manifests = {}  # one inspect per image, for both the disk check and the digest
        for image in images:
            raw = self.raw_manifest(image)
            if raw is None:
                raise missing_image(image)
            manifests[image] = raw
        require_free_space(
            directory,
            sum(layer_bytes(manifests[i]) for i in images if str(i) not in done),
            what="The export",
            hint="Free space or export to a larger disk; images already exported are kept and skipped on a re-run.",
        )
        results = []
        for image in images:
            started = time.monotonic()
            expected = manifest_digest(manifests[image])
            name = f"oci:{OCI_DIR}:{image}"
            if done.get(str(image), {}).get("digest") == expected:
                result = ImageCopy(str(image), name, expected, "skipped", self.name, 0.0)
            else:
                with writeback_while_written(directory / OCI_DIR):  # skopeo writes each blob there first
                    written = self._copy(
                        f"docker://{image}", f"oci:{directory / OCI_DIR}:{image}", image.registry, None, str(image)
                    )
                check_digest(expected, written, image)
                result = ImageCopy(str(image), name, written, "copied", self.name, round(time.monotonic() - started, 3))
            results.append(result)
            done[str(image)] = result.as_dict()
            write_index(directory, self.name, list(done.values()))
            task.advance(1)
        return results

    def import_(
        self,
        source: ExportSource,
        entries: Sequence[dict],
        targets: Sequence[ImageRef],
        staging: Path,
        workers: int,
        task: Task,
    ) -> list[ImageCopy]:
        """Push each image of the layout in parallel, each through a ``dir:`` view in ``staging`` (see
        :mod:`nimrunbook.images.views`), digests checked."""
        index = source.layout_index()

        def one(numbered: tuple[int, dict, ImageRef]) -> ImageCopy:
            number, entry, target = numbered
            started = time.monotonic()
            if entry.get("digest") and self.digest(target) == entry["digest"]:
                task.advance(1)
                return ImageCopy(entry["source"], str(target), entry["digest"], "skipped", self.name, 0.0)
            view = staging / f"image-{number}"  # named by position: nothing from the export names a path here
            dir_view(source, index, entry, view)
            self._copy(f"dir:{view}", f"docker://{target}", None, target.registry, entry["source"])
            actual = self.digest(target)
            check_digest(entry["digest"], actual, target)
            task.advance(1)
            seconds = round(time.monotonic() - started, 3)
            return ImageCopy(entry["source"], str(target), actual, "copied", self.name, seconds)

        numbered = [(n, e, t) for n, (e, t) in enumerate(zip(entries, targets, strict=True))]
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            return list(pool.map(one, numbered))
