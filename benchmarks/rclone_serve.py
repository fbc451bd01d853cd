"""`rclone serve s3` over TLS with virtual-hosted buckets, started by the benchmark itself.

A stop-gap: the sandbox's own rclone server (nimrunbook.sandbox.rclone, infra's branch) had not
landed when this harness was written. benchmarks/ours.py uses the sandbox's class when it exists;
delete this module then.
"""

from __future__ import annotations

import os
import secrets
import socket
import string
import subprocess
import time
from pathlib import Path

from benchmarks.measure import CommandFailed

DOMAIN = "s3.example.test"  # nimrunbook.sandbox.tls.DOMAIN: the certificate's names and the /etc/hosts lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RcloneServe:
    def __init__(self, root: Path, binary: str, cert: Path, key: Path) -> None:
        self.root, self.binary, self.cert, self.cert_key = root, binary, cert, key
        self.port = _free_port()
        alphabet = string.ascii_uppercase + string.digits
        self.key = ("NRBK" + "".join(secrets.choice(alphabet) for _ in range(16)), secrets.token_urlsafe(30)[:40])
        self._process: subprocess.Popen | None = None

    @property
    def endpoint_url(self) -> str:
        return f"https://{DOMAIN}:{self.port}"

    def start(self) -> RcloneServe:
        data, log, config = self.root / "data", self.root / "rclone.log", self.root / "rclone.conf"
        data.mkdir(parents=True, exist_ok=True)
        config.touch()  # empty: never the user's rclone configuration
        # The key goes in the environment, not on the command line that `ps` shows to everyone.
        env = {**os.environ, "RCLONE_CONFIG": str(config), "RCLONE_AUTH_KEY": f'"{self.key[0]},{self.key[1]}"'}
        command = [
            self.binary,
            "serve",
            "s3",
            f":local:{data}",
            "--addr",
            f"127.0.0.1:{self.port}",
            "--cert",
            str(self.cert),
            "--key",
            str(self.cert_key),
            "--force-path-style=false",
        ]
        with open(log, "ab") as output:
            self._process = subprocess.Popen(command, stdout=output, stderr=output, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise CommandFailed(
                    f"rclone serve s3 exited with {self._process.returncode}: {log.read_text()[-1500:]}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        self.stop()
        raise CommandFailed(
            f"rclone serve s3 did not listen on port {self.port} within 30 s: {log.read_text()[-1500:]}"
        )

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
