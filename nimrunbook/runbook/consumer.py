"""Step 09, inside: the consumer's side. The NIM itself reads what this run published or imported.

Every step before proves our own view (checksums, verification against our manifest). This one runs the thing
DataRobot runs: the NIM image pulled from the internal registry, its own ``download-to-cache`` reading
``s3://<bucket>/`` with the read-only key and no NGC key (:mod:`nimrunbook.smoke`). Its inputs are the run
record's: the images 02 mirrored or 06 imported (and where to), the profiles 01 selected (or the bundle carried),
the digests recorded when they were published, the bucket, and the read-only key's profile step 07 checked.
"""

from __future__ import annotations

from collections.abc import Sequence

from nimrunbook.engine import docker_client
from nimrunbook.errors import InputError
from nimrunbook.images import RegistryAccess
from nimrunbook.runbook.display import show_record, show_text
from nimrunbook.runbook.inputs import recorded_s3_settings
from nimrunbook.runbook.session import Step
from nimrunbook.smoke import SmokeResult, load_published, smoke_test
from nimrunbook.store import S3Settings

SHOWN = ["name", "profile", "pulled", "fetched", "identical", "files", "bytes", "cause", "detail", "fix"]


def readonly_settings(
    step: Step,
    bucket: str = "",
    endpoint_url: str = "",
    region: str = "",
    ca_bundle: str = "",
    insecure: bool = False,
    aws_profile: str = "",
) -> S3Settings:
    """The object store as given, else as recorded; the read-only key: ``aws_profile``, else the profile step 07
    checked, else the environment's keys."""
    facts = step.facts()
    checked = ((facts.get("credentials") or {}).get("settings") or {}).get("profile") or ""
    return recorded_s3_settings(facts, bucket, endpoint_url, region, ca_bundle, insecure, aws_profile or checked)


def smoke_test_images(
    step: Step,
    settings: S3Settings,
    access: RegistryAccess,
    *,
    images: Sequence[str] = (),
    network: str = "isolated",
    scratch_dir: str = "",
    timeout: float = 0.0,
    docker_host: str = "",
) -> dict[str, SmokeResult]:
    """Smoke-test each image this run mirrored or imported (or those of ``images``, by source ref) with its
    selected profiles; shows and records the per-profile verdict, then fails if any profile failed."""
    facts = step.facts()
    mirrored = (facts.get("mirror") or {}).get("images") or []
    if not mirrored:
        raise InputError(
            f"The run directory {step.run_dir} records no image in the internal registry.",
            hint="Run 06_verify_and_import_bundle (inside) or 02_mirror_images (online) with the same run_dir first.",
        )
    unknown = sorted(set(images) - {copy["source"] for copy in mirrored})
    if unknown:
        raise InputError(
            f"This run did not mirror or import {', '.join(unknown)}.",
            hint=f"Name images by the refs they were mirrored from: {', '.join(c['source'] for c in mirrored)}.",
        )
    published = load_published(step.run_dir)
    selection = facts.get("selection") or {}
    client = docker_client(docker_host or None)
    results: dict[str, SmokeResult] = {}
    for copy in [c for c in mirrored if not images or c["source"] in images]:
        ids = [entry["id"] for entry in selection.get(copy["source"]) or []]
        if not ids:
            show_text(f"{copy['source']}: no profiles were selected for it, so there is nothing to read.", "Skipped")
            continue
        result = smoke_test(
            client,
            copy["destination"],
            ids,
            published,
            settings,
            access=access,
            scratch_dir=scratch_dir or None,
            network=network,
            timeout=timeout or None,
            progress=step.progress,
        )
        results[copy["source"]] = result
        frame = result.frame().assign(profile=lambda f: f["profile"].str.slice(0, 12))
        show_record("smoke-test", result.as_dict(), frame[SHOWN], result.summary())
    step.save(
        smoke_test={
            "ok": bool(results) and all(r.ok for r in results.values()),
            "images": {source: result.as_dict() for source, result in results.items()},
        }
    )
    for result in results.values():
        result.raise_for_failure()
    return results
