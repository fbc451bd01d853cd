"""How much a ``download-to-cache`` will add to the NIM cache, estimated before it starts.

The manifest lists every file of a profile but not its size, and NGC is not
asked (it may be slow, and this must work before any credentials are
checked). The weights are nearly all of a profile's bytes, so the estimate is
the model's parameter count (from its NGC name: ``llama-3.1-8b-instruct`` has
8 billion) times the bytes per parameter of the profile's precision, for each
snapshot (one manifest URI tag: an HF checkpoint, an engine) that holds weight
files, less what the cache already holds of that snapshot. A snapshot whose
files are all in the cache adds nothing. When a model's name says nothing
about its size, the estimate says why it cannot be made, and the caller skips
the check (or takes an explicit size).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from nimrunbook.localdisk import NimCache
from nimrunbook.profiles import Manifest, model_parameters_b
from nimrunbook.profiles.names import BYTES_PER_PARAMETER
from nimrunbook.store.keys import NgcUri

WEIGHT_SUFFIXES = (".safetensors", ".engine", ".bin", ".pt", ".pth", ".gguf", ".nemo", ".ckpt", ".onnx", ".plan")
UNKNOWN_PRECISION_BYTES = 2.0  # 16-bit: what a checkpoint without a precision tag usually holds


def parameters_in_name(model: str) -> float | None:
    """The parameter count a model's name states (``nim/meta/llama-3.1-8b-instruct`` -> 8e9); None if it does not.

    A mixture of experts counts as experts times size: an upper bound, which is what a disk check wants.
    """
    billions = model_parameters_b(model, experts_upper_bound=True)
    return None if billions is None else billions * 1e9


@dataclass
class DownloadEstimate:
    """``bytes`` the download will add (None: unknown, ``reason`` says why); ``basis`` says how it was reckoned."""

    bytes: int | None
    basis: list[str] = field(default_factory=list)
    reason: str = ""

    def describe(self) -> str:
        if self.bytes is None:
            return f"not estimated: {self.reason}"
        return "; ".join(self.basis) or "everything is already in the cache"


def estimate_download(manifest: Manifest, profile_ids: Sequence[str], cache: NimCache) -> DownloadEstimate:
    """See the module docstring."""
    snapshots: dict[tuple[str, str], dict] = {}
    for profile_id in profile_ids:
        profile = manifest.profile(profile_id)
        if profile is None:
            continue
        precision = (profile.tag("precision") or "").lower()
        for file in profile.files:
            uri = NgcUri.parse(file.uri or "")
            if uri is None or uri.file is None or uri.tag is None:
                continue
            entry = snapshots.setdefault((uri.repo, uri.tag), {"uri": uri, "files": set(), "precisions": set()})
            entry["files"].add(uri.file)
            entry["precisions"].add(precision)
    total, basis = 0, []
    for (repo, tag), entry in sorted(snapshots.items()):
        uri: NgcUri = entry["uri"]
        weights = {name for name in entry["files"] if name.endswith(WEIGHT_SUFFIXES)}
        missing = {name for name in weights if cache.blob_of(uri.model_dirs(), tag, name) is None}
        if not missing:
            continue
        parameters = parameters_in_name(repo)
        if parameters is None:
            return DownloadEstimate(
                None,
                reason=f"the manifest lists no file sizes, and the model name {repo} states no parameter count "
                "(such as 8b)",
            )
        per_parameter = max(BYTES_PER_PARAMETER.get(p, UNKNOWN_PRECISION_BYTES) for p in entry["precisions"])
        revision = cache.revision(uri.model_dirs(), tag)
        present = sum(f.size for f in revision.files if f.name in weights) if revision else 0
        needed = max(int(parameters * per_parameter) - present, 0)
        total += needed
        basis.append(
            f"{repo}:{tag}: {parameters / 1e9:g}B parameters x {per_parameter:g} bytes, "
            f"{len(missing)} of {len(weights)} weight files to fetch"
        )
    return DownloadEstimate(total, basis)
