"""Parse a NIM image's ``model_manifest.yaml``: the source of truth for which
files a profile needs and where NIM will look for them.

Three shapes exist: schema v1 (NIM 1.0; a map of profile id to entry, with the
custom YAML tags ``!workspace`` and ``!name`` that a strict loader rejects),
schema v2 (``profiles:`` list; a bare list of profile entries is what people
paste from one), and the legacy BioNeMo ``manifest:`` list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
import yaml

from nimrunbook.errors import ManifestParseError
from nimrunbook.profiles.names import NameFields, fields_from_tags

MANIFEST_COLUMNS = [
    "id",
    "name",
    "engine",
    "gpu",
    "gpu_device",
    "precision",
    "tp",
    "pp",
    "mode",
    "lora",
    "generic",
    "number_of_gpus",
    "trtllm_buildable",
    "product_name_regex",
    "ampere_plus",
    "files",
]


@dataclass(frozen=True)
class ManifestFile:
    """One file of a profile: where it lands in the workspace, and its ``ngc://`` source."""

    path: str
    uri: str | None
    checksum: str | None = None


@dataclass
class ManifestProfile:
    id: str
    tags: dict[str, str]
    files: list[ManifestFile] = field(default_factory=list)
    model: str | None = None  # the entry's ``model`` (v1), when it names one

    def tag(self, *names: str) -> str | None:
        for name in names:
            if self.tags.get(name) not in (None, ""):
                return str(self.tags[name])
        return None

    @property
    def fields(self) -> NameFields:
        """What the tags say, decoded by the same rules as a tag-style profile name."""
        return fields_from_tags(self.tags)

    @property
    def engine(self) -> str | None:
        return self.tag("llm_engine", "backend")

    @property
    def lora(self) -> bool:
        return (self.tag("feat_lora") or "false").lower() == "true"

    @property
    def trtllm_buildable(self) -> bool:
        return (self.tag("trtllm_buildable") or "false").lower() == "true"

    @property
    def gpu(self) -> str | None:
        return self.fields.gpu

    @property
    def gpu_device(self) -> str | None:
        return self.fields.gpu_device

    @property
    def generic(self) -> bool:
        return bool(self.fields.generic)

    @property
    def number_of_gpus(self) -> int | None:
        value = self.tag("number_of_gpus")
        return int(value) if value and value.isdigit() else None

    @property
    def name(self) -> str:
        """A name in NIM's own spelling, built from the tags (the manifest has none)."""
        parts = [self.engine]
        if self.trtllm_buildable:
            parts.append("trtllm_buildable")
        elif self.gpu:
            parts.append(self.gpu)
        parts.append(self.tag("precision"))
        if self.tag("tp"):
            parts.append(f"tp{self.tag('tp')}")
        if self.tag("pp"):
            parts.append(f"pp{self.tag('pp')}")
        parts.append(self.tag("profile"))
        if self.lora:
            parts.append("lora")
        return "-".join(p for p in parts if p)


@dataclass
class Manifest:
    schema: str
    profiles: list[ManifestProfile]

    def profile(self, profile_id: str) -> ManifestProfile | None:
        return next((p for p in self.profiles if p.id == profile_id), None)

    def model_name(self) -> str | None:
        """The model the manifest serves (``meta/llama3-70b-instruct``): a v1 entry's ``model``,
        else the repository its files come from (``ngc://nim/<org>/<model>:tag``)."""
        for profile in self.profiles:
            if profile.model:
                return profile.model
        for profile in self.profiles:
            for file in profile.files:
                if file.uri and (match := re.match(r"ngc://(?:nim/)?(?P<repo>[^:?]+)", file.uri)):
                    return match.group("repo")
        return None

    def profiles_frame(self) -> pd.DataFrame:
        """The profiles with the same columns as :func:`parse_listing` where they overlap."""
        rows = []
        for p in self.profiles:
            tp, pp = p.tag("tp"), p.tag("pp")
            rows.append(
                {
                    "id": p.id,
                    "name": p.name,
                    "engine": p.engine,
                    "gpu": p.gpu,
                    "gpu_device": p.gpu_device,
                    "precision": p.tag("precision"),
                    "tp": int(tp) if tp and tp.isdigit() else None,
                    "pp": int(pp) if pp and pp.isdigit() else None,
                    "mode": p.tag("profile"),
                    "lora": p.lora,
                    "generic": p.generic,
                    "number_of_gpus": p.number_of_gpus,
                    "trtllm_buildable": p.trtllm_buildable,
                    "product_name_regex": p.tag("product_name_regex"),
                    "ampere_plus": p.fields.ampere_plus,
                    "files": len(p.files),
                }
            )
        frame = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
        frame["tp"] = frame["tp"].astype("Int64")
        frame["pp"] = frame["pp"].astype("Int64")
        frame["number_of_gpus"] = frame["number_of_gpus"].astype("Int64")
        return frame


