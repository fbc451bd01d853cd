"""Decode what a NIM profile name says about the profile.

Names are the only description `list-model-profiles` prints, and they changed
across releases: ``tensorrt_llm-l40s-fp8-tp1-pp1-throughput-lora-lora`` (1.x),
``vllm-fp16-tp2`` (1.0, no ``pp``), ``a100-fp16-tp1-throughput`` (VLM, no
engine), ``...-2321:10de-<hash>-1`` (1.12+), ``vllm-bf16-tp1-pp1-33.0`` and
``-feat_lora-`` (2.x), bare ``vllm``. Riva and other non-LLM NIMs print their
tags instead of a name, in three spellings: ``key:value|key:value``, a Python
dict (``{'ampereplus': 'enabled', 'gpu_device': '20b2', ...}``) and
``key=value``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from nimrunbook.gpu_models import gpu_token, pci_device_id

ENGINES = frozenset({"tensorrt_llm", "vllm", "sglang", "trtllm", "tensorrt", "pytorch", "onnx"})
GENERIC_ENGINES = frozenset({"vllm", "sglang"})
PRECISIONS = frozenset(
    {"fp32", "fp16", "bf16", "fp8", "int8", "int4", "int4_awq", "int8_wo", "nvfp4", "mxfp4", "w4a16"}
)
MODES = frozenset({"latency", "throughput"})

# Riva model types: an RMIR is built into an engine for the GPU at start-up (any GPU);
# a prebuilt engine runs only on the GPU it was built for.
BUILT_AT_START = frozenset({"rmir"})
PREBUILT = frozenset({"prebuilt"})

_REQUIRES_RE = re.compile(r">=\s*(?P<gb>\d+(?:\.\d+)?)\s*GB/gpu")
_DICT_ITEM_RE = re.compile(r"""['"](?P<key>[^'"]+)['"]\s*:\s*['"](?P<value>[^'"]*)['"]""")


@dataclass
class NameFields:
    """What a profile name says; None where it says nothing."""

    engine: str | None = None
    gpu: str | None = None
    gpu_device: str | None = None
    precision: str | None = None
    tp: int | None = None
    pp: int | None = None
    mode: str | None = None
    lora: bool | None = None
    generic: bool | None = None
    min_gpu_memory_gb: float | None = None
    ampere_plus: bool | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def min_memory_from_hint(hint: str | None) -> float | None:
    """``requires >=33 GB/gpu, try ...`` -> 33.0 (the first, unreduced figure)."""
    if not hint:
        return None
    match = _REQUIRES_RE.search(hint)
    return float(match.group("gb")) if match else None


def tag_pairs(name: str) -> dict[str, str] | None:
    """The tags of a tag-style name, in any of its three spellings; None for an ordinary name."""
    text = name.strip()
    if text.startswith("{") and text.endswith("}"):
        return {m.group("key").strip(): m.group("value").strip() for m in _DICT_ITEM_RE.finditer(text)}
    if "|" in text and ":" in text:
        return {k.strip(): v.strip() for k, _, v in (part.partition(":") for part in text.split("|")) if k.strip()}
    if "=" in text and not text.startswith("="):
        parts = re.split(r"[,|;]\s*|\s+", text)
        if all("=" in part for part in parts if part):
            return {k.strip(): v.strip() for k, _, v in (part.partition("=") for part in parts if part)}
    return None


def fields_from_tags(tags: dict[str, str]) -> NameFields:
    """What a profile's tags say: from a tag-style name or from its manifest entry."""
    gpu = gpu_token(tags["gpu"]) if tags.get("gpu") else None
    device = pci_device_id(tags["gpu_device"]) if tags.get("gpu_device") else None
    model_type = (tags.get("model_type") or "").lower()
    engine = tags.get("llm_engine") or tags.get("backend") or tags.get("model_type") or tags.get("type")
    tp, pp = tags.get("tp"), tags.get("pp")
    ampere_plus = tags.get("ampereplus", "").lower()
    lora = (tags.get("feat_lora") or "false").lower() == "true"
    buildable = (tags.get("trtllm_buildable") or "false").lower() == "true"
    targets_gpu = gpu is not None or device is not None or bool(tags.get("product_name_regex"))
    generic = (
        buildable
        or (engine or "").lower() in GENERIC_ENGINES
        or model_type in BUILT_AT_START
        or (not targets_gpu and model_type not in PREBUILT)
    )
    return NameFields(
        engine=engine,
        gpu=gpu,
        gpu_device=device,
        precision=tags.get("precision"),
        tp=int(tp) if tp and tp.isdigit() else None,
        pp=int(pp) if pp and pp.isdigit() else None,
        mode=tags.get("profile"),
        lora=lora,
        generic=generic,
        ampere_plus=ampere_plus == "enabled" if ampere_plus else None,
    )


