"""The publish plan: which cache file becomes which object, for the selected profiles.

Built from the image's manifest (the source of truth for file lists and keys)
and the NIM cache that ``download-to-cache`` filled. Every file is resolved
through its snapshot symlink to the blob that holds the bytes; a missing or
broken link is an error that names the files and the download that fetches
them, because a missing object only shows later, inside the air gap, as a NIM
that cannot start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from nimrunbook.errors import CacheIncompleteError, InputError
from nimrunbook.hashing import HashJournal, sha256_file
from nimrunbook.localdisk import NimCache
from nimrunbook.profiles import Manifest
from nimrunbook.store.keys import NgcUri, object_key


@dataclass
class PlannedObject:
    key: str
    uri: str
    source: Path  # the blob holding the bytes (snapshot link resolved)
    size: int
    profiles: list[str] = field(default_factory=list)
    sha256: str | None = None  # known once hashed, or recorded in a manifest

    def digest(self, journal: HashJournal | None = None) -> str | None:
        """The sha256 of the bytes at :attr:`source` as far as the journal knows; sets :attr:`sha256`.

        Not yet known: taken from the journal, else hashed (and journalled).
        Recorded (read back from a manifest): confirmed by the journal, and the
        file hashed again only when its identity changed since; None when its
        bytes no longer have the recorded digest. The journal is a cache: what
        leaves for a bucket is hashed again as it is sent (:mod:`nimrunbook.store.send`).
        """
        if self.sha256 is None:
            self.sha256 = journal.sha256(self.source) if journal else sha256_file(self.source)
            return self.sha256
        if journal is None or journal.lookup(self.source) == self.sha256:
            return self.sha256
        actual = journal.sha256(self.source)  # identity changed: hash again, once
        return self.sha256 if actual == self.sha256 else None


@dataclass
class PublishPlan:
    profiles: list[str]
    objects: list[PlannedObject]

    @property
    def total_bytes(self) -> int:
        return sum(o.size for o in self.objects)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"key": o.key, "size": o.size, "profiles": len(o.profiles), "source": str(o.source), "sha256": o.sha256}
                for o in self.objects
            ],
            columns=["key", "size", "profiles", "source", "sha256"],
        )


def cached_blob(cache: NimCache, uri: str) -> Path | None:
    """The blob holding a manifest URI's bytes in the NIM cache; None when absent or a broken link."""
    parsed = NgcUri.parse(uri)
    if parsed is None or parsed.file is None:
        return None
    return cache.blob_of(parsed.model_dirs(), parsed.tag, parsed.file)


def plan_publish(
    manifest: Manifest, cache_dir: str | Path, profile_ids: Sequence[str], image: str | None = None
) -> PublishPlan:
    """One object per distinct manifest URI of the selected profiles; shared files appear once."""
    cache = NimCache(cache_dir)
    ids = list(dict.fromkeys(str(i) for i in profile_ids))
    unknown = [i for i in ids if manifest.profile(i) is None]
    if unknown:
        raise InputError(
            f"The manifest has no profile {', '.join(unknown)}.",
            hint="Use ids from the same image's listing or manifest (nimrunbook profiles plan --format ids).",
        )
    objects: dict[str, PlannedObject] = {}
    missing: list[tuple[str, str]] = []
    for profile_id in ids:
        for file in manifest.profile(profile_id).files:
            if not file.uri:
                raise InputError(
                    f"Profile {profile_id} lists {file.path} without a source URI; cannot place it in the bucket."
                )
            key = object_key(file.uri)
            if key in objects:
                objects[key].profiles.append(profile_id)
                continue
            blob = cached_blob(cache, file.uri)
            if blob is None:
                missing.append((profile_id, file.uri))
                continue
            objects[key] = PlannedObject(key, file.uri, blob, blob.stat().st_size, [profile_id])
    if missing:
        wanting = sorted({pid for pid, _ in missing})
        listed = "\n".join(f"  {uri} (profile {pid[:12]})" for pid, uri in missing[:20])
        more = f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else ""
        raise CacheIncompleteError(
            f"{len(missing)} files of the selected profiles are missing from the NIM cache {cache.root} "
            f"(not downloaded, or a broken link):\n{listed}{more}\n",
            hint=f"Download them first: download-to-cache --profiles {' '.join(wanting)} "
            f"(nimrunbook's download step{' for ' + image if image else ''}), then run this step again.",
        )
    return PublishPlan(ids, list(objects.values()))
