"""``nimrunbook demo``: the whole runbook, unattended, against a local sandbox.

The sandbox stands in for everything the real job touches: the stand-in NIM
image (two tags), a registry standing in for nvcr.io, internal registries over
TLS (one for the online path, one for the inside of the air gap), and a real
S3 server (``rclone serve s3``) over TLS with virtual-hosted bucket names. Then
both paths run through papermill, exactly as an operator would run them:
online (plan, mirror, download, publish, configure, tag update) and removable
media (bundle, verify, import into a second registry and bucket, configure,
and the smoke test: the NIM pulled from the inside registry reads the inside
bucket with the read-only key and no NGC key).

Every service it starts is stopped on every way out (an error, Ctrl-C,
SIGTERM, a closed terminal; even SIGKILL, through the kernel's parent-death
signal), unless ``--keep`` asked for them after a successful run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from nimrunbook.errors import NimRunbookError
from nimrunbook.reports import run_notebook
from nimrunbook.reports.execute import raise_for_failure
from nimrunbook.sandbox.engine import Engine, ensure_engine
from nimrunbook.sandbox.rclone import RcloneS3Sandbox, new_key
from nimrunbook.sandbox.registry import LocalRegistry
from nimrunbook.sandbox.s3 import ensure_hosts_entries, hosts_lines
from nimrunbook.sandbox.services import ServiceGroup, Terminated, terminate_gracefully
from nimrunbook.sandbox.tls import Certificates
from nimrunbook.standin import build_standin_image

log = logging.getLogger(__name__)

DEMO_KEY = "demo-ngc-key"  # the stand-in only checks that a key is set
ONLINE = (
    "00_preflight",
    "01_plan_profiles",
    "02_mirror_images",
    "03_download_profiles",
    "04_publish_profiles",
    "05_create_bundle",
    "07_configure_datarobot",
    "08_update_nim_tags",
)
INSIDE = ("06_verify_and_import_bundle", "07_configure_datarobot", "09_smoke_test")
READ_ONLY_NOTE = (
    "The demo's S3 server (rclone serve s3) has no per-key policies, so its 'reader' key can also write and delete: "
    "step 07 proves that it reads every object and warns that it can write, as it would for such a key in real use. "
    "The tests check a truly read-only key against an S3 server that enforces IAM policies (moto)."
)


def write_private(path: Path, text: str) -> None:
    """Write a file that holds keys: mode 0600 from the moment it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # it may have existed with a wider mode
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


