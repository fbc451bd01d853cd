"""Drive a NIM container through Docker with the container's own tools.

`list-model-profiles` and `download-to-cache` know the image's profiles and
NGC's protocol better than any guess of ours, so we run them, in throwaway
containers that need no GPU, and read the manifest straight from the image
without starting the model.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
import docker.errors
import pandas as pd

from nimrunbook.containers import run_tool
from nimrunbook.download_estimate import estimate_download
from nimrunbook.errors import (
    CacheNotWritableError,
    ContainerFailedError,
    DiskSpaceError,
    InputError,
    NoManifestError,
    RegistryAuthError,
    UnknownProfileError,
)
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.access import ngc_api_key as find_ngc_key
from nimrunbook.images.docker_backend import DockerBackend, docker_failure
from nimrunbook.images.refs import ImageRef
from nimrunbook.leftovers import container_labels, shielded
from nimrunbook.localdisk import NimCache, free_bytes, require_free_space
from nimrunbook.locks import folder_lock
from nimrunbook.profiles import Manifest, parse_listing, parse_manifest
from nimrunbook.progress import SILENT, Reporter, human_bytes

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
    refresh: bool = False,
) -> str:
    """Pull ``ref`` unless the engine has it (``refresh``: ask the registry all the same); returns its image id.

    ``ref`` follows the one rule of :mod:`nimrunbook.images.refs` (registry,
    path, tag: never an implicit ``latest``). Credentials come from ``access``
    (default: nvcr.io with user ``$oauthtoken`` and the environment's NGC key);
    other registries use the Docker config's. ``refresh`` is for proving that a
    registry serves the image (the smoke test): only the registry's answer does.
    """
    image = ImageRef.parse(ref)
    if not refresh and _image_present(client, ref):
        log.info("%s is already present; not pulling", ref)
        return client.images.get(ref).id
    with progress.task(f"pull {ref}") as task:
        DockerBackend(client, access or RegistryAccess.from_environment()).pull(image, task)
    return client.images.get(ref).id


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
    run = run_tool(
        client, image, ["list-model-profiles"], environment=environment, network_mode=network_mode, gpus=gpus
    )
    code, text = run.exit_code, run.output
    if code != 0:
        raise ContainerFailedError(
            f"list-model-profiles exited with code {code} in {image}. Its last lines:\n{_tail(text)}",
            hint="Check that the image is a NIM LLM image; run it by hand with `docker run --rm IMAGE list-model-profiles`.",
        )
    return parse_listing(text), text


def read_manifest(client: docker.DockerClient, image: str) -> tuple[Manifest, str]:
    """Copy ``model_manifest.yaml`` out of the image without starting it; returns (parsed, raw text)."""
    try:
        container = client.containers.create(
            image, command=["true"], network_mode="none", labels=container_labels("read-manifest")
        )
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
        with shielded():
            container.remove(force=True)
    raise NoManifestError(
        f"{image} has no model manifest at {' or '.join(MANIFEST_PATHS)}.",
        hint="Is it a NIM LLM image? Model-free NIM images have no manifest until given a model.",
    )


# -- download ---------------------------------------------------------------------------------


@dataclass
class DownloadSummary:
    """What a download left in the cache: the record later steps and the run report read.

    ``space_check`` says how the free space was checked before the download
    (against an estimate of what it adds, an explicit size, or why not at all).
    """

    image: str
    profiles: list[str]
    cache_dir: str
    files: int
    bytes: int
    seconds: float
    log_tail: list[str] = field(default_factory=list)
    space_check: str = ""

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


# NIM's own log line shapes: Rust "<time>  ERROR <module>: <message>", Python "ERROR <date> <time> <file>] <message>",
# and a Python exception's last line "<Name>Error: <message>".
_ERROR_LINE_RE = re.compile(
    r"^(?:\S+\s+(?:ERROR|CRITICAL)\s+\S+:\s|(?:ERROR|CRITICAL)\s+\S+\s+\S+\s+\S+\]\s|\w*(?:Error|Exception):\s)"
)
_UNKNOWN_PROFILE = ("Unknown profiles provided", "doesn't exist")  # NIM 2.x refuses; 1.x skips with this line
# An HTTP refusal as a status token (never a digit run inside an id or a hash), or NGC's own words for it.
_REFUSED_RE = re.compile(
    r"(?<![\w.:/-])(?:401|403)(?![\w.:/-])|\bunauthori[sz]ed\b|\bforbidden\b|NGC_API_KEY is not set", re.I
)
_NO_SPACE = ("No space left on device", "[Errno 28]")
NEARLY_FULL = 16 * 1024 * 1024  # bytes free under which a failed download counts as a full disk


def error_lines(text: str) -> list[str]:
    """The lines of a NIM tool's output that report errors, by NIM's log line shapes."""
    return [line for line in text.splitlines() if _ERROR_LINE_RE.match(line.strip())]


def _classify_failure(code: int, text: str, image: str, profile_ids: Sequence[str], cache: Path) -> Exception:
    """Why download-to-cache failed: read from its error lines and from the cache's disk, not from any text."""
    tail = _tail(text)
    errors = "\n".join(error_lines(text))
    if any(words in text for words in _UNKNOWN_PROFILE):
        return UnknownProfileError(
            f"{image} does not offer some of the profile ids {', '.join(profile_ids)}:\n{tail}",
            hint="Take ids from this image's own listing (nimrunbook profiles plan --format ids); ids differ "
            "between images and tags.",
        )
    if free_bytes(cache) < NEARLY_FULL or any(words in errors for words in _NO_SPACE):
        return DiskSpaceError(
            f"The disk holding the NIM cache {cache} filled up during the download:\n{tail}",
            hint="Free space or move the cache to a larger disk, then run again: complete files are kept.",
        )
    if _REFUSED_RE.search(errors):
        return RegistryAuthError(
            f"download-to-cache could not authenticate to NGC:\n{tail}",
            hint="Set NGC_API_KEY to an NGC API key (starts with nvapi-) that can access this NIM, then run again.",
        )
    return ContainerFailedError(
        f"download-to-cache exited with code {code} in {image}. Its last lines:\n{tail}",
        hint="Fix what the lines above say and run this step again; files already in the cache are kept.",
    )


def _manifest_for_download(client: docker.DockerClient, image: str, manifest: Manifest | None) -> Manifest | None:
    """The given manifest, else the image's own; None (logged) for an image that has none (model-free NIM)."""
    if manifest is not None:
        return manifest
    try:
        return read_manifest(client, image)[0]
    except NoManifestError as error:
        log.warning("%s; the profile ids and the download's size cannot be checked beforehand", error.message)
        return None


def _check_space(
    cache: Path, bytes_before: int, expected_bytes: int | None, manifest: Manifest | None, ids: list[str]
) -> tuple[int | None, str]:
    """Refuse a download the cache's disk cannot hold; returns (bytes expected to be added, how that was found)."""
    if expected_bytes:
        needed, how = max(expected_bytes - bytes_before, 0), f"against the given size ({human_bytes(expected_bytes)})"
    elif manifest is None:
        return None, "not checked: the image has no model manifest to estimate from"
    else:
        estimate = estimate_download(manifest, ids, NimCache(cache))
        if estimate.bytes is None:
            log.warning("the download's size is %s; free space is not checked", estimate.describe())
            return None, f"not checked: the size is {estimate.describe()}"
        needed, how = estimate.bytes, f"against an estimate of {human_bytes(estimate.bytes)} ({estimate.describe()})"
    require_free_space(
        cache,
        needed,
        what=f"The download (checked {how})",
        hint="Free space there or choose a directory on a larger disk, then run this step again; what is already "
        "complete is kept and not fetched again. If the estimate is wrong, give the profiles' total size: "
        "download_size_gb in step 03, --size-gb with `nimrunbook nim download`.",
    )
    log.info("free space for the download checked %s", how)
    return needed, how


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

    Before it starts: the ids are checked against the manifest (``manifest``,
    else the image's own), and the free space against what the download will
    add: ``expected_bytes`` (the profiles' total size) when given, else an
    estimate from the manifest and what the cache already holds (see
    :mod:`nimrunbook.download_estimate`). Re-running after an interruption
    continues: the cache is never emptied, and NIM skips files it already has.
    The key reaches the container only through its environment.
    """
    ids = [str(i) for i in profile_ids]
    if not ids:
        raise InputError("No profile ids to download.", hint="Select at least one profile (nimrunbook profiles plan).")
    key = find_ngc_key(ngc_api_key)
    if not key:
        raise RegistryAuthError(
            "NGC_API_KEY is not set, and download-to-cache needs it to fetch profiles from NGC.",
            hint="Export NGC_API_KEY (an NGC API key, starts with nvapi-), or name another variable that holds it "
            "(ngc_api_key_env); it is never written to the run record or the report.",
        )
    manifest = _manifest_for_download(client, image, manifest)
    if manifest is not None:
        unknown = [i for i in ids if manifest.profile(i) is None]
        if unknown:
            raise UnknownProfileError(
                f"{image} does not offer the profile ids {', '.join(unknown)}.",
                hint="Take ids from this image's own listing (nimrunbook profiles plan --format ids).",
            )
    cache = Path(cache_dir).resolve()
    prepare_cache_dir(cache)
    with folder_lock(cache, "downloading profiles into"):  # two download-to-cache runs would fetch the same files
        return _download(client, image, ids, cache, key, manifest, expected_bytes, network_mode, environment, progress)


def _download(
    client: docker.DockerClient,
    image: str,
    ids: list[str],
    cache: Path,
    key: str,
    manifest: Manifest | None,
    expected_bytes: int | None,
    network_mode: str,
    environment: dict[str, str] | None,
    progress: Reporter,
) -> DownloadSummary:
    _, bytes_before = cache_usage(cache)
    needed, space_check = _check_space(cache, bytes_before, expected_bytes, manifest, ids)
    started = time.monotonic()
    container_env = {**(environment or {}), "NGC_API_KEY": key, "NIM_CACHE_PATH": CONTAINER_CACHE}
    total = bytes_before + needed if needed is not None else None
    with progress.task(f"download {len(ids)} profiles", total) as task:

        def poll() -> None:
            task.set(cache_usage(cache)[1])

        try:
            run = run_tool(
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
    if run.exit_code != 0:
        raise _classify_failure(run.exit_code, run.output, image, ids, cache)
    files, size = cache_usage(cache)
    return DownloadSummary(
        image=image,
        profiles=ids,
        cache_dir=str(cache),
        files=files,
        bytes=size,
        seconds=round(time.monotonic() - started, 3),
        log_tail=run.output.strip().splitlines()[-5:],
        space_check=space_check,
    )
