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

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from nimrunbook.errors import InputError
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

DEFAULT_REGION = "us-east-1"
# The guide's variables, the defaults the command line takes from the environment.
S3_ENVIRONMENT = {
    "bucket": ("NIM_BUCKET_NAME",),
    "endpoint_url": ("AWS_ENDPOINT_URL",),
    "region": ("AWS_DEFAULT_REGION", "AWS_REGION"),
    "ca_bundle": ("AWS_CA_BUNDLE",),
}


def read_input(path: str, what: str) -> str:
    """Text of a file, or of standard input for ``-``, with a clear error when absent or empty."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"Cannot read the {what} file {path!r}: {exc.strerror}.") from exc
    if not text.strip():
        raise InputError(f"The {what} {'on standard input' if path == '-' else repr(path)} is empty.")
    return text


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
    return S3Settings(
        bucket=given["bucket"],
        endpoint_url=given["endpoint_url"] or None,
        region=given["region"] or DEFAULT_REGION,
        ca_bundle=given["ca_bundle"] or None,
        insecure=insecure,
        path_style=path_style,
        profile=aws_profile or None,
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
        path = Path(images)
        if not path.exists():
            return [(images, "auto")]
        document = yaml.safe_load(path.read_text()) or {}
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