def decode_name(name: str) -> NameFields:
    """Decode a profile name; an undecodable name gives empty fields, never an error."""
    if not isinstance(name, str) or not name.strip():
        return NameFields()
    name = name.strip()
    if (tags := tag_pairs(name)) is not None:
        return fields_from_tags(tags) if tags else NameFields()
    fields = NameFields()
    understood = 0
    for raw in name.split("-"):
        token = raw.lower()
        if token in ("", "...", "…"):
            continue
        if token in ENGINES and fields.engine is None:
            fields.engine = token
        elif token == "trtllm_buildable":
            fields.generic = True
        elif token in PRECISIONS and fields.precision is None:
            fields.precision = token
        elif re.fullmatch(r"tp\d+", token):
            fields.tp = int(token[2:])
        elif re.fullmatch(r"pp\d+", token):
            fields.pp = int(token[2:])
        elif token in MODES:
            fields.mode = token
        elif token in ("lora", "feat_lora"):
            fields.lora = True
        elif re.fullmatch(r"[0-9a-f]{4}:10de", token):
            fields.gpu_device = token[:4]
        elif re.fullmatch(r"\d+\.\d+", token):
            fields.min_gpu_memory_gb = float(token)
        elif re.fullmatch(r"[0-9a-f]{16,}|\d+", token):
            continue  # workspace hash / build counter of 1.12+ names
        elif fields.gpu is None and fields.precision is None and gpu_token(token):
            fields.gpu = gpu_token(token)
        else:
            continue
        understood += 1
    if understood == 0:
        return NameFields()
    if fields.lora is None:
        fields.lora = False
    if fields.generic is None:
        fields.generic = fields.engine in GENERIC_ENGINES or (fields.gpu is None and fields.gpu_device is None)
    return fields


# Weight bytes per parameter, by the precision a profile name or tag states.
BYTES_PER_PARAMETER = {
    "fp32": 4.0,
    "fp16": 2.0,
    "bf16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int8_wo": 1.0,
    "int4": 0.5,
    "int4_awq": 0.5,
    "w4a16": 0.5,
    "nvfp4": 0.5,
    "mxfp4": 0.5,
}

# "405b", "3.8b", "49b" as a word of a model name, and Riva's "0-6b" / "1_6b" (0.6 and 1.6);
# "8x7b" (mixture of experts) is a total only as an upper bound, and "a3b" (active parameters) is none.
_PARAMETERS_RE = re.compile(r"(?<![a-z0-9.])(?:(?P<experts>\d+)x)?(?P<b>\d+(?:[._]\d+)?|0-\d+)b(?![a-z0-9])")


def model_parameters_b(model: str | None, *, experts_upper_bound: bool = False) -> float | None:
    """Billions of parameters a model's name states (``meta/llama-3.1-405b-instruct`` -> 405.0).

    Takes an image reference or a model name; None when the name gives no count. A mixture of experts
    (``mixtral-8x7b``) states no total, so None, unless ``experts_upper_bound`` asks for experts times size
    (56: more than the shared layers make it), which a disk-space estimate may use but a fit rule may not.
    """
    if not isinstance(model, str) or not model.strip():
        return None
    base = model.strip().lower().rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0]
    match = _PARAMETERS_RE.search(base)
    if not match or (match.group("experts") and not experts_upper_bound):
        return None
    return int(match.group("experts") or 1) * float(re.sub(r"[-_]", ".", match.group("b")))
