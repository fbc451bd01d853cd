"""Decode what a NIM profile name says about the profile.

Names are the only description `list-model-profiles` prints, and they changed
across releases: ``tensorrt_llm-l40s-fp8-tp1-pp1-throughput-lora-lora`` (1.x),
``vllm-fp16-tp2`` (1.0, no ``pp``), ``a100-fp16-tp1-throughput`` (VLM, no
engine), ``...-2321:10de-<hash>-1`` (1.12+), ``vllm-bf16-tp1-pp1-33.0`` and
``-feat_lora-`` (2.x), bare ``vllm``, and Riva's ``key:value|key:value``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from nimrunbook.gpus import gpu_token, pci_device_id

ENGINES = frozenset({"tensorrt_llm", "vllm", "sglang", "trtllm", "tensorrt", "pytorch", "onnx"})
GENERIC_ENGINES = frozenset({"vllm", "sglang"})
PRECISIONS = frozenset(
    {"fp32", "fp16", "bf16", "fp8", "int8", "int4", "int4_awq", "int8_wo", "nvfp4", "mxfp4", "w4a16"}
)
MODES = frozenset({"latency", "throughput"})

_REQUIRES_RE = re.compile(r">=\s*(?P<gb>\d+(?:\.\d+)?)\s*GB/gpu")


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

    def as_dict(self) -> dict:
        return asdict(self)


def min_memory_from_hint(hint: str | None) -> float | None:
    """``requires >=33 GB/gpu, try ...`` -> 33.0 (the first, unreduced figure)."""
    if not hint:
        return None
    match = _REQUIRES_RE.search(hint)
    return float(match.group("gb")) if match else None


def _decode_riva(name: str) -> NameFields:
    pairs = dict(part.partition(":")[::2] for part in name.split("|") if ":" in part)
    gpu = gpu_token(pairs["gpu"]) if pairs.get("gpu") else None
    device = pci_device_id(pairs["gpu_device"]) if pairs.get("gpu_device") else None
    return NameFields(
        engine=pairs.get("model_type"),
        gpu=gpu,
        gpu_device=device,
        precision=pairs.get("precision"),
        lora=False,
        generic=gpu is None and device is None,
    )


def decode_name(name: str) -> NameFields:
    """Decode a profile name; an undecodable name gives empty fields, never an error."""
    if not isinstance(name, str) or not name.strip():
        return NameFields()
    name = name.strip()
    if "|" in name and ":" in name:
        return _decode_riva(name)
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
