"""The stand-in image's profiles: real ids and names of nvcr.io/nim/meta/llama-3.2-1b-instruct.

Ids and names are copied from the guide's §3.1 listing and the 1.8.4 listing in
tests/fixtures; the file lists follow the real v2 manifest and cache layout
(snapshot tags in the real spelling). Version ``1.8.6`` differs from ``1.8.5``
the way a tag update does: one profile dropped, one added, one engine rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

MODEL = "meta/llama-3.2-1b-instruct"
REPO = f"nim/{MODEL}"
HF_TAG = "hf-e9f8eff-nim1.5+"
HF_FILES = (
    "LICENSE.txt",
    "config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "checksums.blake3",
    "model.safetensors",
)
TOKENIZER_FILES = HF_FILES[:6]
ENGINE_FILES = ("LICENSE.txt", "config.json", "metadata.json", "checksums.blake3", "rank0.engine")


@dataclass(frozen=True)
class StandinProfile:
    id: str
    name: str
    tags: dict[str, str]
    engine_tag: str | None = None  # None: the profile runs the HF checkpoint

    def files(self) -> list[tuple[str, str]]:
        """(workspace path, ngc:// uri) pairs, as the manifest lists them."""
        hf = [(f, f"ngc://{REPO}:{HF_TAG}?file={f}") for f in (TOKENIZER_FILES if self.engine_tag else HF_FILES)]
        if not self.engine_tag:
            return hf
        engine = [(f"trtllm_engine/{f}", f"ngc://{REPO}:{self.engine_tag}?file={f}") for f in ENGINE_FILES]
        return hf + engine


def _engine(
    pid: str, gpu: str, device: str, precision: str, lora: bool = False, build: str = "b0d6c9d4"
) -> StandinProfile:
    name = f"tensorrt_llm-{gpu}-{precision}-tp1-pp1-throughput" + ("-lora-lora" if lora else "")
    tags = {
        "llm_engine": "tensorrt_llm",
        "precision": precision,
        "tp": "1",
        "pp": "1",
        "profile": "throughput",
        "gpu": gpu.upper(),
        "gpu_device": f"{device}:10de",
        "feat_lora": str(lora).lower(),
        "number_of_gpus": "1",
    }
    tag = f"0.17.0+{build}-{gpu}x1-{precision}-throughput{'-lora' if lora else ''}.1.8.5"
    return StandinProfile(pid, name, tags, tag)


def _generic(pid: str, name: str, engine: str, lora: bool = False, buildable: bool = False) -> StandinProfile:
    tags = {"llm_engine": engine, "precision": "bf16", "tp": "1", "pp": "1", "feat_lora": str(lora).lower()}
    if buildable:
        tags["trtllm_buildable"] = "true"
    return StandinProfile(pid, name, tags)


PROFILES_1_8_5 = (
    _generic("4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728d", "vllm-bf16-tp1-pp1", "vllm"),
    _generic(
        "ac34857f8dcbd174ad524974248f2faf271bd2a0355643b2cf1490d0fe7787c2",
        "tensorrt_llm-trtllm_buildable-bf16-tp1-pp1",
        "tensorrt_llm",
        buildable=True,
    ),
    _engine("ac5071bbd91efcc71dc486fcd5210779570868b3b8328b4abf7a408a58b5e57c", "l40s", "26b9", "bf16"),
    _engine("ad17776f4619854fccd50354f31132a558a1ca619930698fd184d6ccf5fe3c99", "l40s", "26b9", "fp8"),
    _engine("af876a179190d1832143f8b4f4a71f640f3df07b0503259cedee3e3a8363aa96", "h200", "2335", "fp8"),
    _engine("0782f55dcd12ec36d6126d9768fd364182986eecd25526eb206553df388057b7", "l40s", "26b9", "fp8", lora=True),
    _engine("e7dbd9a8ce6270d2ec649a0fecbcae9b5336566113525f20aee3809ba5e63856", "h100", "2330", "bf16"),
    _engine("74bfd8b2df5eafe452a9887637eef4820779fb4e1edb72a4a7a2a1a2d1e6480b", "a10g", "2237", "bf16"),
    _generic(
        "f749ba07aade1d9e1c36ca1b4d0b67949122bd825e8aa6a52909115888a34b95", "vllm-bf16-tp1-pp1-lora", "vllm", lora=True
    ),
)

PROFILES_1_8_6 = (
    *(p for p in PROFILES_1_8_5 if not p.name.startswith("tensorrt_llm-h200")),
    _engine("434e8d336fa23cbe151748d32b71e196d69f20d319ee8b59852a1ca31a48d311", "h200", "2335", "bf16"),
)
PROFILES_1_8_6 = tuple(
    _engine(p.id, "l40s", "26b9", "bf16", build="c71e2a05")
    if p.name == "tensorrt_llm-l40s-bf16-tp1-pp1-throughput"
    else p
    for p in PROFILES_1_8_6
)

VERSIONS: dict[str, tuple[StandinProfile, ...]] = {"1.8.5": PROFILES_1_8_5, "1.8.6": PROFILES_1_8_6}


def manifest_yaml(version: str) -> str:
    """A schema v2 ``model_manifest.yaml`` for the version, in the real format."""
    profiles = [
        {"id": p.id, "tags": p.tags, "workspace": {"files": {path: {"uri": uri} for path, uri in p.files()}}}
        for p in VERSIONS[version]
    ]
    document = {"schema_version": "2.0.0", "profile_selection_criteria": "default", "profiles": profiles}
    return yaml.safe_dump(document, sort_keys=False)


def profiles_tsv(version: str) -> str:
    """``id<TAB>name`` lines, for the image's shell tools."""
    return "".join(f"{p.id}\t{p.name}\n" for p in VERSIONS[version])


def files_tsv(version: str) -> str:
    """``id<TAB>uri`` lines, for the image's shell tools."""
    return "".join(f"{p.id}\t{uri}\n" for p in VERSIONS[version] for _, uri in p.files())
