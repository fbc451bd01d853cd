"""DataRobot's Helm values for NIM in an air gap (the guide's §4.1), built, validated and merged.

A typo here shows up only later, as ``ImagePullBackOff`` or a NIM that cannot
find its profiles, so every value is derived from what the run actually did
(the images it mirrored, the bucket it published to) and checked before it is
written. Merging keeps the existing file's comments, order and other keys.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import io
import ipaddress
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from nimrunbook.errors import InputError, problems_error
from nimrunbook.images.refs import ImageRef
from nimrunbook.localdisk import atomic_writer
from nimrunbook.locks import file_lock
from nimrunbook.userfiles import read_text

SECTION = "custom-templates"
ALLOWLIST_COMMENT = "DataRobot ignores the tags: each entry allows its image in every tag"
REGISTRY_COMMENT = "must equal the CUSTOM_MODEL_NIM_IMAGE_REGISTRY environment variable"


@dataclass
class DataRobotSettings:
    """What DataRobot must know; ``allowlist`` holds the original ``nvcr.io/...:tag`` refs."""

    internal_registry: str
    bucket: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # None for AWS S3; required for MinIO
    allowlist: list[str] = field(default_factory=list)


def build_values(settings: DataRobotSettings) -> CommentedMap:
    """The values as a ruamel mapping (so the comments travel with it)."""
    templates = CommentedMap()
    templates["custom_model_nim_image_registry"] = settings.internal_registry
    templates.yaml_add_eol_comment(REGISTRY_COMMENT, "custom_model_nim_image_registry")
    templates["custom_model_nim_repository_override"] = f"s3://{settings.bucket}/"
    if settings.endpoint_url:
        templates["custom_model_nim_aws_endpoint_url"] = settings.endpoint_url
    templates["custom_model_nim_aws_region"] = settings.region
    allowlist = CommentedSeq(settings.allowlist)
    templates["custom_model_nim_image_url_allowlist"] = allowlist
    templates.yaml_add_eol_comment(ALLOWLIST_COMMENT, "custom_model_nim_image_url_allowlist")
    values = CommentedMap()
    values["core"] = CommentedMap({"config_env_vars": CommentedMap({"SERVE_NIM_MODEL_FROM_LOCAL_ASSETS": True})})
    values[SECTION] = templates
    return values


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def _dump(document) -> str:
    buffer = io.StringIO()
    _yaml().dump(document, buffer)
    return buffer.getvalue()


def values_yaml(settings: DataRobotSettings) -> str:
    return _dump(build_values(settings))


def _merge(target: CommentedMap, source: CommentedMap) -> None:
    for key, value in source.items():
        if isinstance(value, CommentedMap) and isinstance(target.get(key), CommentedMap):
            _merge(target[key], value)
        else:
            target[key] = value
            comment = source.ca.items.get(key)
            if comment:
                target.ca.items[key] = comment


def _backup(path: Path) -> Path:
    """Copy ``path`` to a backup name no other backup has (microseconds, then a counter; created exclusively,
    so two merges in the same instant never overwrite each other's), complete and synced before it is named."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now % 1 * 1_000_000):06d}"
    for attempt in range(1000):
        backup = path.with_name(f"{path.name}.bak-{stamp}{f'-{attempt}' if attempt else ''}")
        try:
            with open(backup, "xb") as writer, open(path, "rb") as reader:
                shutil.copyfileobj(reader, writer)
                writer.flush()
                os.fsync(writer.fileno())
        except FileExistsError:
            continue
        shutil.copystat(path, backup)
        return backup
    raise FileExistsError(errno.EEXIST, f"no free backup name for {path}")


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`nimrunbook.localdisk.atomic_writer`), keeping its permissions."""
    with atomic_writer(path) as handle:
        if path.exists():
            shutil.copymode(path, handle.name)
        handle.write(text.encode("utf-8"))


def merge_values(
    values_file: str | Path, settings: DataRobotSettings, *, write: bool = False
) -> tuple[str, Path | None]:
    """Merge our keys into an existing values file, keeping its comments, order and other keys.

    Returns the unified diff and, when ``write``, the backup written first. Writing holds the file's lock
    (:func:`nimrunbook.locks.file_lock`) from reading to renaming: a second merge is refused while the first
    runs, instead of both reading the same original and one of them losing the other's change.
    """
    path = Path(values_file)
    with file_lock(path, "merging DataRobot values into") if write else contextlib.nullcontext():
        original = read_text(path, "Helm values file", allow_empty=True) if path.exists() else ""
        try:
            document = _yaml().load(original) if original.strip() else CommentedMap()
        except YAMLError as exc:
            raise InputError(
                f"{path} is not YAML ({' '.join(str(exc).split())[:200]}).",
                hint="Give the DataRobot Helm values file (values.yaml).",
            ) from exc
        if not isinstance(document, CommentedMap):
            raise InputError(
                f"{path} is not a YAML mapping.", hint="Give the DataRobot Helm values file (values.yaml)."
            )
        _merge(document, build_values(settings))
        merged = _dump(document)
        diff = "".join(
            difflib.unified_diff(
                original.splitlines(True), merged.splitlines(True), f"{path} (current)", f"{path} (merged)"
            )
        )
        backup = None
        if write and diff:
            if path.exists():
                backup = _backup(path)
            _replace(path, merged)
    return diff, backup


_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass
class Problem:
    field: str
    message: str


def _bucket_problems(bucket: str) -> list[Problem]:
    if not _BUCKET_RE.match(bucket or "") or ".." in bucket or bucket.startswith("xn--") or bucket.endswith("-s3alias"):
        return [
            Problem(
                "bucket",
                f"{bucket!r} is not a valid bucket name: 3-63 lower-case letters, digits, dots and "
                "hyphens, starting and ending with a letter or digit.",
            )
        ]
    try:
        ipaddress.ip_address(bucket)
        return [Problem("bucket", f"{bucket!r} looks like an IP address, which S3 does not allow as a bucket name.")]
    except ValueError:
        pass
    if "." in bucket:
        return [
            Problem(
                "bucket",
                f"{bucket!r} contains dots: with virtual-hosted addressing its host name "
                f"({bucket}.<domain>) is not covered by a *.<domain> certificate. Use hyphens.",
            )
        ]
    return []


def validate(
    settings: DataRobotSettings,
    *,
    mirrored: Sequence[dict] = (),
    published_images: Sequence[str] | None = None,
) -> list[Problem]:
    """Every problem with the values, each with its own message (empty when all is well).

    ``mirrored`` holds the run's image copies (``source``, ``destination``);
    ``published_images`` the source refs whose profiles the run published.
    """
    problems: list[Problem] = []
    registry = settings.internal_registry.strip().rstrip("/")
    if not registry or "://" in registry:
        problems.append(
            Problem(
                "internal_registry",
                f"{settings.internal_registry!r} must be a registry host[:port][/prefix], without a scheme.",
            )
        )
    for copy in mirrored:
        if not copy["destination"].startswith(registry + "/"):
            problems.append(
                Problem(
                    "internal_registry",
                    f"{copy['source']} was mirrored to {copy['destination']}, which is not "
                    f"in {registry}: DataRobot would pull from the wrong registry.",
                )
            )
    problems += _bucket_problems(settings.bucket)
    if settings.endpoint_url and urlparse(settings.endpoint_url).scheme != "https":
        problems.append(
            Problem("endpoint_url", f"{settings.endpoint_url} is not HTTPS; DataRobot requires an HTTPS endpoint.")
        )
    if not settings.region:
        problems.append(Problem("region", "No region set; use the bucket's region (MinIO's default is us-east-1)."))
    if not settings.allowlist:
        problems.append(Problem("allowlist", "The image allowlist is empty: the Templates UI would offer no NIM."))
    mirrored_sources = {c["source"] for c in mirrored}
    for ref in settings.allowlist:
        try:
            ImageRef.parse(ref)
        except InputError as error:
            problems.append(Problem("allowlist", error.message))
            continue
        if mirrored and ref not in mirrored_sources:
            problems.append(
                Problem(
                    "allowlist", f"{ref} is allowlisted but was not mirrored: its pods would end in ImagePullBackOff."
                )
            )
        if published_images is not None and ref not in published_images:
            problems.append(
                Problem(
                    "allowlist", f"{ref} is allowlisted but its profiles were not published to s3://{settings.bucket}/."
                )
            )
    return problems


def raise_for_problems(problems: list[Problem]) -> None:
    if problems:
        raise problems_error(
            InputError,
            "The DataRobot values are not right",
            [f"{p.field}: {p.message}" for p in problems],
            hint="Fix the parameters named above and build the values again.",
        )
