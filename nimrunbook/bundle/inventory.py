"""What the secure side already has: bucket objects with checksums, registry digests, and the nimrunbook it runs.

Run inside, carried out on the next trip, and given to ``create(have=...)`` so
the next bundle carries only what is missing: the wheelhouse too, when the
inside runs the same nimrunbook version, and otherwise it is made for the
Python and platform the inside's nimrunbook runs on.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from nimrunbook import __version__
from nimrunbook.bundle.wheel_target import host_platform
from nimrunbook.errors import InputError
from nimrunbook.images import RegistryAccess
from nimrunbook.images.backend import BackendName, open_backend
from nimrunbook.images.refs import ImageRef
from nimrunbook.store import S3Settings, make_client
from nimrunbook.store.client import S3_FAILURES, list_keys, stat_object, storage_error
from nimrunbook.store.keys import looks_like_nim_key

FORMAT = "nimrunbook.inventory"


def inventory(
    settings: S3Settings | None = None,
    *,
    registry: str | None = None,
    images: Sequence[str] = (),
    access: RegistryAccess | None = None,
    backend: BackendName = "auto",
    workers: int = 8,
) -> dict:
    """A JSON-ready inventory: ``objects`` (key -> size, sha256) and ``images`` (source ref -> digest inside)."""
    document: dict = {
        "format": FORMAT,
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bucket": settings.bucket if settings else None,
        "registry": registry,
        "objects": {},
        "images": {},
        "nimrunbook": {
            "version": __version__,
            "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
            "platform": host_platform(),
        },
    }
    if settings is not None:
        client = make_client(settings, max_connections=workers * 2)
        keys = [key for key in list_keys(client, settings) if looks_like_nim_key(key)]

        def stat(key: str) -> tuple[int, str | None] | None:
            try:
                return stat_object(client, settings.bucket, key)
            except S3_FAILURES as exc:
                raise storage_error(exc, settings, f"reading the size and sha256 of {key}") from exc

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for key, remote in zip(keys, pool.map(stat, keys), strict=True):
                if remote is not None:  # deleted since the listing
                    document["objects"][key] = {"size": remote[0], "sha256": remote[1]}
    if registry and images:
        engine = open_backend(backend, access or RegistryAccess())
        for ref in images:
            digest = engine.digest(ImageRef.parse(ref).moved_to(registry))
            if digest:
                document["images"][ref] = digest
    return document


def _tool_facts_ok(facts: object) -> bool:
    """The inside's nimrunbook (version, python, platform): absent in older inventories, else text or null."""
    return facts is None or (isinstance(facts, dict) and all(isinstance(v, str | None) for v in facts.values()))


def parse_inventory(text: str, source: str) -> dict:
    """An inventory file carried out of the air gap, checked before ``create(have=...)`` trusts it.

    It decides what the next bundle leaves out, so a malformed one is refused rather than half-used.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        document = None
    objects = document.get("objects") if isinstance(document, dict) else None
    images = document.get("images") if isinstance(document, dict) else None
    well_formed = (
        isinstance(document, dict)
        and document.get("format") == FORMAT
        and isinstance(objects, dict)
        and isinstance(images, dict)
        and all(
            isinstance(v, dict) and type(v.get("size")) is int and isinstance(v.get("sha256"), str | None)
            for v in objects.values()
        )
        and all(isinstance(k, str) and isinstance(v, str) for k, v in images.items())
        and _tool_facts_ok(document.get("nimrunbook"))
    )
    if not well_formed:
        raise InputError(
            f"{source} is not an inventory written by `nimrunbook bundle inventory` ({FORMAT}, with objects and images).",
            hint="Run `nimrunbook bundle inventory -o inventory.json` inside and carry that file out unchanged.",
        )
    return document
