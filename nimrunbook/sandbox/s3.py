"""A real S3-speaking server behind real TLS, with virtual-hosted bucket names.

moto's server speaks S3 over plain HTTP on loopback; nginx terminates TLS in
front of it with a certificate from a test CA whose SANs cover
``*.s3.example.test``, which is what DataRobot asks of MinIO. Bucket names
resolve through /etc/hosts entries (``scripts/test`` adds them). moto checks
credentials and IAM policies once :meth:`S3Sandbox.enforce_auth` is called, so
wrong keys and read-only keys fail as they would on a real server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import boto3
from botocore.config import Config

from nimrunbook.sandbox.ports import free_port, launch, stop_process, wait_for_port
from nimrunbook.sandbox.tls import DOMAIN, Certificates

# Bucket names the sandbox and tests use; each needs an /etc/hosts line.
BUCKETS = (
    "nim-profiles",
    "nim-inside",
    "nim-demo",
    "nim-demo-inside",
    "nim-bench",
    "nim-mixed",
    "nim-resume",
    "nim-changed",
    "nim-direct",
    "nim-bundle",
    "nim-split",
    "nim-nb",
    "nim-nb-inside",
    "nim-lab",
    "nim-bench-aws",
    "nim-smoke",
    "nim-cut",
    "nim-rot",
)
UNRESOLVED_BUCKET = "not-in-hosts"  # deliberately absent from /etc/hosts


def hosts_lines(domain: str = DOMAIN, buckets: tuple[str, ...] = BUCKETS) -> list[str]:
    return [f"127.0.0.1 {domain}", *(f"127.0.0.1 {bucket}.{domain}" for bucket in buckets)]


def ensure_hosts_entries(hosts_file: str = "/etc/hosts") -> bool:
    """Add the sandbox's names to /etc/hosts when we may; True when all are there."""
    wanted = hosts_lines()
    try:
        present = Path(hosts_file).read_text()
        missing = [line for line in wanted if line not in present.splitlines()]
        if missing:
            with open(hosts_file, "a") as handle:
                handle.write("\n# nimrunbook sandbox\n" + "\n".join(missing) + "\n")
        return True
    except OSError:
        return False


NGINX_SERVER = """\
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name {domain} *.{domain};
    ssl_certificate {cert};
    ssl_certificate_key {key};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
    }}
  }}"""

NGINX_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  client_max_body_size 0;
  proxy_request_buffering off;
  proxy_buffering off;
  proxy_http_version 1.1;
{servers}
}}
"""


@dataclass
class S3Sandbox:
    """moto (HTTP, loopback) + nginx (TLS) with test certificates; see the module docstring.

    The same shape as :class:`nimrunbook.sandbox.rclone.RcloneS3Sandbox`, so that a test can run against either.
    """

    enforces_policies: ClassVar[bool] = True  # create_user's actions are IAM policies that moto enforces

    root: Path
    moto_port: int = field(default_factory=free_port)
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
        """Same server, but its certificate does not cover ``<bucket>.{DOMAIN}``."""
        return f"https://{DOMAIN}:{self.narrow_port}"

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._processes if p.poll() is None]

    @property
    def ports(self) -> list[int]:
        return [self.moto_port, self.port, self.narrow_port]

    def start(self) -> S3Sandbox:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> S3Sandbox:
        self.root.mkdir(parents=True, exist_ok=True)
        self.certs = self.certs or Certificates(self.root / "certs")
        env = {**os.environ, "MOTO_S3_CUSTOM_ENDPOINTS": f"{self.endpoint_url},{self.narrow_endpoint_url}"}
        self._processes.append(
            launch(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.moto_port)],
                self.root / "moto.log",
                env=env,
                detach=self.detach,
            )
        )
        wait_for_port(self._processes[-1], self.moto_port, "moto S3 server", self.root / "moto.log", timeout=60)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.root / sub).mkdir(exist_ok=True)
        conf = self.root / "nginx.conf"
        servers = "\n".join(
            NGINX_SERVER.format(port=port, domain=DOMAIN, cert=cert, key=key, upstream=self.moto_port)
            for port, cert, key in (
                (self.port, self.certs.wildcard_cert, self.certs.wildcard_key),
                (self.narrow_port, self.certs.narrow_cert, self.certs.narrow_key),
            )
        )
        conf.write_text(NGINX_CONF.format(root=self.root, servers=servers))
        self._processes.append(
            launch([nginx, "-c", str(conf), "-p", str(self.root)], self.root / "nginx.out", detach=self.detach)
        )
        wait_for_port(self._processes[-1], self.port, "nginx TLS proxy", self.root / "nginx.out")
        return self

    def stop(self) -> None:
        for process in reversed(self._processes):
            stop_process(process)
        self._processes.clear()

    # -- accounts ---------------------------------------------------------------------------

    def _moto(self, service: str, key: tuple[str, str] = ("admin", "admin")):
        return boto3.client(
            service,
            endpoint_url=f"http://127.0.0.1:{self.moto_port}",
            region_name=self.region,
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(s3={"addressing_style": "path"}),
        )

    def create_user(self, name: str, actions: list[str]) -> tuple[str, str]:
        """An IAM user allowed ``actions`` on every bucket; returns (access key id, secret)."""
        iam = self._moto("iam")
        iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        self.credentials[name] = (key["AccessKeyId"], key["SecretAccessKey"])
        return self.credentials[name]

    def create_bucket(self, name: str) -> None:
        self._moto("s3", self.credentials.get("admin", ("admin", "admin"))).create_bucket(Bucket=name)

    def enforce_auth(self) -> None:
        """From now on moto checks signatures and IAM policies on every request."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.moto_port}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        urllib.request.urlopen(request, timeout=10).read()

    @classmethod
    def temporary(cls) -> S3Sandbox:
        return cls(root=Path(tempfile.mkdtemp(prefix="nimrunbook-s3-")))
