"""Turn notebook parameters into the objects the library takes.

Parameters are plain values (papermill writes them as Python literals), so
images may be refs or ``{ref, profiles}`` entries, and registries and the
object store are described field by field. What the command line shares
(the object store, the GPU inventory, image entries) is built by
:mod:`nimrunbook.inputs`; this module adds what only notebooks need. Secrets
are never parameters: only the *names* of the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from nimrunbook import inputs
from nimrunbook.errors import InputError
from nimrunbook.gpus import Inventory, inventory_from_local_host
from nimrunbook.images import RegistryAccess
from nimrunbook.inputs import image_entries, s3_settings
from nimrunbook.store import S3Settings

__all__ = [
    "bucket_keys",
    "gpu_inventory",
    "image_entries",
    "recorded_s3_settings",
    "registry_access",
    "s3_settings",
    "secret_from",
    "slug",
]


def slug(ref: str) -> str:
    """A folder name for an image ref."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ref).strip("_")


def gpu_inventory(
    gpus: str = "", nvidia_smi_file: str = "", node_labels_file: str = "", kubeconfig: str = ""
) -> Inventory:
    """The cluster's GPUs from the first source given (see :func:`nimrunbook.inputs.gpu_inventory`).

    One must be given: the staging host is rarely the cluster, so its own GPUs are used only when asked for
    by name (``gpus="local"``), never because nothing was said.
    """
    if gpus.strip().lower() == "local":
        return inventory_from_local_host()
    if not any(v.strip() for v in (gpus, nvidia_smi_file, node_labels_file, kubeconfig)):
        raise InputError(
            "No GPU inventory given: the plan needs the cluster's GPUs.",
            hint='Set gpus (e.g. "L40S, 2xA10G", one item per node), or nvidia_smi_file, node_labels_file or '
            'kubeconfig; gpus: "local" uses this host\'s own GPUs.',
        )
    return inputs.gpu_inventory(gpus, nvidia_smi_file, node_labels_file, kubeconfig)


def secret_from(env_name: str) -> str | None:
    return os.environ.get(env_name) if env_name else None


def registry_access(
    registry_ca: Mapping[str, str] | None, registry_insecure: Sequence[str] | None, ngc_api_key_env: str = "NGC_API_KEY"
) -> RegistryAccess:
    """The notebooks' registry parameters (the key by the name of its environment variable)."""
    return inputs.registry_access(registry_ca, registry_insecure, secret_from(ngc_api_key_env))


def recorded_s3_settings(
    facts: dict,
    bucket: str = "",
    endpoint_url: str = "",
    region: str = "",
    ca_bundle: str = "",
    insecure: bool = False,
    aws_profile: str = "",
) -> S3Settings:
    """Parameters where given, else what the run recorded when it published (or the bundle said)."""
    recorded = facts.get("publish", {}).get("settings", {}) or {}
    if not (bucket or recorded.get("bucket")):
        raise InputError(
            "No bucket given, and the run record names none.",
            hint="Set s3_bucket (and s3_endpoint_url for MinIO), or run the publish step first.",
        )
    return s3_settings(
        bucket or recorded["bucket"],
        endpoint_url or recorded.get("endpoint_url") or "",
        region or recorded.get("region") or "us-east-1",
        ca_bundle or recorded.get("ca_bundle") or "",
        insecure or bool(recorded.get("insecure")),
        False,
        aws_profile,
    )


def bucket_keys(settings: S3Settings, inventory_file: str = "") -> set[str]:
    """Keys already in the bucket: from an inventory file (inside), or by listing the bucket."""
    import json

    if inventory_file:
        return set(json.loads(Path(inventory_file).read_text()).get("objects", {}))
    from nimrunbook.store import make_client
    from nimrunbook.store.client import list_keys

    return set(list_keys(make_client(settings), settings))
