"""Drive a NIM container through Docker with the container's own tools.

`list-model-profiles` and `download-to-cache` know the image's profiles and
NGC's protocol better than any guess of ours, so we run them, in throwaway
containers that need no GPU, and read the manifest straight from the image
without starting the model.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tarfile
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
import docker.errors
import pandas as pd

from nimrunbook.errors import (
    CacheNotWritableError,
    ContainerFailedError,
    DiskSpaceError,
    DockerError,
    InputError,
    RegistryAuthError,
    UnknownProfileError,
)
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.access import ngc_api_key as find_ngc_key
from nimrunbook.images.docker_backend import DockerBackend, docker_failure
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import NimCache, require_free_space
from nimrunbook.profiles import Manifest, parse_listing, parse_manifest
from nimrunbook.progress import SILENT, Reporter
from nimrunbook.redact import redact

log = logging.getLogger(__name__)

NIM_UID = 1000
CONTAINER_CACHE = "/opt/nim/.cache"
MANIFEST_PATHS = ("/opt/nim/etc/default/model_manifest.yaml", "/etc/nim/config/model_manifest.yaml")


def _image_present(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def pull_image(
    client: docker.DockerClient,
    ref: str,
    *,
    access: RegistryAccess | None = None,
    progress: Reporter = SILENT,
) -> str:
    """Pull ``ref`` unless the engine has it; returns its image id.

    ``ref`` follows the one rule of :mod:`nimrunbook.images.refs` (registry,
    path, tag: never an implicit ``latest``). Credentials come from ``access``
    (default: nvcr.io with user ``$oauthtoken`` and the environment's NGC key);
    other registries use the Docker config's.
    """
    image = ImageRef.parse(ref)
    if _image_present(client, ref):
        log.info("%s is already present; not pulling", ref)
        return client.images.get(ref).id
    with progress.task(f"pull {ref}") as task:
        DockerBackend(client, access or RegistryAccess.from_environment()).pull(image, task)
    return client.images.get(ref).id


def _run_tool(
    client: docker.DockerClient,
    image: str,
    command: list[str],
    *,
    environment: dict[str, str] | None = None,
    volumes: dict | None = None,
    network_mode: str = "host",
    gpus: bool = False,
    on_line=None,
    poll=None,
) -> tuple[int, str]:
    """Run a NIM tool in a throwaway container; returns (exit code, output). Always removes it."""
    device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else None
    try:
        container = client.containers.create(
            image,
            command,
            environment=environment or {},
            volumes=volumes or {},
            network_mode=network_mode,
            device_requests=device_requests,
        )
    except (docker.errors.ImageNotFound, docker.errors.APIError) as exc:
        raise docker_failure(exc, image) from exc
    try:
        container.start()
    except docker.errors.APIError as exc:
        container.remove(force=True)
        raise docker_failure(exc, image) from exc
    lines: deque[str] = deque(maxlen=2000)
    output: list[str] = []

    def follow() -> None:
        pending = b""
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = redact(raw.decode("utf-8", "replace"))
                lines.append(line)
                output.append(line)
                if on_line:
                    on_line(line)
        if pending:
            output.append(redact(pending.decode("utf-8", "replace")))

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        while True:
            try:
                status = container.wait(timeout=1)
                break
            except Exception:  # noqa: BLE001 - read timeout: still running (issue 17: a dead engine loops here)
                if poll:
                    poll()
        reader.join(timeout=10)
        return int(status.get("StatusCode", 1)), "\n".join(output)
    finally:
        with contextlib.suppress(docker.errors.APIError):
            container.remove(force=True)


def list_profiles(
    client: docker.DockerClient,
    image: str,
    *,
    gpus: bool = False,
    environment: dict[str, str] | None = None,
    network_mode: str = "none",
) -> tuple[pd.DataFrame, str]:
    """Run ``list-model-profiles`` in a throwaway container; returns (parsed listing, raw text).

    No GPU is needed (NIM then lists every profile); GPUs are passed through
    only when ``gpus`` is true, and only when the engine has them.
    """
    code, text = _run_tool(
        client, image, ["list-model-profiles"], environment=environment, network_mode=network_mode, gpus=gpus
    )
    if code != 0:
        raise ContainerFailedError(
            f"list-model-profiles exited with code {code} in {image}. Its last lines:\n{_tail(text)}",
            hint="Check that the image is a NIM LLM image; run it by hand with `docker run --rm IMAGE list-model-profiles`.",
        )
    return parse_listing(text), text


def read_manifest(client: docker.DockerClient, image: str) -> tuple[Manifest, str]:
    """Copy ``model_manifest.yaml`` out of the image without starting it; returns (parsed, raw text)."""
    try:
        container = client.containers.create(image, command=["true"], network_mode="none")
    except (docker.errors.ImageNotFound, docker.errors.APIError) as exc:
        raise docker_failure(exc, image) from exc
    try:
        for path in MANIFEST_PATHS:
            try:
                stream, _ = container.get_archive(path)
            except docker.errors.NotFound:
                continue
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                member = tar.next()
                extracted = tar.extractfile(member) if member else None
                text = extracted.read().decode("utf-8") if extracted else ""
            log.info("read %s from %s", path, image)
            return parse_manifest(text), text
    finally:
        container.remove(force=True)
    raise DockerError(
        f"{image} has no model manifest at {' or '.join(MANIFEST_PATHS)}.",
        hint="Is it a NIM LLM image? Model-free NIM images have no manifest until given a model.",
    )


# -- download ---------------------------------------------------------------------------------


@dataclass
class DownloadSummary:
    """What a download left in the cache: the record later steps and the run report read."""

    image: str
    profiles: list[str]
    cache_dir: str
    files: int
    bytes: int
    seconds: float
    log_tail: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _writable_by_nim(path: Path) -> bool:
    info = path.stat()
    if info.st_uid == NIM_UID:
        return bool(info.st_mode & 0o200)
    if info.st_gid == NIM_UID:
        return bool(info.st_mode & 0o020)
    return bool(info.st_mode & 0o002)


def prepare_cache_dir(cache_dir: Path) -> None:
    """Make sure the container's UID 1000 can write the cache; fix it when we may, else say how."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    if _writable_by_nim(cache_dir):
        return
    if os.geteuid() == 0:
        os.chown(cache_dir, NIM_UID, NIM_UID)
        log.info("gave %s to UID %d (the NIM container's user)", cache_dir, NIM_UID)
    elif cache_dir.stat().st_uid == os.geteuid():
        cache_dir.chmod(0o777)
        log.info("made %s writable for the NIM container's UID %d", cache_dir, NIM_UID)
    else:
        raise CacheNotWritableError(
            f"The NIM cache directory {cache_dir} cannot be written by the container's user (UID {NIM_UID}), "
            "and it is not ours to change.",
            hint=f"Run `sudo chown -R {NIM_UID}:{NIM_UID} {cache_dir}` (or choose a directory you own), then run "
            "this step again.",
        )


def cache_usage(cache_dir: str | Path) -> tuple[int, int]:
    """(files, bytes) of downloaded content in a NIM cache (see :meth:`NimCache.usage`)."""
    return NimCache(cache_dir).usage()


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _classify_failure(code: int, text: str, image: str, profile_ids: Sequence[str]) -> Exception:
    tail = _tail(text)
    if "Unknown profiles provided" in text or "doesn't exist" in text:
        return UnknownProfileError(
            f"{image} does not offer some of the profile ids {', '.join(profile_ids)}:\n{tail}",
            hint="Take ids from this image's own listing (nimrunbook profiles plan --format ids); ids differ "
            "between images and tags.",
        )
    if "NGC_API_KEY" in text or "401" in text or "Unauthorized" in text:
        return RegistryAuthError(
            f"download-to-cache could not authenticate to NGC:\n{tail}",
            hint="Set NGC_API_KEY to an NGC API key (starts with nvapi-) that can access this NIM, then run again.",
        )
    if "No space left" in text:
        return DiskSpaceError(
            f"The disk holding the NIM cache filled up during the download:\n{tail}",
            hint="Free space or move the cache to a larger disk, then run again: complete files are kept.",
        )
    return ContainerFailedError(
        f"download-to-cache exited with code {code} in {image}. Its last lines:\n{tail}",
        hint="Fix what the lines above say and run this step again; files already in the cache are kept.",
    )


def download_profiles(
    client: docker.DockerClient,
    image: str,
    profile_ids: Sequence[str],
    cache_dir: str | Path,
    *,
    ngc_api_key: str | None = None,
    manifest: Manifest | None = None,
    expected_bytes: int | None = None,
    network_mode: str = "host",
    environment: dict[str, str] | None = None,
    progress: Reporter = SILENT,
) -> DownloadSummary:
    """Run ``download-to-cache --profiles <ids>`` with ``cache_dir`` mounted at /opt/nim/.cache.

    Re-running after an interruption continues: the cache is never emptied,
    and NIM skips files it already has. The key reaches the container only
    through its environment.
    """
    ids = [str(i) for i in profile_ids]
    if not ids:
        raise InputError("No profile ids to download.", hint="Select at least one profile (nimrunbook profiles plan).")
    if manifest is not None:
        known = {p.id for p in manifest.profiles}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UnknownProfileError(
                f"{image} does not offer the profile ids {', '.join(unknown)}.",
                hint="Take ids from this image's own listing (nimrunbook profiles plan --format ids).",
            )
    key = find_ngc_key(ngc_api_key)
    if not key:
        raise RegistryAuthError(
            "NGC_API_KEY is not set, and download-to-cache needs it to fetch profiles from NGC.",
            hint="Export NGC_API_KEY (an NGC API key, starts with nvapi-) or pass it as a parameter; it is never "
            "written to the run record or the report.",
        )
    cache = Path(cache_dir).resolve()
    prepare_cache_dir(cache)
    _, bytes_before = cache_usage(cache)
    if expected_bytes:
        require_free_space(
            cache,
            expected_bytes - bytes_before,
            what="The download",
            hint="Free space there or choose a directory on a larger disk, then run this step again; what is "
            "already complete is kept and not fetched again.",
        )
    started = time.monotonic()
    reporter = progress.task(f"download {len(ids)} profiles", expected_bytes)
    container_env = {**(environment or {}), "NGC_API_KEY": key, "NIM_CACHE_PATH": CONTAINER_CACHE}

    def poll() -> None:
        reporter.set(cache_usage(cache)[1])

    try:
        code, text = _run_tool(
            client,
            image,
            ["download-to-cache", "--profiles", *ids],
            environment=container_env,
            volumes={str(cache): {"bind": CONTAINER_CACHE, "mode": "rw"}},
            network_mode=network_mode,
            on_line=lambda line: log.info("[download-to-cache] %s", line),
            poll=poll,
        )
    finally:
        poll()
        reporter.close()
    if code != 0:
        raise _classify_failure(code, text, image, ids)
    files, size = cache_usage(cache)
    return DownloadSummary(
        image=image,
        profiles=ids,
        cache_dir=str(cache),
        files=files,
        bytes=size,
        seconds=round(time.monotonic() - started, 3),
        log_tail=text.strip().splitlines()[-5:],
    )
