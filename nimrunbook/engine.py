"""The Docker engine: connecting to it, with a clear error when none answers."""

from __future__ import annotations

import os

import docker
import docker.errors

from nimrunbook.errors import DockerError


def docker_client(base_url: str | None = None, timeout: int = 300) -> docker.DockerClient:
    """A client for ``base_url``, else DOCKER_HOST, else the default socket; a clear error if none answers."""
    try:
        client = (
            docker.DockerClient(base_url=base_url, timeout=timeout) if base_url else docker.from_env(timeout=timeout)
        )
        client.ping()
        return client
    except docker.errors.DockerException as exc:
        raise DockerError(
            f"No Docker engine answers at {engine_address(base_url)} ({type(exc).__name__}).",
            hint="Start it (`systemctl start docker`, or as root `dockerd &`), or point DOCKER_HOST at a running "
            "engine (e.g. DOCKER_HOST=unix:///tmp/nimrunbook-engine/docker.sock), then run this step again.",
        ) from exc


def engine_address(base_url: str | None = None) -> str:
    """Where a client without ``base_url`` looks for the engine, for messages."""
    return base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
