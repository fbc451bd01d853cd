"""Steps 02-05, outside the air gap: mirror images, download profiles, publish them, or bundle everything."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from nimrunbook import bundle
from nimrunbook.bundle.parts import FAT32_PART_SIZE
from nimrunbook.bundle.signing import fingerprint, public_key_of
from nimrunbook.bundle.wheelhouse import wheelhouse_request, wheelhouse_summary
from nimrunbook.engine import docker_client
from nimrunbook.hashing import HashJournal
from nimrunbook.images import RegistryAccess, mirror
from nimrunbook.nim import download_profiles
from nimrunbook.runbook.display import show_record, show_table
from nimrunbook.runbook.inputs import secret_from, slug
from nimrunbook.runbook.planning import load_plan_facts, manifest_of
from nimrunbook.runbook.session import Step
from nimrunbook.store import S3Settings, plan_publish, process_to_directory, publish, run_preflight, verify
from nimrunbook.store.upload import require_verified

log = logging.getLogger(__name__)


def mirror_images(
    step: Step, internal_registry: str, access: RegistryAccess, *, backend: str = "auto", workers: int = 2
) -> pd.DataFrame:
    images, _ = load_plan_facts(step)
    copies = mirror(
        list(images), internal_registry, access=access, backend=backend, workers=workers, progress=step.progress
    )
    frame = pd.DataFrame([c.as_dict() for c in copies])
    show_record(
        "mirror",
        {"images": [c.as_dict() for c in copies]},
        frame[["source", "destination", "digest", "status"]],
        "Mirrored images (digests checked at both ends)",
    )
    step.save(mirror={"registry": internal_registry, "images": [c.as_dict() for c in copies]})
    return frame


def download(
    step: Step,
    cache_dir: str,
    *,
    ngc_api_key_env: str = "NGC_API_KEY",
    network_mode: str = "host",
    container_environment: Mapping[str, str] | None = None,
    docker_host: str = "",
    download_size_gb: float = 0,
) -> pd.DataFrame:
    """download-to-cache for every image's selected profiles, into one cache.

    ``download_size_gb`` is what the cache holds when every download is done; each image's free-space check
    needs only what is missing of it. 0: each image's download is estimated from its model's parameter count.
    """
    _, selection = load_plan_facts(step)
    client = docker_client(docker_host or None)
    summaries = []
    for ref, entries in selection.items():
        ids = [e["id"] for e in entries]
        if not ids:
            continue
        summary = download_profiles(
            client,
            ref,
            ids,
            cache_dir,
            ngc_api_key=secret_from(ngc_api_key_env),
            manifest=manifest_of(step, ref),
            network_mode=network_mode,
            environment=dict(container_environment or {}),
            expected_bytes=int(download_size_gb * 1e9) or None,
            progress=step.progress,
        )
        summaries.append(summary.as_dict())
    frame = pd.DataFrame(summaries, columns=["image", "profiles", "files", "bytes", "seconds"])
    frame["profiles"] = frame["profiles"].map(len)
    show_record(
        "download",
        {"downloads": summaries, "cache_dir": str(Path(cache_dir).resolve())},
        frame,
        "Downloaded into the NIM cache",
    )
    step.save(download={"cache_dir": str(Path(cache_dir).resolve()), "summaries": summaries})
    return frame


def _plans(step: Step, cache_dir: str):
    _, selection = load_plan_facts(step)
    for ref, entries in selection.items():
        if entries:
            yield ref, entries, plan_publish(manifest_of(step, ref), cache_dir, [e["id"] for e in entries], image=ref)


def publish_profiles(
    step: Step, cache_dir: str, settings: S3Settings, *, workers: int = 8, preflight: bool = True
) -> pd.DataFrame:
    """Process each image's profiles into the NIM layout (hard links), upload them in parallel, verify the bucket."""
    if preflight:
        report = run_preflight(settings)
        show_table(report.frame(), "Object store preflight")
        report.raise_for_failures()
    tables, published = [], {}
    for ref, entries, plan in _plans(step, cache_dir):
        directory = step.run_dir / "profiles" / slug(ref)
        # digests by file identity: shared by the cache, its hard links and the later steps
        journal = HashJournal.of_cache(cache_dir)
        process_to_directory(
            plan,
            directory,
            image=ref,
            profile_names={e["id"]: e["name"] for e in entries},
            journal=journal,
            progress=step.progress,
        )
        result = publish(plan.objects, settings, workers=workers, journal=journal, progress=step.progress)
        table = result.table.assign(image=ref)
        tables.append(table)
        result.raise_for_failures()
        check = verify(plan.objects, settings, workers=workers, progress=step.progress)
        require_verified(check)
        published[ref] = {
            "directory": str(directory),
            "objects": len(plan.objects),
            "bytes": plan.total_bytes,
            **result.counts(),
            "server_checksum": result.server_checks(),  # what the store's own SHA256 checksum said, per object
            "aborted_uploads": result.aborted,
        }
    frame = pd.concat(tables) if tables else pd.DataFrame(columns=["image", "key", "size", "status", "detail"])
    show_record(
        "publish",
        {"bucket": settings.record(), "published": published},
        frame[["image", "key", "size", "status"]],
        f"Published to s3://{settings.bucket}/ (every object verified)",
    )
    step.save(publish={"settings": settings.record(), "warnings": settings.warnings, "images": published})
    return frame


