"""Moving to another NIM tag (the guide's §5): what changed, and the smallest transfer that covers it."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import pandas as pd

from nimrunbook.profiles import Manifest
from nimrunbook.store.keys import object_key

UI_REMINDER = (
    "After the new image and its profiles are in place, update the NIM Version in DataRobot "
    "(Image Registry > Import from NVIDIA NGC). If you skip this step, the pod fails with ImagePullBackOff."
)
UNLISTED_WARNING = (
    "{image} is not in DataRobot's list of supported NIM containers: unlisted containers are not supported in "
    "release 11.1 because their template metadata is missing."
)


def compare_manifests(old: Manifest, new: Manifest) -> pd.DataFrame:
    """One row per profile of either tag: added, removed, changed (files differ) or unchanged."""
    old_by_id, new_by_id = {p.id: p for p in old.profiles}, {p.id: p for p in new.profiles}
    rows = []
    for profile_id in list(old_by_id) + [i for i in new_by_id if i not in old_by_id]:
        before, after = old_by_id.get(profile_id), new_by_id.get(profile_id)
        old_uris = {f.uri for f in before.files} if before else set()
        new_uris = {f.uri for f in after.files} if after else set()
        change = (
            "added"
            if before is None
            else "removed"
            if after is None
            else "changed"
            if old_uris != new_uris
            else "unchanged"
        )
        rows.append(
            {
                "id": profile_id,
                "name": (after or before).name,
                "change": change,
                "files_added": len(new_uris - old_uris),
                "files_removed": len(old_uris - new_uris),
            }
        )
    return pd.DataFrame(rows, columns=["id", "name", "change", "files_added", "files_removed"])


@dataclass
class UpdatePlan:
    image: str
    changes: pd.DataFrame
    keys_to_transfer: list[str]
    keys_already_there: list[str]
    notes: list[str] = field(default_factory=list)


def plan_update(
    image: str,
    old: Manifest,
    new: Manifest,
    selected: Sequence[str],
    bucket_keys: Collection[str],
    *,
    supported_images: Collection[str] | None = None,
) -> UpdatePlan:
    """The new image plus only the objects of the selected profiles that the bucket lacks."""
    wanted = []
    for profile_id in selected:
        profile = new.profile(profile_id)
        if profile is not None:
            wanted += [object_key(f.uri) for f in profile.files if f.uri]
    wanted = list(dict.fromkeys(wanted))
    present = set(bucket_keys)
    notes = [UI_REMINDER]
    repository = image.rsplit(":", 1)[0]
    if supported_images is not None and repository not in {s.rsplit(":", 1)[0] for s in supported_images}:
        notes.append(UNLISTED_WARNING.format(image=image))
    return UpdatePlan(
        image,
        compare_manifests(old, new),
        [k for k in wanted if k not in present],
        [k for k in wanted if k in present],
        notes,
    )