@dataclass
class Sandbox:
    root: Path
    detach: bool = False  # --keep: the services may outlive this process
    engine: Engine | None = None
    services: ServiceGroup = field(init=False)
    parameters: dict = field(default_factory=dict)
    inside_parameters: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.services = ServiceGroup(self.root / "services.json")

    def start(self, weight_bytes: int) -> Sandbox:
        self.root.mkdir(parents=True, exist_ok=True)
        if not ensure_hosts_entries():
            raise NimRunbookError(
                "The sandbox's S3 bucket names do not resolve, and /etc/hosts cannot be changed here.",
                hint="Run as root, or add these lines to /etc/hosts:\n" + "\n".join(hosts_lines()),
            )
        self.engine = self.services.adopt(ensure_engine(detach=self.detach))
        os.environ["DOCKER_HOST"] = self.engine.docker_host
        import docker

        client = docker.DockerClient(base_url=self.engine.docker_host)
        log.info("building the stand-in NIM images")
        local = [build_standin_image(client, version) for version in ("1.8.5", "1.8.6")]
        certs = Certificates(self.root / "certs")
        cert, key = certs.issue("registry", "127.0.0.1", "localhost")
        start, detach = self.services.start, self.detach
        ngc = start(LocalRegistry(root=self.root / "ngc-registry", detach=detach))
        internal = start(LocalRegistry(self.root / "internal-registry", cert_file=cert, key_file=key, detach=detach))
        inside = start(LocalRegistry(self.root / "inside-registry", cert_file=cert, key_file=key, detach=detach))
        s3 = RcloneS3Sandbox(root=self.root / "s3", detach=detach)
        admin = s3.credentials["admin"] = new_key()
        reader = s3.credentials["reader"] = new_key()  # may write too: see READ_ONLY_NOTE
        start(s3)
        for bucket in ("nim-demo", "nim-demo-inside"):
            s3.create_bucket(bucket)
        images = []
        for ref in local:
            target = f"{ngc.host}/nim/meta/llama-3.2-1b-instruct:{ref.rsplit(':', 1)[1]}"
            client.images.get(ref).tag(target)
            for event in client.api.push(target, stream=True, decode=True):
                if "error" in event:
                    raise NimRunbookError(f"Pushing {target} to the nvcr.io stand-in failed: {event['error']}")
            images.append(target)
        credentials = self.root / "aws-credentials"
        write_private(credentials, f"[reader]\naws_access_key_id = {reader[0]}\naws_secret_access_key = {reader[1]}\n")
        signing_key = self.root / "bundle-signing-key"
        if not signing_key.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "nimrunbook demo", "-f", str(signing_key)],
                check=True,
            )
        self.environment = {
            "DOCKER_HOST": self.engine.docker_host,
            "NGC_API_KEY": DEMO_KEY,
            "AWS_ACCESS_KEY_ID": admin[0],
            "AWS_SECRET_ACCESS_KEY": admin[1],
            "AWS_SHARED_CREDENTIALS_FILE": str(credentials),
        }
        registry_ca = {internal.host: str(certs.ca_bundle), inside.host: str(certs.ca_bundle)}
        self.parameters = {
            "images": images[:1],
            "gpus": "L40S, A10G",
            "lora": False,
            "cache_dir": str(self.root / "nim-cache"),
            "internal_registry": internal.host,
            "registry_ca": registry_ca,
            "registry_insecure": [ngc.host],
            "s3_bucket": "nim-demo",
            "s3_endpoint_url": s3.endpoint_url,
            "s3_ca_bundle": str(s3.certs.ca_bundle),
            "network_mode": "none",
            "container_environment": {"NIM_STANDIN_WEIGHT_BYTES": str(weight_bytes)},
            "download_size_gb": 0.1,  # the stand-in's weights are small; the estimate is for a real 1B model
            "bundle_dir": str(self.root / "media" / "nim-bundle"),
            "sign_key": str(signing_key),
            # The demo's inside runs the nimrunbook installed here: carrying it (~120 MB of wheels from the package
            # index) is left to tests/test_bundle_wheelhouse.py, which installs from a bundle with no network.
            "wheelhouse": "no",
            "inside_registry": inside.host,
            "inside_bucket": "nim-demo-inside",
            "inside_endpoint_url": s3.endpoint_url,
            "namespace": "datarobot",
            "readonly_aws_profile": "reader",
            "old_image": images[0],
            "new_image": images[1],
            "values_file": str(self.root / "datarobot-values.yaml"),
            "write_values": True,
        }
        self.inside_parameters = {
            "bundle_dir": self.parameters["bundle_dir"],
            "public_key": str(signing_key) + ".pub",
            "registry_ca": registry_ca,
            "s3_ca_bundle": str(s3.certs.ca_bundle),
            "namespace": "datarobot",
            "readonly_aws_profile": "reader",
        }
        (self.root / "params-online.yaml").write_text(yaml.safe_dump(self.parameters, sort_keys=False))
        (self.root / "params-inside.yaml").write_text(yaml.safe_dump(self.inside_parameters, sort_keys=False))
        values = self.root / "datarobot-values.yaml"
        if not values.exists():
            values.write_text(
                "# DataRobot values of the demo cluster\nglobal:\n  domain: datarobot.example.test  # kept by the merge\n"
            )
        return self

    def stop(self) -> None:
        self.services.stop()