def create_bundle(
    step: Step,
    bundle_dir: str,
    cache_dir: str,
    access: RegistryAccess,
    *,
    inside: Mapping | None = None,
    sign_key: str = "",
    part_size: int = 0,
    fat32: bool = False,
    have_file: str = "",
    backend: str = "auto",
    wheelhouse: str = "auto",
    inside_python: str = "",
    inside_platform: str = "",
    inside_debian_release: str = "",
) -> bundle.BundleResult:
    """Everything the inside needs, on the media: images, profiles, the tool (a wheelhouse), manifest, checksums,
    signature."""
    import json

    images, selection = load_plan_facts(step)
    plans = list(_plans(step, cache_dir))
    merged = plans[0][2] if plans else None
    for _, _, plan in plans[1:]:  # one bundle for every image: objects shared between images appear once
        known = {o.key for o in merged.objects}
        merged.objects += [o for o in plan.objects if o.key not in known]
        merged.profiles += plan.profiles
    names = {e["id"]: e["name"] for entries in selection.values() for e in entries}
    have = json.loads(Path(have_file).read_text()) if have_file else None
    inside_settings = {**(inside or {}), "allowlist": list(images), "selection": selection}
    result = bundle.create(
        bundle_dir,
        images=list(images),
        plan=merged,
        profile_names=names,
        inside=inside_settings,
        have=have,
        sign_key=sign_key or None,
        part_size=FAT32_PART_SIZE if fat32 else (part_size or None),
        access=access,
        image_backend=backend,
        journal=HashJournal.of_cache(cache_dir),
        progress=step.progress,
        wheelhouse=wheelhouse_request(
            wheelhouse, inside_python or None, inside_platform or None, have, inside_debian_release or None
        ),
    )
    key = fingerprint(public_key_of(sign_key)) if sign_key and result.signed else None
    frame = pd.DataFrame(
        [
            {
                "bundle": str(result.path),
                "files": result.files,
                "bytes": result.bytes,
                "signed": f"with key {key}" if key else "NO (unsigned)",
                "objects written": result.objects_written,
                "objects already there": result.objects_skipped,
                "images left out": len(result.left_out["images"]),
                "objects left out": len(result.left_out["objects"]),
                "wheelhouse": wheelhouse_summary(result.wheelhouse, result.left_out.get("wheelhouse")),
            }
        ]
    )
    show_record(
        "bundle",
        {"path": str(result.path), "signed": result.signed, "key_fingerprint": key, "left_out": result.left_out},
        frame,
        "Bundle written",
    )
    step.save(
        bundle={
            "path": str(result.path),
            "files": result.files,
            "bytes": result.bytes,
            "signed": result.signed,
            "key_fingerprint": key,
            "left_out": result.left_out,
            "wheelhouse": result.wheelhouse,
        }
    )
    return result
