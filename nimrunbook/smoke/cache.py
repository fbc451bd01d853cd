"""Read the scratch cache the NIM filled, and compare every file with the digest recorded at publish time.

The container wrote this cache, so it is not trusted: a snapshot link that
leads outside the cache is treated as a file the NIM did not fetch, never
followed. Each blob is hashed once, however many profiles share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nimrunbook.hashing import sha256_file
from nimrunbook.localdisk import NimCache
from nimrunbook.profiles import Manifest
from nimrunbook.progress import Task
from nimrunbook.smoke.expected import Published
from nimrunbook.smoke.result import FileCheck
from nimrunbook.store.keys import NgcUri, object_key


@dataclass(frozen=True)
class WantedFile:
    """A manifest file of a selected profile, and the object the NIM should read it from."""

    profile_id: str
    path: str
    uri: str
    key: str


def wanted_files(manifest: Manifest, profile_ids: list[str]) -> list[WantedFile]:
    """Every file the selected profiles need, per profile (a shared file appears under each)."""
    wanted = []
    for profile_id in profile_ids:
        for file in manifest.profile(profile_id).files:
            if file.uri:
                wanted.append(WantedFile(profile_id, file.path, file.uri, object_key(file.uri)))
    return wanted


def cached_blob(cache_dir: Path, uri: str) -> Path | None:
    """The file the NIM cache holds for a manifest URI (its snapshot link resolved), or None."""
    parsed = NgcUri.parse(uri)
    if parsed is None or parsed.file is None:
        return None
    root = cache_dir.resolve()
    blob = NimCache(root).blob_of(parsed.model_dirs(), parsed.tag, parsed.file)
    return blob if blob is not None and blob.is_relative_to(root) else None


def fetched(cache_dir: Path, files: list[WantedFile]) -> bool:
    return all(cached_blob(cache_dir, f.uri) is not None for f in files)


def compare(cache_dir: Path, files: list[WantedFile], published: Published, progress: Task) -> list[FileCheck]:
    """One check per wanted file: identical, bytes differ, not fetched, or not recorded."""
    digests: dict[Path, str] = {}
    checks = []
    for wanted in files:
        expected = published.objects.get(wanted.key)
        blob = cached_blob(cache_dir, wanted.uri)
        check = FileCheck(wanted.profile_id, wanted.path, wanted.key, "not fetched")
        check.expected_sha256 = expected.sha256 if expected else None
        if blob is not None:
            if blob not in digests:
                digests[blob] = sha256_file(blob, progress)
            check.size, check.sha256 = blob.stat().st_size, digests[blob]
            if expected is None:
                check.status = "not recorded"
            elif check.sha256 == expected.sha256 and check.size == expected.size:
                check.status = "identical"
            else:
                check.status = "bytes differ"
        checks.append(check)
    return checks
