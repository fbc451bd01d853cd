"""Step 06, inside the air gap: verify the bundle, keep the record, import images and profiles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nimrunbook import bundle
from nimrunbook.bundle.contents import read_manifest
from nimrunbook.bundle.signing import fingerprint, read_public_key
from nimrunbook.images import RegistryAccess
from nimrunbook.runbook.display import show_record, show_text
from nimrunbook.runbook.session import Step
from nimrunbook.store import S3Settings


def verify_bundle(
    step: Step, bundle_dir: str, public_key: str = "", allow_unsigned: bool = False
) -> bundle.VerificationReport:
    """Verify and record; a failed bundle stops the notebook here, with the record written."""
    report = bundle.verify(
        bundle_dir,
        public_key=public_key or None,
        allow_unsigned=allow_unsigned,
        record_dir=step.run_dir / "verification",
        progress=step.progress,
    )
    frame = pd.DataFrame([c.__dict__ for c in report.checks], columns=["path", "status", "detail"])
    frame = pd.concat([frame[frame["status"] != "ok"], frame[frame["status"] == "ok"]])  # problems first
    key = fingerprint(read_public_key(public_key)) if public_key else None
    signature = f"{report.signature} with key {key}" if key and report.signature == "verified" else report.signature
    show_record(
        "verification",
        {**report.as_dict(), "key_fingerprint": key},
        frame,
        f"{report.headline()}; signature {signature}; {len(report.checks)} files checked; bundle id {report.bundle_id}",
    )
    show_text(
        f"Checked {report.checked_at} on {report.host} by {report.user} with {report.tool}.\n"
        f"Record: {report.record_json} and {report.record_text}",
        "Verification record",
    )
    step.save(
        verification={
            "ok": report.ok,
            "bundle_id": report.bundle_id,
            "signature": report.signature,
            "key_fingerprint": key,
            "unsigned": report.unsigned,
            "counts": report.counts(),
            "record": report.record_json,
        }
    )
    report.raise_for_failure()
    return report


def bundle_facts(bundle_dir: str) -> dict:
    """What the outside recorded for the inside (bundle.json, read confined): images, profiles, settings."""
    return read_manifest(bundle_dir)


def import_bundle(
    step: Step,
    bundle_dir: str,
    internal_registry: str,
    settings: S3Settings,
    access: RegistryAccess,
    *,
    public_key: str = "",
    allow_unsigned: bool = False,
    staging_dir: str = "",
    workers: int = 8,
) -> bundle.ImportResult:
    result = bundle.import_(
        bundle_dir,
        registry=internal_registry,
        settings=settings,
        access=access,
        public_key=public_key or None,
        allow_unsigned=allow_unsigned,
        staging_dir=staging_dir or None,
        workers=workers,
        record_dir=step.run_dir / "verification",
        progress=step.progress,
    )
    images = pd.DataFrame([i.as_dict() for i in result.images], columns=["source", "destination", "digest", "status"])
    show_record(
        "import-images", {"images": [i.as_dict() for i in result.images]}, images, "Images in the internal registry"
    )
    if result.upload is not None:
        show_record(
            "import-profiles",
            {"counts": result.upload.counts(), "server_checksum": result.upload.server_checks()},
            result.upload.table[["key", "size", "status"]],
            f"Profiles in s3://{settings.bucket}/ (verified against the bundle)",
        )
    facts = result.verification.verified.manifest
    step.save(
        mirror={"registry": internal_registry, "images": [i.as_dict() for i in result.images]},
        publish={
            "settings": settings.record(),
            "images": {ref: {"from_bundle": True} for ref in facts["inside"].get("allowlist", [])},
        },
        bundle={"path": str(Path(bundle_dir).resolve()), "bundle_id": result.verification.bundle_id},
        selection=facts["inside"].get("selection", {}),
    )
    return result
