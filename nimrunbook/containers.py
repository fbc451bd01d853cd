"""Run a tool in a throwaway container through the Docker engine, and survive the engine going away.

A ``download-to-cache`` runs for hours. We wait for it in one-second slices
(to report progress between them); a slice that times out means "still
running", and only that. Any other failure of the wait means the engine
stopped answering (it was restarted, its socket went away): the run ends
with an error that says so and names the container, never a loop that waits
forever. Output lines are redacted as they arrive. A run given a ``timeout``
is killed once when it passes, and says so (:attr:`ToolRun.timed_out`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import docker
import docker.errors
import docker.types
import requests
import urllib3.exceptions
from docker.models.containers import Container

from nimrunbook.errors import DockerError
from nimrunbook.images.docker_backend import docker_failure
from nimrunbook.leftovers import (  # noqa: F401 - TOOL_LABEL: where callers look for it
    TOOL_LABEL,
    container_labels,
    raise_if_stopping,
    remove_stale_containers,
    shielded,
)
from nimrunbook.redact import redact

log = logging.getLogger(__name__)


@dataclass
class ToolRun:
    exit_code: int
    output: str
    timed_out: bool = False  # killed when its timeout passed


def _still_running(exc: BaseException) -> bool:
    """A wait slice that timed out: over TCP ``ReadTimeout``; over a unix socket docker-py's transport
    raises ``ConnectionError`` wrapping urllib3's ``ReadTimeoutError``."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return True
    return isinstance(exc, requests.exceptions.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args
    )


def _engine_gone(container_id: str, command: str) -> DockerError:
    return DockerError(
        f"The Docker engine stopped answering while `{command}` ran in container {container_id[:12]}.",
        hint=f"Start the engine again and run this step again: it resumes. Remove the container if it is left over "
        f"(`docker rm -f {container_id[:12]}`).",
    )


def run_tool(
    client: docker.DockerClient,
    image: str,
    command: list[str],
    *,
    environment: dict[str, str] | None = None,
    volumes: dict | None = None,
    network_mode: str = "host",
    extra_hosts: Mapping[str, str] | None = None,
    gpus: bool = False,
    labels: Mapping[str, str] | None = None,
    before_start: Callable[[Container], None] | None = None,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
    poll: Callable[[], None] | None = None,
    wait_slice: float = 1,
) -> ToolRun:
    """Run ``command`` in a throwaway container of ``image``; returns its exit code and (redacted) output.

    ``poll`` is called between wait slices (every ``wait_slice`` seconds), e.g. to report progress.
    ``before_start`` sees the created container before it starts (e.g. to read back the environment Docker
    will give it) and may refuse it by raising. ``timeout`` (seconds) kills the run once it has passed. The
    container is always removed (on a signal too, see :mod:`nimrunbook.leftovers`), and containers that killed
    runs left are removed first; if the engine dies meanwhile, :class:`DockerError` names it.
    """
    raise_if_stopping()
    remove_stale_containers(client)
    device_requests = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else None
    try:
        container = client.containers.create(
            image,
            command,
            environment=environment or {},
            volumes=volumes or {},
            network_mode=network_mode,
            extra_hosts=dict(extra_hosts) if extra_hosts else None,
            device_requests=device_requests,
            labels={**(labels or {}), **container_labels(command[0])},
        )
    except docker.errors.APIError as exc:
        raise docker_failure(exc, image) from exc
    output: list[str] = []
    deadline = time.monotonic() + timeout if timeout is not None else None
    timed_out = False
    try:
        if before_start:
            before_start(container)
        try:
            container.start()
        except docker.errors.APIError as exc:
            raise docker_failure(exc, image) from exc
        reader = threading.Thread(target=_follow, args=(container, output, on_line), daemon=True)
        reader.start()
        while True:
            try:
                status = container.wait(timeout=wait_slice)
                break
            except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
                if not _still_running(exc):
                    raise _engine_gone(container.id, command[0]) from exc
                if poll:
                    poll()
                if deadline is not None and not timed_out and time.monotonic() > deadline:
                    timed_out = True
                    log.warning("`%s` did not finish within %.0f s; stopping it", command[0], timeout)
                    with contextlib.suppress(docker.errors.APIError):
                        container.kill()
        reader.join(timeout=10)
        return ToolRun(int(status.get("StatusCode", 1)), "\n".join(output), timed_out)
    finally:
        with shielded(), contextlib.suppress(docker.errors.APIError, requests.exceptions.RequestException):
            container.remove(force=True)


def _follow(container, output: list[str], on_line: Callable[[str], None] | None) -> None:
    """Collect the container's output line by line (redacted); ends quietly when the stream does."""
    pending = b""
    try:
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = redact(raw.decode("utf-8", "replace"))
                output.append(line)
                if on_line:
                    on_line(line)
    except (requests.exceptions.RequestException, docker.errors.DockerException, urllib3.exceptions.HTTPError):
        log.debug("the log stream of %s ended early", container.id[:12])
    if pending:
        output.append(redact(pending.decode("utf-8", "replace")))
