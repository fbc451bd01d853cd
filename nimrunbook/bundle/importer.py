"""Import a verified bundle inside the secure zone: images to the registry, profiles to the bucket.

Refuses a bundle that does not verify. Reuses the images and store modules,
so it resumes the same way they do (present digests and objects are skipped),
and verifies the bucket and the registry against the bundle's manifest at the end.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nimrunbook.bundle import layout
from nimrunbook.bundle.parts import reassemble
from nimrunbook.bundle.verify import VerificationReport, verify
from nimrunbook.errors import VerificationError
from nimrunbook.images import ImageCopy, RegistryAccess
from nimrunbook.images import import_ as import_images
from nimrunbook.progress import SILENT, Reporter
from nimrunbook.store import S3Settings, TransferResult, publish
from nimrunbook.store import verify as verify_bucket
from nimrunbook.store.plan import PlannedObject
from nimrunbook.store.upload import require_verified

log = logging.getLogger(__name__)


@dataclass
class ImportResult:
    verification: VerificationReport
    images: list[ImageCopy] = field(default_factory=list)
    upload: TransferResult | None = None
    bucket_check: pd.DataFrame | None = None


def import_(
    path: str | Path,
    *,
    registry: str | None,
    settings: S3Settings | None,
    access: RegistryAccess | None = None,
    public_key: str | Path | None = None,
    staging_dir: str | Path | None = None,
    workers: int = 8,
    record_dir: str | Path | None = None,
    progress: Reporter = SILENT,
) -> ImportResult:
    """Verify, then import; raises :class:`VerificationError` before touching anything if the bundle is bad."""
    root = Path(path)
    report = verify(root, public_key=public_key, record_dir=record_dir, progress=progress)
    if not report.ok:
        report.raise_for_failure()
    document = json.loads((root / layout.MANIFEST).read_text())
    result = ImportResult(report)
    if document["images"] and registry:
        result.images = import_images(root / layout.IMAGES_DIR, registry, access=access, workers=2, progress=progress)
    if document["objects"] and settings is not None:
        with tempfile.TemporaryDirectory(dir=staging_dir, prefix="nimrunbook-staging-") as staging:
            objects = []
            for entry in document["objects"]:
                source = root / entry["path"]
                if entry["parts"]:
                    source = Path(staging) / entry["key"]
                    if reassemble(root, entry, source) != entry["sha256"]:
                        raise VerificationError(
                            f"The parts of {entry['key']} do not join into the recorded file.",
                            hint="Copy its parts again from the source media.",
                        )
                objects.append(
                    PlannedObject(entry["key"], entry["uri"], source, entry["size"], entry["profiles"], entry["sha256"])
                )
            result.upload = publish(objects, settings, workers=workers, progress=progress)
        result.upload.raise_for_failures()
        result.bucket_check = verify_bucket(objects, settings, workers=workers, progress=progress)
        require_verified(result.bucket_check)
    log.info(
        "bundle %s imported: %d images, %s",
        report.bundle_id,
        len(result.images),
        result.upload.counts() if result.upload else "no profiles",
    )
    return result
