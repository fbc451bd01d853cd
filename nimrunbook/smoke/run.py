"""The smoke test: the NIM itself, from the inside, reads what was published.

With nothing but what DataRobot will have: the image pulled from the internal
registry (proving the mirror), its own ``download-to-cache`` reading
``s3://<bucket>/`` with the read-only key, endpoint, region and CA, no NGC
key, on a network that reaches only the object store, into a scratch cache
that is removed afterwards (also on failure, Ctrl-C or SIGTERM). Then every
file it fetched is compared with the sha256 recorded when it was published.

The first run asks for all selected profiles, as DataRobot's NIMCache does.
When it fails on one object, the profiles it did not reach are run one by
one, so the result names every broken profile, not just the first.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import docker
import docker.errors

from nimrunbook.errors import DockerError, ImageNotFoundError, InputError, RegistryAuthError, UnknownProfileError
from nimrunbook.images import ImageRef, RegistryAccess
from nimrunbook.images.access import NGC_REGISTRY
from nimrunbook.images.failures import Failure
from nimrunbook.images.failures import classify as registry_failure_kind
from nimrunbook.localdisk import require_free_space
from nimrunbook.nim import cache_usage, prepare_cache_dir, pull_image, read_manifest
from nimrunbook.progress import SILENT, Reporter
from nimrunbook.smoke import cache as scratch_cache
from nimrunbook.smoke.container import CONTAINER_CACHE, container_inputs, run_download
from nimrunbook.smoke.expected import ExpectedObject, Published
from nimrunbook.smoke.network import LABEL, NETWORKS, open_network
from nimrunbook.smoke.result import SHARED_CAUSES, Cause, DownloadRun, FileCheck, ProfileCheck, SmokeResult, classify
from nimrunbook.store import S3Settings

log = logging.getLogger(__name__)


def _published(expected: Published | Iterable[ExpectedObject] | Mapping[str, ExpectedObject]) -> Published:
    if isinstance(expected, Published):
        return expected
    if isinstance(expected, Mapping):
        return Published.of(expected.values())
    return Published.of(expected)


def _pull(
    client: docker.DockerClient, ref: ImageRef, access: RegistryAccess, progress: Reporter
) -> tuple[str | None, tuple | None]:
    """(digest, None) when the internal registry served the image; (None, (cause, detail)) when not.

    Always asks the registry, even when the engine has the image: only the registry's answer proves the mirror.
    """
    try:
        pull_image(client, str(ref), access=access, progress=progress, refresh=True)
    except ImageNotFoundError as exc:
        return None, (Cause.IMAGE_NOT_IN_REGISTRY, exc.message)
    except RegistryAuthError as exc:
        return None, (Cause.REGISTRY_DENIED, exc.message)
    except DockerError as exc:
        tls = (
            registry_failure_kind(exc.message) is Failure.TLS
        )  # the registry client's own words are part of the message
        return None, (Cause.REGISTRY_TLS_NOT_TRUSTED if tls else Cause.PULL_FAILED, exc.message)
    digests = client.images.get(str(ref)).attrs.get("RepoDigests") or []
    digest = next((d.partition("@")[2] for d in digests if d.partition("@")[0] == ref.repository), None)
    return digest, None


def _scratch_directory(parent: str | Path | None, needed: int) -> Path:
    """A new, empty directory for the NIM to fill, never inside a real NIM cache."""
    base = Path(parent or tempfile.gettempdir()).resolve()
    base.mkdir(parents=True, exist_ok=True)
    for folder in (base, *base.parents):
        if (folder / "ngc" / "hub").is_dir():
            raise InputError(
                f"The smoke test's scratch directory {base} is inside a NIM cache ({folder}).",
                hint="Choose a scratch directory outside every NIM cache: the smoke test must never touch the real "
                "cache.",
            )
    require_free_space(
        base,
        needed,
        what="The smoke test's scratch cache",
        hint="Free space there or choose another scratch directory (scratch_dir, CLI --scratch-dir) on a larger disk.",
    )
    scratch = Path(tempfile.mkdtemp(prefix="nimrunbook-smoke-", dir=base))
    prepare_cache_dir(scratch)
    return scratch


def _remove_scratch(client: docker.DockerClient, image: str, scratch: Path) -> bool:
    """Remove the scratch cache; what the container's UID 1000 wrote is removed by a container when we may not."""
    try:
        shutil.rmtree(scratch)
        return True
    except PermissionError:
        pass
    except FileNotFoundError:
        return True
    with contextlib.suppress(docker.errors.DockerException):  # then say so below
        client.containers.run(
            image,
            entrypoint=["/bin/sh", "-c", "rm -rf /scratch/* /scratch/.[!.]* /scratch/..?*"],
            user="0",
            volumes={str(scratch): {"bind": "/scratch", "mode": "rw"}},
            network_mode="none",
            remove=True,
        )
    shutil.rmtree(scratch, ignore_errors=True)
    if scratch.exists():
        log.warning("could not remove the smoke test's scratch cache %s; remove it by hand", scratch)
        return False
    return True


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the container, network and scratch cache go (unless a handler is set)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def interrupt(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _blamed(run: DownloadRun, files: list[scratch_cache.WantedFile]) -> dict[str, str]:
    """Profiles whose object (by key or manifest URI) the failed run's output names, each with that object."""
    named: dict[str, str] = {}
    for wanted in files:
        if wanted.profile_id in named:
            continue
        if wanted.key in run.output or wanted.uri in run.output:
            named[wanted.profile_id] = f"{wanted.path} (s3 key {wanted.key})"
    return named


def _cause(run: DownloadRun) -> tuple[Cause, str]:
    return (Cause.TIMED_OUT, run.last_lines[-1]) if run.timed_out else classify(run.output)


def _download_all(
    download: Callable[[list[str]], DownloadRun], ids: list[str], files: list[scratch_cache.WantedFile], scratch: Path
) -> dict[str, tuple[Cause, str]]:
    """download-to-cache for every profile at once, as DataRobot asks; the failures, per profile.

    A failure that names one object blames the profiles that need it; the profiles the run did not reach are
    run one by one, unless the cause is one that stops every profile alike.
    """
    by_profile = {pid: [f for f in files if f.profile_id == pid] for pid in ids}
    outcome: dict[str, tuple[Cause, str]] = {}
    first = download(ids)
    if first.exit_code == 0:
        return outcome
    cause, line = _cause(first)
    for pid, named in _blamed(first, files).items():
        outcome[pid] = (cause, f"{named}: {line}")
    pending = [pid for pid in ids if pid not in outcome and not scratch_cache.fetched(scratch, by_profile[pid])]
    for pid in pending:
        if cause in SHARED_CAUSES or pending == ids == [pid]:  # a re-run would only repeat it
            outcome[pid] = (cause, line)
            continue
        alone = download([pid])
        if alone.exit_code != 0:
            own_cause, own_line = _cause(alone)
            named = _blamed(alone, by_profile[pid]).get(pid)
            outcome[pid] = (own_cause, f"{named}: {own_line}" if named else own_line)
    return outcome


def _checked(image: str, profile_ids: Sequence[str], network: str, settings: S3Settings) -> tuple[ImageRef, list[str]]:
    ref = ImageRef.parse(image)
    if ref.registry == NGC_REGISTRY:
        raise InputError(
            f"{ref} is on NGC; the smoke test pulls the image from the internal registry, as DataRobot will.",
            hint="Give the image's ref in the internal registry (same path and tag), e.g. "
            f"registry.internal:5000/{ref.path}:{ref.tag}.",
        )
    ids = list(dict.fromkeys(str(i) for i in profile_ids))
    if not ids:
        raise InputError("No profile ids to smoke-test.", hint="Give the selected profile ids (or a publish record).")
    if network not in NETWORKS:
        raise InputError(f"network={network!r} is not one of {', '.join(NETWORKS)}.")
    if settings.insecure:
        raise InputError(
            "The smoke test checks TLS as the NIM does, so it cannot run with TLS verification off.",
            hint="Give the CA bundle that signed the endpoint's certificate (s3_ca_bundle / --ca-bundle).",
        )
    return ref, ids


def _wanted(client: docker.DockerClient, ref: ImageRef, ids: list[str]) -> list[scratch_cache.WantedFile]:
    """The files the profiles need, from the pulled image's own manifest."""
    manifest, _ = read_manifest(client, str(ref))
    unknown = [pid for pid in ids if manifest.profile(pid) is None]
    if unknown:
        raise UnknownProfileError(
            f"{ref} does not offer the profile ids {', '.join(unknown)}.",
            hint="Give ids of this image's manifest: the ones selected and published for it.",
        )
    return scratch_cache.wanted_files(manifest, ids)


def smoke_test(
    client: docker.DockerClient,
    image: str,
    profile_ids: Sequence[str],
    expected: Published | Iterable[ExpectedObject] | Mapping[str, ExpectedObject],
    settings: S3Settings,
    *,
    access: RegistryAccess | None = None,
    scratch_dir: str | Path | None = None,
    network: str = "isolated",
    environment: Mapping[str, str] | None = None,
    timeout: float | None = None,
    progress: Reporter = SILENT,
) -> SmokeResult:
    """Run the smoke test of ``image`` (its ref in the internal registry) against ``settings`` (read-only key).

    ``expected``: the objects as published (:func:`~nimrunbook.smoke.load_published`). ``network``:
    ``"isolated"`` (only the object store) or ``"host"``. ``environment``: extra variables for the NIM (never
    an NGC key). A failed profile is a result, not an exception (see :meth:`SmokeResult.raise_for_failure`);
    bad inputs and an unreachable engine raise.
    """
    started = time.monotonic()
    ref, ids = _checked(image, profile_ids, network, settings)
    published = _published(expected)
    names = published.profile_names
    result = SmokeResult(str(ref), None, settings.bucket, settings.endpoint_url, settings.region, network, "", [], [])
    result.digest, failure = _pull(client, ref, access or RegistryAccess(), progress)
    if failure:
        cause, detail = failure
        result.profiles = [ProfileCheck(pid, names.get(pid), False, False, False, 0, 0, cause, detail) for pid in ids]
        result.seconds = round(time.monotonic() - started, 3)
        return result
    files = _wanted(client, ref, ids)
    needed = sum(published.objects[k].size for k in {f.key for f in files} if k in published.objects)
    run_id = uuid.uuid4().hex[:12]
    with _sigterm_interrupts():
        scratch = _scratch_directory(scratch_dir, needed)
        try:
            with (
                tempfile.TemporaryDirectory(prefix="nimrunbook-smoke-inputs-") as private,
                open_network(client, settings, network, run_id) as net,
            ):
                inputs = container_inputs(settings, net, Path(private), environment)
                inputs.volumes[str(scratch)] = {"bind": CONTAINER_CACHE, "mode": "rw"}
                result.credentials, result.network = inputs.credentials, net.description

                def download(batch: list[str]) -> DownloadRun:
                    run, result.environment = run_download(
                        client,
                        str(ref),
                        batch,
                        inputs,
                        net,
                        labels={LABEL: run_id},
                        poll=lambda: reporter.set(cache_usage(scratch)[1]),
                        on_line=lambda line: log.info("[download-to-cache] %s", line),
                        timeout=timeout,
                    )
                    result.runs.append(run)
                    return run

                with progress.task(f"smoke test: download {len(ids)} profiles", needed or None) as reporter:
                    outcome = _download_all(download, ids, files, scratch)
                    reporter.set(cache_usage(scratch)[1])
            with progress.task("smoke test: compare with the publish record", needed or None) as hashing:
                result.files = scratch_cache.compare(scratch, files, published, hashing)
        finally:
            result.scratch_removed = _remove_scratch(client, str(ref), scratch)
    result.profiles = [_verdict(pid, names.get(pid), outcome.get(pid), result.files) for pid in ids]
    result.seconds = round(time.monotonic() - started, 3)
    log.info("%s", result.summary())
    return result


def _verdict(
    profile_id: str, name: str | None, failure: tuple[Cause, str] | None, checks: list[FileCheck]
) -> ProfileCheck:
    own = [c for c in checks if c.profile_id == profile_id]
    fetched = bool(own) and all(c.status != "not fetched" for c in own)
    identical = bool(own) and all(c.status == "identical" for c in own)
    check = ProfileCheck(
        profile_id,
        name,
        pulled=True,
        fetched=fetched,
        identical=identical,
        files=sum(c.status != "not fetched" for c in own),
        bytes=sum(c.size or 0 for c in own if c.status != "not fetched"),
    )
    differ = [c for c in own if c.status == "bytes differ"]
    unrecorded = [c for c in own if c.status == "not recorded"]
    missing = [c for c in own if c.status == "not fetched"]
    if failure:
        check.cause, check.detail = failure
    elif differ:
        check.cause = Cause.BYTES_DIFFER
        check.detail = "; ".join(
            f"{c.path} (s3 key {c.key}): sha256 {c.sha256}, recorded {c.expected_sha256}" for c in differ
        )
    elif unrecorded:
        check.cause = Cause.NOT_RECORDED
        check.detail = ", ".join(c.path for c in unrecorded)
    elif missing:
        check.cause = Cause.DOWNLOAD_FAILED
        check.detail = "not in the cache after download-to-cache: " + ", ".join(c.path for c in missing)
    elif not own:
        check.cause, check.detail = Cause.NOT_RECORDED, "the manifest lists no file with a source URI"
    if check.cause:
        check.cause = str(check.cause)
    return check
