"""The Docker backend, for hosts without skopeo: pull, tag and push; save and load.

A pull-tag-push keeps the manifest digest (the engine pushes the compressed
layers it pulled). A save-load-push does not: the engine compresses the
layers anew, so the registry digest changes while the image id (the config
digest) stays. Imports through this backend are therefore checked by image
id, and the run record says so; use skopeo where the manifest digest must
survive the trip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import docker
import docker.errors

from nimrunbook.errors import NimRunbookError, VerificationError
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.exports import ARCHIVE_NAME, ImageCopy, write_index
from nimrunbook.images.failures import Failure, classify, registry_failure
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.views import ExportSource
from nimrunbook.localdisk import Writeback, atomic_writer, require_free_space
from nimrunbook.progress import Task

log = logging.getLogger(__name__)

LAYER_DONE = ("Pushed", "Pull complete", "Layer already exists", "Already exists")


def docker_failure(exc: docker.errors.DockerException, ref: str) -> NimRunbookError:
    """A Docker API error about ``ref``, read by its HTTP status first (see :mod:`nimrunbook.images.failures`)."""
    status = getattr(exc, "status_code", None)
    return registry_failure(ref, str(getattr(exc, "explanation", None) or exc), status=status)


class DockerBackend:
    name = "docker"

    def __init__(self, client: docker.DockerClient, access: RegistryAccess) -> None:
        self.client = client
        self.access = access

    def digest(self, ref: ImageRef) -> str | None:
        try:
            data = self.client.api.inspect_distribution(str(ref), auth_config=self.access.docker_auth(ref.registry))
        except docker.errors.APIError as exc:
            if classify(str(exc.explanation or exc), status=exc.status_code) is Failure.NOT_FOUND:
                return None
            raise docker_failure(exc, str(ref)) from exc
        return data["Descriptor"]["digest"]

    def _follow(self, events: Iterable[dict], ref: str, task: Task | None = None) -> None:
        """Read a pull's or push's event stream: errors raise, finished layers are logged, bytes advance ``task``."""
        layers: dict[str, tuple[int, int]] = {}
        for event in events:
            if "error" in event:
                raise registry_failure(ref, event["error"], status=(event.get("errorDetail") or {}).get("code"))
            detail = event.get("progressDetail") or {}
            if task is not None and event.get("id") and detail.get("total"):
                layers[event["id"]] = (detail.get("current", 0), detail["total"])
                task.set(sum(done for done, _ in layers.values()), sum(total for _, total in layers.values()))
            if event.get("status") in LAYER_DONE:
                log.info("%s layer %s: %s", ref, event.get("id", ""), event["status"])

    def pull(self, ref: ImageRef, task: Task | None = None) -> None:
        """Pull ``ref`` (by digest when it pins one); ``task`` follows the layers' bytes."""
        try:
            events = self.client.api.pull(
                ref.repository,
                ref.digest or ref.tag,
                stream=True,
                decode=True,
                auth_config=self.access.docker_auth(ref.registry),
            )
            self._follow(events, str(ref), task)
        except docker.errors.APIError as exc:
            raise docker_failure(exc, str(ref)) from exc

    def push(self, source: str, destination: ImageRef) -> None:
        try:
            self.client.images.get(source).tag(destination.repository, destination.tag)
            events = self.client.api.push(
                destination.repository,
                destination.tag,
                stream=True,
                decode=True,
                auth_config=self.access.docker_auth(destination.registry),
            )
            self._follow(events, str(destination))
        except docker.errors.APIError as exc:
            raise docker_failure(exc, str(destination)) from exc

    def copy(self, source: ImageRef, destination: ImageRef) -> None:
        self.pull(source)
        self.push(str(source), destination)

    def image_id(self, ref: str) -> str:
        return self.client.images.get(ref).id

    def image_bytes(self, ref: str) -> int:
        return int(self.client.images.get(ref).attrs.get("Size", 0))

    def save(self, refs: list[str], archive: Path) -> None:
        """One ``docker save`` of every ref into ``archive``, written atomically."""
        response = self.client.api._get(self.client.api._url("/images/get"), params={"names": refs}, stream=True)
        self.client.api._raise_for_status(response)
        with atomic_writer(archive) as writer:
            writeback = Writeback(writer)  # the archive goes to the disk as it comes, not all at the fsync
            for chunk in response.iter_content(8 * 1024 * 1024):
                writer.write(chunk)
                writeback.wrote(len(chunk))

    def load(self, archive: Path) -> None:
        with open(archive, "rb") as reader:
            self.client.images.load(reader)

    def export(self, images: Sequence[ImageRef], directory: Path, task: Task) -> list[ImageCopy]:
        """Pull every image, then one ``docker save`` archive of them all."""
        started = time.monotonic()
        for image in images:
            self.pull(image)
        require_free_space(
            directory,
            sum(self.image_bytes(str(i)) for i in images),
            what="The export",
            hint="Free space or export to a larger disk, then run the export again.",
        )
        self.save([str(i) for i in images], directory / ARCHIVE_NAME)
        results = []
        for image in images:
            seconds = round(time.monotonic() - started, 3)
            copy = ImageCopy(
                str(image), ARCHIVE_NAME, self.digest(image), "copied", self.name, seconds, self.image_id(str(image))
            )
            results.append(copy)
            task.advance(1)
        write_index(directory, self.name, [r.as_dict() for r in results])
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
        """Load the archive, check each image id against the entry's, push one by one (one engine)."""
        del staging, workers  # the engine reads the archive itself, and pushes one image at a time
        self.load(source.archive())
        results = []
        for entry, target in zip(entries, targets, strict=True):
            started = time.monotonic()
            if not entry.get("image_id") or self._loaded_id(entry["source"]) != entry["image_id"]:
                raise VerificationError(
                    f"The archive's {entry['source']} is not the image that was exported.",
                    hint="Do not import it: the export was altered or mixed up; export it again.",
                )
            self.push(entry["source"], target)
            seconds = round(time.monotonic() - started, 3)
            results.append(
                ImageCopy(
                    entry["source"], str(target), self.digest(target), "copied", self.name, seconds, entry["image_id"]
                )
            )
            task.advance(1)
        return results

    def _loaded_id(self, ref: str) -> str | None:
        """The id of ``ref`` in the engine, None when the engine does not have it (the archive did not hold it)."""
        try:
            return self.image_id(ref)
        except docker.errors.ImageNotFound:
            return None
