"""The model profiles an image offers: from its listing, its manifest, or both."""

from __future__ import annotations

import pandas as pd

from nimrunbook.profiles.listing import LISTING_COLUMNS, parse_listing
from nimrunbook.profiles.manifest import Manifest, ManifestFile, ManifestProfile, parse_manifest
from nimrunbook.profiles.names import NameFields, decode_name

__all__ = [
    "LISTING_COLUMNS",
    "Manifest",
    "ManifestFile",
    "ManifestProfile",
    "NameFields",
    "decode_name",
    "enrich",
    "parse_listing",
    "parse_manifest",
]


def enrich(listing: pd.DataFrame, manifest: Manifest | None) -> pd.DataFrame:
    """Add what only the manifest knows (PCI device, GPU count, file count) to a listing.

    The listing's rows and order are kept; manifest tags fill fields the name
    left empty and always win for ``gpu_device`` (NIM matches hardware by it).
    """
    frame = listing.copy()
    if manifest is None:
        return frame
    by_id = {p.id: p for p in manifest.profiles}
    devices, gpus_needed, files = [], [], []
    for _, row in frame.iterrows():
        profile = by_id.get(row["id"])
        devices.append(profile.gpu_device if profile and profile.gpu_device else row.get("gpu_device"))
        gpus_needed.append(profile.tag("number_of_gpus") if profile else None)
        files.append(len(profile.files) if profile else None)
    frame["gpu_device"] = devices
    frame["number_of_gpus"] = gpus_needed
    frame["files"] = pd.array(files, dtype="Int64")
    frame["in_manifest"] = [row_id in by_id for row_id in frame["id"]]
    return frame
