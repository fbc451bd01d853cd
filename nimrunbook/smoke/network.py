"""The smoke test container's network: only the object store, as inside the air gap.

``isolated`` (the default): an internal Docker network, on which the
bucket's virtual-hosted name (and the endpoint's) resolve to the network's
gateway, where :class:`EndpointRelay` passes the connection to the endpoint;
no other name is given to the container. The host's loopback services are out
of reach, and an engine with its iptables rules (the default) drops
everything else leaving the network. An engine run with ``--iptables=false``
(like the test sandbox's) adds no such rules: there the container still has no
name but the endpoint's and no NAT to the outside, but packets to an address
can leave through this host if it forwards them. ``host``: the container
shares this host's network, for engines that cannot create networks (or a
host firewall that drops traffic from them); on a host inside the air gap
that is still only what the inside has.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse, urlunparse

import docker
import docker.errors

from nimrunbook.errors import DockerError
from nimrunbook.smoke.relay import EndpointRelay
from nimrunbook.store import S3Settings

log = logging.getLogger(__name__)

NETWORKS = ("isolated", "host")
LABEL = "org.nimrunbook.smoke"


@dataclass
class Network:
    mode: str  # the container's network_mode
    endpoint_url: str | None  # the endpoint as the container must name it (the relay's port may differ)
    description: str
    extra_hosts: dict[str, str] = field(default_factory=dict)


def endpoint_host(settings: S3Settings) -> str:
    return settings.endpoint_host or f"s3.{settings.region}.amazonaws.com"


def bucket_host(settings: S3Settings) -> str:
    """Where the NIM connects: virtual-hosted, as DataRobot addresses the bucket (never path-style)."""
    return f"{settings.bucket}.{endpoint_host(settings)}"


def _with_port(settings: S3Settings, port: int) -> str | None:
    if port == settings.port:
        return settings.endpoint_url
    parsed = urlparse(settings.endpoint_url or f"https://{endpoint_host(settings)}")
    return urlunparse(parsed._replace(netloc=f"{parsed.hostname}:{port}"))


@contextlib.contextmanager
def host_network(settings: S3Settings) -> Iterator[Network]:
    yield Network("host", settings.endpoint_url, "host (this host's network)")


@contextlib.contextmanager
def isolated_network(client: docker.DockerClient, settings: S3Settings, run_id: str) -> Iterator[Network]:
    """An internal network and a relay to the endpoint; both removed on the way out, whatever happens."""
    name = f"nimrunbook-smoke-{run_id}"
    fallback = "Run the smoke test with network='host' (CLI: --network host) on a host inside the air gap."
    try:
        network = client.networks.create(name, driver="bridge", internal=True, labels={LABEL: run_id})
    except docker.errors.APIError as exc:
        raise DockerError(
            f"The Docker engine cannot create an isolated network for the smoke test: {exc.explanation or exc}.",
            hint=fallback,
        ) from exc
    try:
        network.reload()
        configs = network.attrs.get("IPAM", {}).get("Config") or [{}]
        gateway = (configs[0].get("Gateway") or "").split("/")[0]
        if not gateway:
            raise DockerError(f"The isolated network {name} has no gateway address to reach.", hint=fallback)
        target = bucket_host(settings)
        try:
            relay = EndpointRelay(gateway, settings.port, target, settings.port)
        except OSError as exc:
            raise DockerError(
                f"Cannot listen on the isolated network's gateway {gateway} ({exc.strerror}); is the Docker engine "
                "on another machine?",
                hint=fallback,
            ) from exc
        with relay:
            hosts = {target: gateway, endpoint_host(settings): gateway}
            log.info("isolated network %s: %s reaches only %s:%d", name, ", ".join(hosts), target, settings.port)
            yield Network(
                name,
                _with_port(settings, relay.address[1]),
                f"isolated (only {target}:{settings.port})",
                hosts,
            )
    finally:
        with contextlib.suppress(docker.errors.APIError):
            network.remove()


def open_network(client: docker.DockerClient, settings: S3Settings, mode: str, run_id: str):
    """The context manager for ``mode``: ``isolated`` or ``host``."""
    return isolated_network(client, settings, run_id) if mode == "isolated" else host_network(settings)
