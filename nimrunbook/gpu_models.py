"""Which GPU a name means: one catalogue of models, and one function that identifies any spelling.

NIM decides compatibility by the GPU's PCI device id (``gpu_device`` in the
manifest, ``[2330:10de]`` in its SYSTEM INFO), names optimised profiles after a
GPU *token* (``a100``, ``h100_nvl``, ``a100_sxm4_40gb``), and runs
``ampereplus:enabled`` profiles on any GPU of compute capability 8.0 or newer.
People describe the same GPU as nvidia-smi product names (sometimes truncated:
``NVIDIA A100-SXM...``), GPU-feature-discovery labels (``NVIDIA-A100-80GB-PCIe``),
PCI ids (``0x20B510DE``) or typed shorthand (``8xB200``, ``A100 40GB``). Every
one of those spellings is resolved here to one :class:`GpuModel`, so that the
selection never depends on how the inventory was written.

Sources of the catalogue (every value comes from one of them):

* PCI device ids and chip names: the PCI ID database, pciutils/pciids @
  c1c12547d626ebf05fd0223144ad87fab5e95d06 ``pci.ids`` (vendor 10de).
* Profile tokens: profile names in real ``list-model-profiles`` outputs and NIM
  manifests (tests/fixtures, see SOURCES.md) and nim-facts.md.
* Memory (``memory.total`` in MiB): real nvidia-smi captures and GPU feature
  discovery ``nvidia.com/gpu.memory`` labels (tests/fixtures/SOURCES.md, section 3).
  Left empty where no capture was found.
* Compute capability: NVIDIA's "CUDA GPU Compute Capability" table
  (developer.nvidia.com/cuda-gpus and /cuda-legacy-gpus).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuModel:
    """One GPU model as NIM sees it."""

    product: str  # as nvidia-smi prints it
    pci_device_id: str  # 4 lower-case hex digits; the vendor is always 10de
    token: str | None  # NIM profile token, None when no NIM profile names this GPU
    memory_mib: int | None  # nvidia-smi memory.total
    compute_capability: float

    @property
    def label(self) -> str:
        """The GPU feature discovery spelling (``NVIDIA-A100-80GB-PCIe``)."""
        return re.sub(r"\s+", "-", self.product.strip())


MODELS: tuple[GpuModel, ...] = (
    # Ampere
    GpuModel("NVIDIA A100-SXM4-80GB", "20b2", "a100", 81920, 8.0),
    GpuModel("NVIDIA A100-SXM4-40GB", "20b0", "a100_sxm4_40gb", 40960, 8.0),
    GpuModel("NVIDIA A100 80GB PCIe", "20b5", "a100pcie", 81920, 8.0),
    GpuModel("NVIDIA A100-PCIE-40GB", "20f1", None, None, 8.0),
    GpuModel("NVIDIA A10G", "2237", "a10g", 23028, 8.6),
    GpuModel("NVIDIA A10", "2236", "a10", None, 8.6),
    # Ada
    GpuModel("NVIDIA L40S", "26b9", "l40s", 46068, 8.9),
    GpuModel("NVIDIA L40", "26b5", "l40", None, 8.9),
    GpuModel("NVIDIA L4", "27b8", "l4", 23034, 8.9),
    GpuModel("NVIDIA RTX 6000 Ada Generation", "26b1", None, None, 8.9),
    # Hopper
    GpuModel("NVIDIA H100 80GB HBM3", "2330", "h100", 81559, 9.0),
    GpuModel("NVIDIA H100 PCIe", "2331", "h100pcie", 81559, 9.0),
    GpuModel("NVIDIA H100 NVL", "2321", "h100_nvl", 95830, 9.0),
    GpuModel("NVIDIA H200", "2335", "h200", 143771, 9.0),
    GpuModel("NVIDIA H20", "2329", "h20", None, 9.0),
    GpuModel("NVIDIA GH200 480GB", "2342", "gh200", 97871, 9.0),
    GpuModel("NVIDIA GH200 144G HBM3e", "2348", "gh200", 146831, 9.0),
    # Blackwell
    GpuModel("NVIDIA B200", "2901", "b200", 183359, 10.0),
    GpuModel("NVIDIA GB200", "2941", "gb200", 189471, 10.0),
    GpuModel("NVIDIA B300 SXM6 AC", "3182", "b300", 275040, 10.3),
    GpuModel("NVIDIA GB300", "31c2", "gb300", 284208, 10.3),
    GpuModel("NVIDIA RTX PRO 6000 Blackwell Server Edition", "2bb5", "rtx6000_blackwell_sv", 97887, 12.0),
    GpuModel("NVIDIA GeForce RTX 5090", "2b85", None, 32607, 12.0),
    GpuModel("NVIDIA GB10", "2e12", None, None, 12.1),
    # Turing: below NIM's compute-capability floor for bf16, kept so that they are recognised
    GpuModel("Tesla T4", "1eb8", None, None, 7.5),
    GpuModel("NVIDIA T600", "1fb1", None, None, 7.5),
)

BY_DEVICE: dict[str, GpuModel] = {m.pci_device_id: m for m in MODELS}

# Tokens of profile names, including those of GPUs with several models (gh200).
KNOWN_TOKENS: frozenset[str] = frozenset(m.token for m in MODELS if m.token)

# Ordered rules over a normalised name ("a100 80gb pcie"); the first match names the device.
# A100 and GH200 come in memory variants: an unqualified name is settled by measured memory.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"\brtx pro 6000 blackwell server\b|\brtx6000 blackwell sv\b", "2bb5"),
    (r"\brtx 6000 ada\b", "26b1"),
    (r"\brtx 5090\b", "2b85"),
    (r"\bgh200 144g\b", "2348"),
    (r"\bgh200\b", "2342"),
    (r"\bgb300\b", "31c2"),
    (r"\bgb200\b", "2941"),
    (r"\bgb10\b", "2e12"),
    (r"\bb300\b", "3182"),
    (r"\bb200\b", "2901"),
    (r"\bh100 ?nvl\b", "2321"),
    (r"\bh100 ?pcie\b", "2331"),
    (r"\bh100\b", "2330"),
    (r"\bh200\b", "2335"),
    (r"\bh20\b", "2329"),
    (r"\ba100\b.*\bpcie\b.*\b40 ?gb?\b|\ba100\b.*\b40 ?gb?\b.*\bpcie\b", "20f1"),
    (r"\ba100 ?pcie\b|\ba100\b.*\bpcie\b", "20b5"),
    (r"\ba100\b.*\b40 ?gb?\b|\ba100 sxm4 40gb\b", "20b0"),
    (r"\ba100\b", "20b2"),
    (r"\ba10g\b", "2237"),
    (r"\ba10\b", "2236"),
    (r"\bl40s\b", "26b9"),
    (r"\bl40\b", "26b5"),
    (r"\bl4\b", "27b8"),
    (r"\bt4\b", "1eb8"),
    (r"\bt600\b", "1fb1"),
)

# Same chip, other memory: when measured memory says so, the sibling is meant.
_MEMORY_SIBLINGS: dict[str, str] = {"20b2": "20b0", "20b0": "20b2", "20b5": "20f1", "20f1": "20b5"}

_EXPLICIT_PCI_RE = re.compile(
    r"^(?:0x(?P<a>[0-9a-f]{4})(?:10de)?|(?P<b>[0-9a-f]{4}):10de|10de:(?P<c>[0-9a-f]{4})|\[(?P<d>[0-9a-f]{4}):10de\])$"
)
_BARE_HEX_RE = re.compile(r"^[0-9a-f]{4}$")
_MIG_RE = re.compile(r"[-_ ]mig[-_ ](?P<g>\d+)g\.\d+gb.*$", re.IGNORECASE)
_TRUNCATED_RE = re.compile(r"(\.\.\.|…)\s*$")


def pci_device_id(text: str) -> str | None:
    """The 4-hex device id of ``0x233010DE``, ``2330:10de``, ``10de:2330`` or a bare ``2330``.

    A bare 4-hex word is a device id only when it is not also a GPU name:
    ``b200``, ``a100`` and ``b300`` are hexadecimal, but they are names.
    """
    lowered = text.strip().lower() if isinstance(text, str) else ""
    if match := _EXPLICIT_PCI_RE.match(lowered):
        return next(group for group in match.groups() if group)
    if _BARE_HEX_RE.match(lowered) and _rule_device(lowered) is None and lowered not in KNOWN_TOKENS:
        return lowered
    return None


def mig_slices(text: str) -> int:
    """GPCs of one MIG slice named in a label value (``...-MIG-1g.10gb`` -> 1), 0 without MIG."""
    match = _MIG_RE.search(text or "")
    return int(match.group("g")) if match else 0


def normalise_name(text: str) -> str:
    """``NVIDIA-A100-80GB-PCIe-SHARED`` -> ``a100 80gb pcie``: the words that tell GPUs apart."""
    name = _MIG_RE.sub("", text.strip())
    name = _TRUNCATED_RE.sub("", name)
    name = re.sub(r"[-_\s]+", " ", name.lower())
    name = re.sub(r"\b(nvidia|tesla|geforce|shared)\b", " ", name)
    return re.sub(r"\s+", " ", name).strip()


def _rule_device(name: str) -> str | None:
    for pattern, device in _NAME_RULES:
        if re.search(pattern, name):
            return device
    return None


def _by_memory(device: str, memory_mib: int | None, name: str) -> str:
    """The memory variant of the same chip that the measured memory points at."""
    sibling = _MEMORY_SIBLINGS.get(device)
    if sibling is None or memory_mib is None or re.search(r"\b\d+ ?g", name):
        return device
    own, other = BY_DEVICE[device].memory_mib or 81920, BY_DEVICE[sibling].memory_mib or 40960
    return sibling if abs(memory_mib - other) < abs(memory_mib - own) else device


def identify(text: str, memory_mib: int | None = None) -> GpuModel | None:
    """The GPU model any spelling means, or None when it names no GPU we know.

    Accepts nvidia-smi names (also the table's truncated ``NVIDIA A100-SXM...``),
    GPU feature discovery label values (``-SHARED``, ``-MIG-1g.10gb``), PCI ids,
    NIM profile tokens and typed shorthand. ``memory_mib`` settles names that do
    not say which memory variant they are (``A100-SXM...`` with 40960 MiB).
    """
    if not isinstance(text, str) or not text.strip():
        return None
    lowered = text.strip().lower()
    if lowered in KNOWN_TOKENS:
        model = next(m for m in MODELS if m.token == lowered)
        return BY_DEVICE[_by_memory(model.pci_device_id, memory_mib, lowered.replace("_", " "))]
    device = pci_device_id(lowered)
    if device is not None:
        return BY_DEVICE.get(device)
    name = normalise_name(text)
    device = _rule_device(name)
    if device is None and _TRUNCATED_RE.search(text) and name:
        return _by_prefix(name, memory_mib)
    if device is None:
        return None
    return BY_DEVICE[_by_memory(device, memory_mib, name)]


def _by_prefix(name: str, memory_mib: int | None) -> GpuModel | None:
    """A name the nvidia-smi table cut short (``RTX PRO 6000 Blac...``): the model it starts, if only one."""
    candidates = [m for m in MODELS if normalise_name(m.product).startswith(name)]
    if memory_mib is not None and len(candidates) > 1:
        candidates = [m for m in candidates if m.memory_mib == memory_mib] or candidates
    return candidates[0] if len(candidates) == 1 else None


def gpu_token(text: str) -> str | None:
    """The NIM profile token of any spelling of a GPU (``NVIDIA-H100-NVL-SHARED`` -> ``h100_nvl``)."""
    model = identify(text)
    return model.token if model else None


def known_names() -> str:
    """A short list of accepted spellings, for error messages."""
    return ", ".join(sorted(KNOWN_TOKENS))
