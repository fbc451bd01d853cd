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
from pathlib import Path

import docker
import docker.errors

from nimrunbook.engine import registry_failure
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import atomic_writer

log = logging.getLogger(__name__)

ARCHIVE_NAME = "images.docker.tar"


class DockerBackend:
    name = "docker"

    def __init__(self, client: docker.DockerClient, access: RegistryAccess) -> None:
        self.client = client
        self.access = access

    def digest(self, ref: ImageRef) -> str | None:
        try:
            data = self.client.api.inspect_distribution(str(ref), auth_config=self.access.docker_auth(ref.registry))
        except docker.errors.APIError as exc:
            text = str(exc.explanation or exc).lower()
            if "not found" in text or "manifest unknown" in text:
                return None
            raise registry_failure(str(exc.explanation or exc), str(ref)) from None
        return data["Descriptor"]["digest"]

    def _stream(self, events, ref: str) -> None:
        for event in events:
            if "error" in event:
                raise registry_failure(event["error"], ref)
            if event.get("status") in ("Pushed", "Pull complete", "Layer already exists", "Already exists"):
                log.info("%s layer %s: %s", ref, event.get("id", ""), event["status"])

    def pull(self, ref: ImageRef) -> None:
        repository, tag = ref.repository, ref.digest or ref.tag
        try:
            self._stream(
                self.client.api.pull(
                    repository, tag, stream=True, decode=True, auth_config=self.access.docker_auth(ref.registry)
                ),
                str(ref),
            )
        except docker.errors.APIError as exc:
            raise registry_failure(str(exc.explanation or exc), str(ref)) from None

    def push(self, source: str, destination: ImageRef) -> None:
        try:
            self.client.images.get(source).tag(destination.repository, destination.tag)
            self._stream(
                self.client.api.push(
                    destination.repository,
                    destination.tag,
                    stream=True,
                    decode=True,
                    auth_config=self.access.docker_auth(destination.registry),
                ),
                str(destination),
            )
        except docker.errors.APIError as exc:
            raise registry_failure(str(exc.explanation or exc), str(destination)) from None

    def image_id(self, ref: str) -> str:
        return self.client.images.get(ref).id

    def image_bytes(self, ref: str) -> int:
        return int(self.client.images.get(ref).attrs.get("Size", 0))

    def save(self, refs: list[str], archive: Path) -> None:
        """One ``docker save`` of every ref into ``archive``, written under a temporary name first."""
        response = self.client.api._get(self.client.api._url("/images/get"), params={"names": refs}, stream=True)
        self.client.api._raise_for_status(response)
        with atomic_writer(archive) as writer:
            for chunk in response.iter_content(8 * 1024 * 1024):
                writer.write(chunk)

    def load(self, archive: Path) -> None:
        with open(archive, "rb") as reader:
            self.client.images.load(reader)
