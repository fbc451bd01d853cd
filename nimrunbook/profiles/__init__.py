"""The model profiles an image offers: from its listing, its manifest, or both."""

from __future__ import annotations

import pandas as pd

from nimrunbook.profiles.listing import LISTING_COLUMNS, parse_listing
from nimrunbook.profiles.manifest import Manifest, ManifestFile, ManifestProfile, parse_manifest
from nimrunbook.profiles.names import NameFields, decode_name, model_parameters_b

__all__ = [
    "LISTING_COLUMNS",
    "Manifest",
    "ManifestFile",
    "ManifestProfile",
    "NameFields",
    "decode_name",
    "enrich",
    "model_parameters_b",
    "parse_listing",
    "parse_manifest",
]


# Columns the manifest always decides (NIM matches hardware by them), and those it only fills in.
_MANIFEST_WINS = ("gpu_device", "generic", "ampere_plus")
_MANIFEST_FILLS = ("engine", "gpu", "precision", "tp", "pp", "lora")


def _missing(value) -> bool:
    return value is None or (not isinstance(value, (list, dict, str)) and pd.isna(value))


def enrich(listing: pd.DataFrame, manifest: Manifest | None) -> pd.DataFrame:
    """Add what only the manifest knows (PCI device, GPU count, file count) to a listing.

    The listing's rows and order are kept; manifest tags decide ``gpu_device``,
    ``generic`` and ``ampere_plus`` (NIM matches hardware by them) and fill the
    fields the name left empty.
    """
    frame = listing.copy()
    for column in ("number_of_gpus", "product_name_regex"):
        if column not in frame:
            frame[column] = None
    if manifest is None:
        return frame
    by_id = {p.id: p for p in manifest.profiles}
    rows = []
    for _, row in frame.iterrows():
        record = row.to_dict()
        profile = by_id.get(row["id"])
        if profile is not None:
            tags = profile.fields.as_dict()
            for column in _MANIFEST_WINS:
                if not _missing(tags.get(column)):
                    record[column] = tags[column]
            for column in _MANIFEST_FILLS:
                if _missing(record.get(column)) and not _missing(tags.get(column)):
                    record[column] = tags[column]
            record["number_of_gpus"] = profile.number_of_gpus
            record["product_name_regex"] = profile.tag("product_name_regex")
        record["files"] = len(profile.files) if profile else None
        record["in_manifest"] = profile is not None
        rows.append(record)
    enriched = pd.DataFrame(rows, columns=[*frame.columns, "files", "in_manifest"])
    for column in ("tp", "pp", "number_of_gpus", "files"):
        enriched[column] = enriched[column].astype("Int64")
    return enriched
