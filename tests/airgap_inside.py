"""The inside of the air gap, for tests/test_bundle_wheelhouse.py: run in a network namespace of its own.

``unshare -n python tests/airgap_inside.py SETTINGS.json`` starts with no network at all but a loopback that is
down. This brings loopback up (nothing else), proves that the package index cannot be reached (no name resolves,
no route, pip itself fails), installs nimrunbook from the bundle alone with its install.sh into a fresh
virtual environment, starts the inside's services on that loopback (Debian's docker-registry over TLS and
``rclone serve s3`` over TLS with virtual-hosted names), and then runs the installed nimrunbook (never this
checkout's): ``bundle verify``, ``bundle import`` and ``bundle inventory``. It prints one JSON document of what
happened and stops every service it started (they also die with it, see nimrunbook.sandbox.ports).

The services come from this test environment's nimrunbook.sandbox (the inside has its own registry and S3
server; standing them up is not what is tested).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

from nimrunbook.sandbox.rclone import RcloneS3Sandbox
from nimrunbook.sandbox.registry import LocalRegistry
from nimrunbook.sandbox.tls import Certificates

BUCKET = "nim-inside"  # one of the sandbox's names in /etc/hosts
PYPI = ("pypi.org", 443)
PYPI_ADDRESS = ("151.101.0.223", 443)  # one of pypi.org's addresses (Fastly), in case a name did resolve
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | _IFF_UP, b""))


def _error_of(call) -> str | None:
    try:
        call()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def network_facts(work: Path) -> dict:
    """What this namespace can reach: its interfaces, and the package index by name, by address and by pip."""
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--retries", "0", "--timeout", "5"]
        + ["--index-url", "https://pypi.org/simple", "--dest", str(work / "pip-probe"), "six"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return {
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "resolve_pypi": _error_of(lambda: socket.getaddrinfo(*PYPI)),
        "connect_pypi": _error_of(lambda: socket.create_connection(PYPI_ADDRESS, timeout=5).close()),
        "pip_download_rc": pip.returncode,
        "pip_download_tail": (pip.stdout + pip.stderr)[-600:],
    }


def _ends(text: str, keep: int = 3000) -> str:
    return text if len(text) <= 2 * keep else f"{text[:keep]}\n[...]\n{text[-keep:]}"


def run(command: list[str], env: dict | None = None, timeout: float = 900) -> dict:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    return {"rc": result.returncode, "stdout": _ends(result.stdout), "stderr": _ends(result.stderr)}


def main(settings: dict) -> dict:
    work = Path(settings["work"])
    bundle, venv, key = settings["bundle"], work / "venv", settings["public_key"]
    loopback_up()
    report: dict = {"network": network_facts(work)}
    report["install"] = run(["sh", f"{bundle}/wheelhouse/install.sh", str(venv)])
    nimrunbook = str(venv / "bin" / "nimrunbook")
    report["installed_from"] = run(
        [str(venv / "bin" / "python"), "-c", "import nimrunbook; print(nimrunbook.__file__)"]
    )
    if report["install"]["rc"] != 0:
        return report

    certs = Certificates(work / "certs")
    cert, cert_key = certs.issue("registry", "127.0.0.1", "localhost")
    registry = LocalRegistry(root=work / "registry", cert_file=cert, key_file=cert_key)
    s3 = RcloneS3Sandbox(root=work / "s3", certs=certs)
    try:
        registry.start()
        s3.start()
        s3.create_bucket(BUCKET)
        key_id, secret = s3.credentials["admin"]
        env = {**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
        env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
        inside = f"{registry.host}/inside"
        registry_options = ["--registry-ca", f"{registry.host}={certs.ca_bundle}"]
        s3_options = ["--bucket", BUCKET, "--endpoint-url", s3.endpoint_url, "--ca-bundle", str(certs.ca_bundle)]
        records = ["--record-dir", str(work / "records")]
        report["verify"] = run([nimrunbook, "bundle", "verify", bundle, "--public-key", key, *records], env)
        report["import"] = run(
            [nimrunbook, "bundle", "import", bundle, "--public-key", key, "--registry", inside]
            + [*registry_options, *s3_options, *records],
            env,
        )
        inventory = work / "inventory.json"
        report["inventory_run"] = run(
            [nimrunbook, "bundle", "inventory", "--registry", inside, "--images", *settings["images"]]
            + [*registry_options, *s3_options, "--output", str(inventory)],
            env,
        )
        report["inventory"] = json.loads(inventory.read_text()) if inventory.exists() else None
    finally:
        s3.stop()
        registry.stop()
    return report


if __name__ == "__main__":
    print(json.dumps(main(json.loads(Path(sys.argv[1]).read_text()))))
