"""The two ways images travel (skopeo, the Docker engine) behind one interface and one factory.

Callers (mirror, export, import, the bundle, preflight) open a backend with
:func:`open_backend` and use only :class:`ImageBackend`: they never ask which
one they hold. skopeo is preferred: daemonless, it keeps manifest digests
through an export and resumes dropped layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

from nimrunbook.errors import InputError
from nimrunbook.images import skopeo
from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.docker_backend import DockerBackend
from nimrunbook.images.exports import ImageCopy
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.skopeo import SkopeoBackend
from nimrunbook.images.views import ExportSource
from nimrunbook.progress import Task

BackendName = Literal["auto", "skopeo", "docker"]
BACKEND_NAMES = ("auto", "skopeo", "docker")


class ImageBackend(Protocol):
    """What every backend does; ``name`` goes into the run record and the export's index."""

    name: str

    def digest(self, ref: ImageRef) -> str | None:
        """The manifest digest ``ref`` has in its registry; None when the registry has no such tag."""
        ...

    def copy(self, source: ImageRef, destination: ImageRef) -> None:
        """Registry to registry, same manifest."""
        ...

    def export(self, images: Sequence[ImageRef], directory: Path, task: Task) -> list[ImageCopy]:
        """Write every image into the export ``directory`` (see :mod:`nimrunbook.images.exports`), resumably."""
        ...

    def import_(
        self,
        source: ExportSource,
        entries: Sequence[dict],
        targets: Sequence[ImageRef],
        staging: Path,
        workers: int,
        task: Task,
    ) -> list[ImageCopy]:
        """Push each exported image (an entry: ``source`` ref, ``digest``, ``image_id``) to its target, reading
        only what ``source`` proves, checked against the entry; anything written goes to ``staging``."""
        ...


def open_backend(
    name: str = "auto",
    access: RegistryAccess | None = None,
    *,
    docker_client=None,
    docker_host: str | None = None,
) -> ImageBackend:
    """The backend called ``name`` ("auto": skopeo when installed, else the Docker engine).

    Raises :class:`InputError` for skopeo when it is not installed and an
    unknown name, and :class:`DockerError` when the Docker engine does not answer.
    """
    access = access or RegistryAccess()
    if name not in BACKEND_NAMES:
        raise InputError(f"{name!r} is not an image backend.", hint=f"Use one of {', '.join(BACKEND_NAMES)}.")
    if name == "skopeo" or (name == "auto" and skopeo.available()):
        if not skopeo.available():
            raise InputError("skopeo is not installed.", hint="apt-get install skopeo, or use backend='docker'.")
        return SkopeoBackend(access)
    if docker_client is None:
        from nimrunbook.engine import docker_client as connect

        docker_client = connect(docker_host or None)
    return DockerBackend(docker_client, access)
