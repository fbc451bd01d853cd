"""The NIM container of the smoke test: what DataRobot gives it, no NGC key, and nothing left behind.

It gets what the NIM Operator's NIMCache gives a mirrored S3 repository:
``NIM_REPOSITORY_OVERRIDE=s3://<bucket>/``, the AWS region, and the read-only
credentials, either as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or, for a
named AWS profile, as a credentials file with AWS_PROFILE (the Operator's
``AWS_PROFILE=default`` plus its auth secret). Endpoint and CA go in the
standard AWS variables (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_CA_BUNDLE):
NVIDIA documents none for this path. The container's environment is read
back from Docker before it starts, and an NGC key there stops the test.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import botocore.exceptions
import docker
from docker.models.containers import Container

from nimrunbook.containers import run_tool
from nimrunbook.errors import DockerError, InputError
from nimrunbook.images.access import NGC_KEY_VARIABLES
from nimrunbook.nim import CONTAINER_CACHE, NIM_UID
from nimrunbook.redact import register_secret
from nimrunbook.smoke.network import Network
from nimrunbook.smoke.result import DownloadRun
from nimrunbook.store import S3Settings

INPUTS_DIR = "/etc/nimrunbook-smoke"


@dataclass
class ContainerInputs:
    """Environment and read-only mounts for the NIM container; ``credentials`` says how (never the keys)."""

    environment: dict[str, str] = field(default_factory=dict, repr=False)
    volumes: dict[str, dict] = field(default_factory=dict)
    credentials: str = "environment"


def _readable_copy(source: Path, directory: Path, name: str) -> str:
    """A copy the container's UID 1000 can read (the original may be root's, mode 0600); returns its host path."""
    target = directory / name
    shutil.copyfile(source, target)
    if os.geteuid() == 0:
        os.chown(target, NIM_UID, NIM_UID)
        target.chmod(0o400)
    else:
        target.chmod(0o444)  # inside our private temporary directory
    return str(target)


def _credentials(settings: S3Settings):
    """The read-only key DataRobot will use: given, from the AWS profile, or from the environment's chain."""
    try:
        if settings.access_key_id and settings.secret_access_key:
            return settings.access_key_id, settings.secret_access_key, None
        session = boto3.session.Session(profile_name=settings.profile) if settings.profile else boto3.session.Session()
        found = session.get_credentials()
    except botocore.exceptions.ProfileNotFound as exc:
        raise InputError(
            f"The AWS profile {settings.profile!r} does not exist.",
            hint="Name a profile of your AWS credentials file that holds the read-only key.",
        ) from exc
    if found is None:
        raise InputError(
            "No AWS credentials for the smoke test: neither AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY nor an AWS profile.",
            hint="Give the read-only key DataRobot will use (environment variables or aws_profile); never the "
            "publishing key.",
        )
    frozen = found.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def container_inputs(
    settings: S3Settings, network: Network, private_dir: Path, extra: Mapping[str, str] | None = None
) -> ContainerInputs:
    """Environment and mounts for download-to-cache from ``s3://<bucket>/``; files go to ``private_dir`` (0700)."""
    forbidden = sorted(set(extra or {}) & set(NGC_KEY_VARIABLES))
    if forbidden:
        raise InputError(
            f"The smoke test runs the NIM without an NGC key, and the extra environment names {', '.join(forbidden)}.",
            hint="Remove it: inside the air gap the NIM must read its profiles from the bucket alone.",
        )
    key_id, secret, token = _credentials(settings)
    for value in (key_id, secret, token):
        register_secret(value)
    inputs = ContainerInputs()
    environment = {
        **(extra or {}),
        "NIM_REPOSITORY_OVERRIDE": f"s3://{settings.bucket}/",
        "NIM_CACHE_PATH": CONTAINER_CACHE,
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
    }
    if network.endpoint_url:
        environment["AWS_ENDPOINT_URL"] = environment["AWS_ENDPOINT_URL_S3"] = network.endpoint_url
    if settings.ca_bundle:
        if not os.path.isfile(settings.ca_bundle):
            raise InputError(
                f"The CA bundle {settings.ca_bundle} does not exist.",
                hint="Give the PEM file of the CA that signed the object store's certificate.",
            )
        copy = _readable_copy(Path(settings.ca_bundle), private_dir, "ca.pem")
        inputs.volumes[copy] = {"bind": f"{INPUTS_DIR}/ca.pem", "mode": "ro"}
        environment["AWS_CA_BUNDLE"] = f"{INPUTS_DIR}/ca.pem"
    if settings.profile:
        profile_file = private_dir / "credentials.source"
        lines = [f"[{settings.profile}]", f"aws_access_key_id = {key_id}", f"aws_secret_access_key = {secret}"]
        if token:
            lines.append(f"aws_session_token = {token}")
        profile_file.touch(mode=0o600)
        profile_file.write_text("\n".join(lines) + "\n")
        copy = _readable_copy(profile_file, private_dir, "credentials")
        profile_file.unlink()
        inputs.volumes[copy] = {"bind": f"{INPUTS_DIR}/credentials", "mode": "ro"}
        environment["AWS_SHARED_CREDENTIALS_FILE"] = f"{INPUTS_DIR}/credentials"
        environment["AWS_PROFILE"] = settings.profile
        inputs.credentials = f"profile {settings.profile} (credentials file)"
    else:
        environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"] = key_id, secret
        if token:
            environment["AWS_SESSION_TOKEN"] = token
    inputs.environment = environment
    return inputs


def _names(container: Container) -> list[str]:
    return sorted({item.partition("=")[0] for item in container.attrs.get("Config", {}).get("Env") or []})


def run_download(
    client: docker.DockerClient,
    image: str,
    profile_ids: Sequence[str],
    inputs: ContainerInputs,
    network: Network,
    *,
    labels: Mapping[str, str],
    poll: Callable[[], None] | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float | None = None,
) -> tuple[DownloadRun, list[str]]:
    """Run ``download-to-cache --profiles <ids>``; returns the run and the container's environment names.

    The container is always removed (:func:`nimrunbook.containers.run_tool`). Its environment is read from
    Docker before it starts: an NGC key there (from the image itself) stops the test, since it could not prove
    that the NIM needs none.
    """
    started = time.monotonic()
    names: list[str] = []

    def refuse_an_ngc_key(container: Container) -> None:
        names.extend(_names(container))  # as Docker will start it: the image's own variables and ours
        carried = [name for name in NGC_KEY_VARIABLES if name in names]
        if carried:
            raise DockerError(
                f"The image {image} sets {', '.join(carried)} in its own environment, so the smoke test cannot show "
                "that the NIM reads its profiles without NGC (and the image carries a secret).",
                hint="Mirror an image built without an NGC key in its environment.",
            )

    run = run_tool(
        client,
        image,
        ["download-to-cache", "--profiles", *profile_ids],
        environment=inputs.environment,
        volumes=inputs.volumes,
        network_mode=network.mode,
        extra_hosts=network.extra_hosts,
        labels=labels,
        before_start=refuse_an_ngc_key,
        timeout=timeout,
        on_line=on_line,
        poll=poll,
    )
    output = run.output
    if run.timed_out:
        output += f"\nnimrunbook: download-to-cache did not finish within {timeout:.0f} s and was stopped"
    seconds = round(time.monotonic() - started, 3)
    return DownloadRun(list(profile_ids), run.exit_code, seconds, output, run.timed_out), names