# libyaml's parser where PyYAML was built with it (manifests of thousands of files parse several times faster),
# else the pure-Python one; both construct only plain data.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _TolerantLoader(_SAFE_LOADER):
    """SafeLoader that reads NIM's custom tags (``!workspace``, ``!name``) as plain data."""


def _construct_any(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


_TolerantLoader.add_multi_constructor("!", _construct_any)

# An author's elision line ("      ...") in a pasted excerpt; not YAML.
_ELISION_RE = re.compile(r"^\s+(\.\.\.|…)\s*$", re.MULTILINE)


def _load(text: str):
    try:
        return yaml.load(_ELISION_RE.sub("", text), Loader=_TolerantLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ManifestParseError(
            f"The model manifest is not valid YAML: {exc}".replace("\n", " "),
            hint="Read it from the image unchanged (`nimrunbook` does this with read_manifest), "
            "not from a copy pasted from a web page.",
        ) from exc


def _tags(entry: dict) -> dict[str, str]:
    tags = entry.get("tags") or {}
    return {str(k): "" if v is None else str(v) for k, v in tags.items()}


def _v2_files(workspace: dict | None) -> list[ManifestFile]:
    files = (workspace or {}).get("files") or {}
    result = []
    for path, spec in files.items():
        spec = spec if isinstance(spec, dict) else {"uri": spec}
        result.append(ManifestFile(str(path), spec.get("uri"), spec.get("checksum")))
    return result


def _v1_files(workspace: dict | None) -> list[ManifestFile]:
    result = []
    for component in (workspace or {}).get("components") or []:
        dst = str(component.get("dst") or "").strip("/")
        src = component.get("src") or {}
        repo = src.get("repo_id")
        names = src.get("files") or []
        if not names and repo:
            result.append(ManifestFile(dst, f"ngc://{repo}"))
        for name in names:
            name = str(name)
            uri = f"ngc://{repo}?file={name}" if repo else None
            result.append(ManifestFile(f"{dst}/{name}" if dst else name, uri))
    return result


def _profile(entry: dict, profile_id: str | None = None) -> ManifestProfile:
    profile_id = str(profile_id if profile_id is not None else entry.get("id"))
    workspace = entry.get("workspace") or {}
    files = _v1_files(workspace) if "components" in workspace else _v2_files(workspace)
    model = entry.get("model")
    return ManifestProfile(profile_id, _tags(entry), files, str(model) if isinstance(model, str) else None)


def _describe(document) -> str:
    if isinstance(document, dict):
        return f"a mapping with keys {', '.join(map(str, list(document)[:6]))}"
    return f"a {type(document).__name__}"


def parse_manifest(text: str) -> Manifest:
    """Parse ``model_manifest.yaml`` of any known schema into a :class:`Manifest`."""
    document = _load(text)
    if isinstance(document, dict) and isinstance(document.get("profiles"), list):
        return Manifest(f"v{document.get('schema_version', '2')}", [_profile(e) for e in document["profiles"]])
    if isinstance(document, list) and all(isinstance(e, dict) and "id" in e for e in document):
        return Manifest("v2-profiles", [_profile(e) for e in document])
    if isinstance(document, dict) and isinstance(document.get("manifest"), list):
        profiles = []
        for item in document["manifest"]:
            if isinstance(item, dict) and "id" in item:
                profiles.append(_profile(item))
            elif isinstance(item, dict) and len(item) == 1:
                ((profile_id, entry),) = item.items()
                profiles.append(_profile(entry or {}, profile_id))
        return Manifest("legacy", profiles)
    if (
        isinstance(document, dict)
        and document
        and all(isinstance(v, dict) and ({"tags", "workspace", "model"} & set(v)) for v in document.values())
    ):
        return Manifest("v1", [_profile(entry, pid) for pid, entry in document.items()])
    raise ManifestParseError(
        f"Unknown model manifest schema: found {_describe(document)}.",
        hint="Expected schema v2 (`schema_version` and `profiles:`), schema v1 (profile id -> "
        "{tags, workspace}) or a legacy `manifest:` list. Check that the file is "
        "/opt/nim/etc/default/model_manifest.yaml (or /etc/nim/config/model_manifest.yaml) from the image.",
    )
