"""Turn notebook parameters into the objects the library takes.

Parameters are plain values (papermill writes them as Python literals), so
images may be refs or ``{ref, profiles}`` entries, and registries and the
object store are described field by field. Secrets are never parameters:
only the *names* of the environment variables that hold them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from nimrunbook.errors import InputError
from nimrunbook.images import RegistryAccess
from nimrunbook.store import S3Settings


def image_entries(images: str | Sequence[str | Mapping]) -> list[tuple[str, str | list[str]]]:
    """``[(ref, "auto" | [ids])]`` from a list of refs, a list of ``{ref, profiles}``, or a YAML plan file."""
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


def slug(ref: str) -> str:
    """A folder name for an image ref."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", ref).strip("_")


def secret_from(env_name: str) -> str | None:
    return os.environ.get(env_name) if env_name else None


def registry_access(
    registry_ca: Mapping[str, str] | None, registry_insecure: Sequence[str] | None, ngc_api_key_env: str = "NGC_API_KEY"
) -> RegistryAccess:
    access = RegistryAccess(ca_bundles=dict(registry_ca or {}), insecure=set(registry_insecure or []))
    access.add_ngc_key(secret_from(ngc_api_key_env))
    return access


def s3_settings(
    bucket: str,
    endpoint_url: str = "",
    region: str = "us-east-1",
    ca_bundle: str = "",
    insecure: bool = False,
    path_style: bool = False,
    aws_profile: str = "",
) -> S3Settings:
    """Credentials come from the environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) or ``aws_profile``."""
    return S3Settings(
        bucket=bucket,
        endpoint_url=endpoint_url or None,
        region=region or "us-east-1",
        ca_bundle=ca_bundle or None,
        insecure=insecure,
        path_style=path_style,
        profile=aws_profile or None,
    )


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

    client = make_client(settings)
    return {
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket)
        for o in page.get("Contents", [])
    }
