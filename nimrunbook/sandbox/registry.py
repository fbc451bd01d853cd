"""A real OCI registry (Debian's ``docker-registry``) on loopback, optionally with TLS and a password."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nimrunbook.sandbox.ports import free_port, launch, stop_process, wait_for_port


@dataclass
class LocalRegistry:
    """``docker-registry serve`` on 127.0.0.1; ``host`` is what image refs name (``127.0.0.1:PORT``)."""

    root: Path
    port: int = field(default_factory=free_port)
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    detach: bool = False  # outlive this process (see ports.launch)
    _process: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _config(self) -> dict:
        http: dict = {"addr": self.host}
        if self.cert_file and self.key_file:
            http["tls"] = {"certificate": str(self.cert_file), "key": str(self.key_file)}
        config: dict = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.username and self.password:
            import bcrypt

            hashed = bcrypt.hashpw(self.password.encode(), bcrypt.gensalt(rounds=4)).decode()
            htpasswd = self.root / "htpasswd"
            htpasswd.write_text(f"{self.username}:{hashed}\n")
            config["auth"] = {"htpasswd": {"realm": "nimrunbook", "path": str(htpasswd)}}
        return config

    def start(self) -> LocalRegistry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise RuntimeError("docker-registry is not installed: `apt-get install docker-registry`")
        self.root.mkdir(parents=True, exist_ok=True)
        config_file = self.root / "config.yml"
        config_file.write_text(yaml.safe_dump(self._config()))
        self._process = launch([binary, "serve", str(config_file)], self.root / "registry.log", detach=self.detach)
        try:
            wait_for_port(self._process, self.port, f"docker-registry on {self.host}", self.root / "registry.log")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        stop_process(self._process)

    @property
    def pids(self) -> list[int]:
        return [self._process.pid] if self._process and self._process.poll() is None else []

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @classmethod
    def temporary(cls, **kwargs) -> LocalRegistry:
        return cls(root=Path(tempfile.mkdtemp(prefix="nimrunbook-registry-")), **kwargs)