def _index(root: Path, runs: dict[str, Path]) -> Path:
    links = "".join(f'<li><a href="{path.relative_to(root)}/index.html">{name}</a></li>' for name, path in runs.items())
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>nimrunbook demo</title></head>"
        "<body style='font-family:sans-serif'>"
        f"<h1>nimrunbook demo</h1><p>Run {time.strftime('%Y-%m-%d %H:%M:%S')}.</p><ul>{links}</ul></body></html>"
    )
    (root / "index.html").write_text(page)
    return root / "index.html"


def _write_keep_files(sandbox: Sandbox) -> None:
    """The shell environment of the sandbox (mode 0600: it holds the sandbox's keys) and a stop script."""
    environment = "".join(f"export {k}={json.dumps(v)}\n" for k, v in sandbox.environment.items())
    write_private(sandbox.root / "sandbox.env", environment)
    pids = sandbox.services.pids
    (sandbox.root / "stop.sh").write_text("".join(f"kill {pid} 2>/dev/null\n" for pid in pids))


def run_demo(root: Path, *, keep: bool = False, weight_bytes: int = 4 * 1024 * 1024) -> Path:
    """Bring up the sandbox, run both paths, write the reports; returns the demo's index page.

    The sandbox is stopped on every way out, unless ``keep`` and the run succeeded.
    """
    started = time.monotonic()
    sandbox = Sandbox(root.resolve(), detach=keep)
    # A new sandbox: records of the last one would mislead, and its S3 server forgot the objects' metadata.
    for stale in ("run-outside", "run-inside", "media", "s3"):
        shutil.rmtree(sandbox.root / stale, ignore_errors=True)
    finished = False
    with terminate_gracefully():
        try:
            index = _run_both_paths(sandbox, weight_bytes)
            finished = True
        except Terminated as stopped:
            print(f"nimrunbook demo: {stopped.signal_name}: stopping the sandbox's services.", file=sys.stderr)
            raise
        finally:
            if not (keep and finished):
                sandbox.stop()
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s. Reports: {index}")
    for path in (sandbox.root / "run-outside", sandbox.root / "run-inside"):
        print(f"  {path}/index.html")
    print("\n" + READ_ONLY_NOTE)
    nimrunbook = Path(sysconfig.get_path("scripts")) / "nimrunbook"
    if not keep:
        print("To open the same notebooks in JupyterLab against this sandbox, run again with --keep.")
    else:
        _write_keep_files(sandbox)
        print(
            f"\nThe sandbox keeps running (--keep). Open the same notebooks against it in JupyterLab:\n"
            f"  source {sandbox.root}/sandbox.env && {nimrunbook} lab {sandbox.root}/lab "
            f"-f {sandbox.root}/params-online.yaml\n"
            f"  (the inside's parameters: {sandbox.root}/params-inside.yaml)\n"
            f"Stop it with: sh {sandbox.root}/stop.sh"
        )
    return index


def _run_both_paths(sandbox: Sandbox, weight_bytes: int) -> Path:
    sandbox.start(weight_bytes)
    os.environ.update(sandbox.environment)
    runs = {
        "online path and bundle (outside)": sandbox.root / "run-outside",
        "removable media (inside)": sandbox.root / "run-inside",
    }
    for notebook in ONLINE:
        result = run_notebook(notebook, runs["online path and bundle (outside)"], sandbox.parameters, strict=False)
        print(f"  {notebook}: {'ok' if result.ok else 'FAILED'} ({result.seconds:.1f} s)", flush=True)
        raise_for_failure(result)
    for notebook in INSIDE:
        result = run_notebook(notebook, runs["removable media (inside)"], sandbox.inside_parameters, strict=False)
        print(f"  {notebook} (inside): {'ok' if result.ok else 'FAILED'} ({result.seconds:.1f} s)", flush=True)
        raise_for_failure(result)
    return _index(sandbox.root, runs)
