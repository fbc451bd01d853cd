"""A Docker engine for the demo: the user's when one answers, else (as root) one of our own.

Ours runs on a socket under /tmp with the vfs storage driver and no bridge or
iptables changes, so it coexists with anything on the host and needs no
kernel features a container or VM may lack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from nimrunbook.errors import DockerError
from nimrunbook.sandbox.ports import launch, stop_process, wait_until

DEFAULT_DIR = Path("/tmp/nimrunbook-engine")


def answers(base_url: str) -> bool:
    try:
        docker.DockerClient(base_url=base_url, timeout=5).ping()
        return True
    except docker.errors.DockerException:
        return False


@dataclass
class Engine:
    docker_host: str
    process: subprocess.Popen | None = None  # set when we started it

    def start(self) -> Engine:  # the group's Service shape; ensure_engine starts it
        return self

    def stop(self) -> None:
        stop_process(self.process, timeout=30)

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    @property
    def ports(self) -> list[int]:
        return []  # a unix socket


def ensure_engine(directory: Path = DEFAULT_DIR, *, detach: bool = False) -> Engine:
    """DOCKER_HOST, the default socket, our socket, or a new engine of ours (root only).

    An engine we start is stopped with :meth:`Engine.stop`; ``detach``: it may outlive this process.
    """
    for candidate in (os.environ.get("DOCKER_HOST"), "unix:///var/run/docker.sock", f"unix://{directory}/docker.sock"):
        if candidate and answers(candidate):
            return Engine(candidate)
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        raise DockerError(
            "No Docker engine answers, and nimrunbook can start one only as root with dockerd installed.",
            hint="Start Docker (`systemctl start docker`), or run as root after `apt-get install docker.io`, "
            "or set DOCKER_HOST to a running engine.",
        )
    directory.mkdir(parents=True, exist_ok=True)
    host = f"unix://{directory}/docker.sock"
    process = launch(
        [
            "dockerd",
            "--host",
            host,
            "--storage-driver=vfs",
            "--bridge=none",
            "--iptables=false",
            "--ip6tables=false",
            "--data-root",
            str(directory / "data"),
            "--exec-root",
            str(directory / "exec"),
            "--pidfile",
            str(directory / "dockerd.pid"),
        ],
        directory / "dockerd.log",
        detach=detach,
    )
    engine = Engine(host, process)
    try:
        wait_until(lambda: process.poll() is None and answers(host), "the Docker engine", timeout=90)
    except BaseException:
        engine.stop()
        raise
    return engine
