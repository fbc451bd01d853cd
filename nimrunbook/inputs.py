"""What a user gives, turned into what the library takes: one layer for the command line and the notebooks.

The same question gets the same answer and the same error whichever way it
is asked: which object store (:func:`s3_settings`, built and validated in one
constructor call), which GPUs the cluster has (:func:`gpu_inventory`, from the
first source given), which images with which profiles (:func:`image_entries`),
the text of an input file (:func:`read_input`, ``-`` for standard input), and
how to reach the registries (:func:`registry_access`). Secrets are never
inputs here: they come from the environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from nimrunbook.errors import InputError, require_bool
from nimrunbook.gpus import (
    Inventory,
    inventory_from_cluster,
    inventory_from_local_host,
    inventory_from_node_labels,
    inventory_from_nvidia_smi,
    inventory_from_text,
)
from nimrunbook.images.access import RegistryAccess
from nimrunbook.store.client import S3Settings
from nimrunbook.userfiles import check_certificates, read_text, read_yaml

DEFAULT_REGION = "us-east-1"
# The guide's variables, the defaults the command line takes from the environment.
S3_ENVIRONMENT = {
    "bucket": ("NIM_BUCKET_NAME",),
    "endpoint_url": ("AWS_ENDPOINT_URL",),
    "region": ("AWS_DEFAULT_REGION", "AWS_REGION"),
    "ca_bundle": ("AWS_CA_BUNDLE",),
}


def read_input(path: str, what: str) -> str:
    """Text of a file, or of standard input for ``-``; anything else ends in one clear error
    (see :func:`nimrunbook.userfiles.read_text`)."""
    return read_text(path, what)


def s3_settings(
    bucket: str = "",
    endpoint_url: str = "",
    region: str = "",
    ca_bundle: str = "",
    insecure: bool = False,
    path_style: bool = False,
    aws_profile: str = "",
    *,
    defaults: Mapping[str, str] | None = None,
) -> S3Settings:
    """The object store settings, validated (bucket named, endpoint a URL) in one constructor call.

    An empty value falls back to ``defaults`` (the command line passes the
    environment: NIM_BUCKET_NAME, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION or
    AWS_REGION, AWS_CA_BUNDLE), then to AWS S3 in us-east-1. Credentials come
    from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or ``aws_profile``.
    """
    given = {"bucket": bucket, "endpoint_url": endpoint_url, "region": region, "ca_bundle": ca_bundle}
    for name, variables in S3_ENVIRONMENT.items():
        if not given[name] and defaults:
            given[name] = next((defaults[v] for v in variables if defaults.get(v)), "")
    require_bool("insecure", insecure)
    require_bool("path_style", path_style)
    if given["bucket"]:
        check_bucket_name(given["bucket"])
    if given["ca_bundle"]:
        check_certificates(given["ca_bundle"], "CA bundle")
    if aws_profile:
        check_aws_profile(aws_profile)
    return S3Settings(
        bucket=given["bucket"],
        endpoint_url=given["endpoint_url"] or None,
        region=given["region"] or DEFAULT_REGION,
        ca_bundle=given["ca_bundle"] or None,
        insecure=insecure,
        path_style=path_style,
        profile=aws_profile or None,
    )


# S3's rule for bucket names (3-63 of a-z 0-9 . -, a letter or digit at each end): DataRobot addresses the bucket
# as <bucket>.<endpoint host>, so only a name that is a DNS label works.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_bucket_name(bucket: str) -> None:
    if not _BUCKET_NAME.fullmatch(bucket) or ".." in bucket or re.fullmatch(r"[\d.]+", bucket):
        raise InputError(
            f"{bucket!r} is not a valid S3 bucket name.",
            hint="A bucket name has 3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a "
            "letter or digit (e.g. nim-profiles).",
        )


def check_aws_profile(profile: str) -> None:
    """Refuse a profile that neither the AWS config file nor the credentials file defines."""
    import botocore.session

    known = botocore.session.Session().available_profiles
    if profile not in known:
        raise InputError(
            f"There is no AWS profile {profile!r} in the AWS config or credentials file.",
            hint=f"Known profiles: {', '.join(sorted(known)) or 'none'}. Check --aws-profile / s3_aws_profile, or "
            "AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE.",
        )


def gpu_inventory(
    gpus: str = "", nvidia_smi_file: str = "", node_labels_file: str = "", kubeconfig: str = ""
) -> Inventory:
    """The cluster's GPUs from the first source given: typed names, an nvidia-smi capture (a file, or ``-``),
    node labels (``kubectl get nodes -o json`` or label lines), the live cluster; none given means this
    host's own nvidia-smi."""
    if gpus:
        return inventory_from_text(gpus)
    if nvidia_smi_file:
        return inventory_from_nvidia_smi(read_input(nvidia_smi_file, "nvidia-smi output"))
    if node_labels_file:
        return inventory_from_node_labels(read_input(node_labels_file, "node labels"))
    if kubeconfig:
        return inventory_from_cluster(kubeconfig)
    return inventory_from_local_host()


def host_files(items: Sequence[str], option: str = "--registry-ca") -> dict[str, str]:
    """``["HOST=FILE", ...]`` (a repeated command-line option) as ``{host: file}``."""
    found = {}
    for item in items:
        host, sep, path = item.partition("=")
        if not sep or not host or not path:
            raise InputError(
                f"{option} {item!r} is not HOST=FILE.", hint=f"e.g. {option} registry.example.com:5000=ca.pem"
            )
        found[host] = path
    return found


def registry_access(
    ca_bundles: Mapping[str, str] | None = None, insecure: Sequence[str] | None = None, ngc_api_key: str | None = None
) -> RegistryAccess:
    """How to reach the registries: a CA bundle per host, hosts not verified, and nvcr.io logged in to with
    ``ngc_api_key`` (else the environment's NGC key, see :func:`nimrunbook.images.ngc_api_key`)."""
    access = RegistryAccess(ca_bundles=dict(ca_bundles or {}), insecure=set(insecure or []))
    access.add_ngc_key(ngc_api_key)
    return access


def image_entries(images: str | Sequence[str | Mapping]) -> list[tuple[str, str | list[str]]]:
    """``[(ref, "auto" | [ids])]`` from a list of refs, a list of ``{ref, profiles}``, or a YAML plan file.

    The refs themselves are checked where they are used, by the one rule of :mod:`nimrunbook.images.refs`.
    """
    if isinstance(images, str):
        if not Path(images).exists():
            return [(images, "auto")]
        document = read_yaml(images, "image plan", shape=None) or {}
        images = document.get("images", document) if isinstance(document, dict) else document
    entries = []
    for item in images or []:
        if isinstance(item, str):
            entries.append((item, "auto"))
        elif isinstance(item, Mapping) and "ref" in item:
            entries.append((str(item["ref"]), item.get("profiles", "auto")))
        else:
            raise InputError(
                f"Cannot read the image entry {item!r}.",
                hint='Write an image as "nvcr.io/nim/meta/<model>:<tag>" or {ref: ..., profiles: auto | [ids]}.',
            )
    if not entries:
        raise InputError("No images given.", hint='Set images = ["nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"].')
    return entries
