"""The cluster's GPU inventory, and how a GPU name maps to a NIM profile token.

NIM names optimised profiles after a GPU *token* (``l40s``, ``h100_nvl``,
``a100_sxm4_40gb``) and matches them to hardware by PCI device id. The GPUs
are described to us in many spellings: nvidia-smi product names, Kubernetes
GPU-feature-discovery labels (``NVIDIA-H100-NVL-SHARED``,
``NVIDIA-A100-80GB-PCIe-MIG-1g.10gb``), PCI ids (``0x233010DE``) or what an
engineer types. The staging host that downloads profiles is usually not the
cluster, so typed-in and label inventories matter as much as nvidia-smi.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field

from nimrunbook.errors import InputError, UnknownGpuError

# PCI device id -> (product name as nvidia-smi prints it, profile token or None).
PCI_DEVICES: dict[str, tuple[str, str | None]] = {
    "2236": ("NVIDIA A10", "a10"),
    "2237": ("NVIDIA A10G", "a10g"),
    "20b0": ("NVIDIA A100-SXM4-40GB", "a100_sxm4_40gb"),
    "20b2": ("NVIDIA A100-SXM4-80GB", "a100"),
    "20b5": ("NVIDIA A100 80GB PCIe", "a100pcie"),
    "20f1": ("NVIDIA A100-PCIE-40GB", "a100pcie"),
    "2330": ("NVIDIA H100 80GB HBM3", "h100"),
    "2331": ("NVIDIA H100 PCIe", "h100pcie"),
    "2321": ("NVIDIA H100 NVL", "h100_nvl"),
    "2335": ("NVIDIA H200", "h200"),
    "2342": ("NVIDIA GH200 480GB", "gh200"),
    "2348": ("NVIDIA GH200 144G HBM3e", "gh200"),
    "2901": ("NVIDIA B200", "b200"),
    "26b9": ("NVIDIA L40S", "l40s"),
    "26b5": ("NVIDIA L40", "l40"),
    "27b8": ("NVIDIA L4", "l4"),
    "2bb5": ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx6000_blackwell_sv"),
    "26b1": ("NVIDIA RTX 6000 Ada Generation", None),
    "1eb8": ("Tesla T4", None),
    "1fb1": ("NVIDIA T600", None),
}

# Profile tokens seen in NIM profile names (nim-facts.md), plus likely ones.
KNOWN_TOKENS = frozenset(
    {
        "a10",
        "a10g",
        "a100",
        "a100_sxm4_40gb",
        "a100pcie",
        "h100",
        "h100pcie",
        "h100_nvl",
        "h200",
        "h20",
        "b200",
        "b300",
        "gh200",
        "gb200",
        "gb300",
        "l4",
        "l40",
        "l40s",
        "rtx6000_blackwell_sv",
    }
)

# Profiles named for the alias may also serve the GPU: NIM lists 40 GB A100
# profiles as ``a100`` in older images. Selecting by alias errs towards
# downloading more, never towards a cluster that cannot start.
TOKEN_ALIASES: dict[str, frozenset[str]] = {
    "a100_sxm4_40gb": frozenset({"a100"}),
    "a100pcie": frozenset({"a100"}),
    "h100pcie": frozenset({"h100"}),
}

# Ordered name rules over a normalised name ("h100 80gb hbm3"); first match wins.
_NAME_RULES: tuple[tuple[str, str], ...] = (
    (r"\brtx pro 6000 blackwell server\b|\brtx6000 blackwell sv\b", "rtx6000_blackwell_sv"),
    (r"\bgh200\b", "gh200"),
    (r"\bgb200\b", "gb200"),
    (r"\bgb300\b", "gb300"),
    (r"\bh100 nvl\b|\bh100nvl\b", "h100_nvl"),
    (r"\bh100 pcie\b|\bh100pcie\b", "h100pcie"),
    (r"\bh100\b", "h100"),
    (r"\bh200\b", "h200"),
    (r"\bh20\b", "h20"),
    (r"\bb200\b", "b200"),
    (r"\bb300\b", "b300"),
    (r"\ba100 sxm4 40gb\b|\ba100 40gb sxm4\b", "a100_sxm4_40gb"),
    (r"\ba100\b.*\bpcie\b|\ba100pcie\b", "a100pcie"),
    (r"\ba100\b", "a100"),
    (r"\ba10g\b", "a10g"),
    (r"\ba10\b", "a10"),
    (r"\bl40s\b", "l40s"),
    (r"\bl40\b", "l40"),
    (r"\bl4\b", "l4"),
)

_PCI_RE = re.compile(
    r"^(?:0x)?(?P<dev>[0-9a-f]{4})(?:10de)?$|^(?P<dev2>[0-9a-f]{4}):10de$|^10de:(?P<dev3>[0-9a-f]{4})$"
)
_MIG_RE = re.compile(r"[-_ ]mig[-_ ](?P<g>\d+)g\.\d+gb.*$", re.IGNORECASE)


def pci_device_id(text: str) -> str | None:
    """The 4-hex device id in ``2330``, ``2330:10de``, ``0x233010DE``; else None."""
    match = _PCI_RE.match(text.strip().lower())
    if not match:
        return None
    return match.group("dev") or match.group("dev2") or match.group("dev3")


def _normalise_name(text: str) -> str:
    name = _MIG_RE.sub("", text.strip())
    name = re.sub(r"[-_\s]+", " ", name.lower())
    name = re.sub(r"\bshared\b", " ", name)
    name = re.sub(r"\b(nvidia|tesla|geforce)\b", " ", name)
    return re.sub(r"\s+", " ", name).strip()


def gpu_token(text: str) -> str | None:
    """Map any spelling of a GPU to its NIM profile token, or None if unknown.

    Accepts nvidia-smi names, GPU-feature-discovery label values (with
    ``-SHARED`` and ``-MIG-...`` suffixes), PCI device ids and profile tokens.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    lowered = text.strip().lower()
    if lowered in KNOWN_TOKENS:
        return lowered
    device = pci_device_id(lowered)
    if device is not None and device in PCI_DEVICES:
        return PCI_DEVICES[device][1]
    name = _normalise_name(text)
    for pattern, token in _NAME_RULES:
        if re.search(pattern, name):
            return token
    return None


def tokens_served(token: str | None) -> frozenset[str]:
    """All profile tokens whose profiles a GPU with this token may run."""
    if token is None:
        return frozenset()
    return frozenset({token}) | TOKEN_ALIASES.get(token, frozenset())


def _device_for_name(text: str) -> str | None:
    device = pci_device_id(text)
    if device:
        return device
    token = gpu_token(text)
    matches = [dev for dev, (_, tok) in PCI_DEVICES.items() if tok == token]
    return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class GpuGroup:
    """Identical GPUs: ``count_per_node`` of them on each of ``nodes`` nodes."""

    product: str
    token: str | None
    pci_device_id: str | None = None
    memory_mib: int | None = None
    count_per_node: int | None = 1
    nodes: int = 1
    source: str = "typed"
    mig_slices: int = 0

    @property
    def physical_gpus(self) -> int:
        """GPUs in the group; MIG slices do not add GPUs (7 x 1g = one GPU)."""
        per_node = self.count_per_node or 1
        if self.mig_slices:
            per_node = max(1, math.ceil(per_node * self.mig_slices / 7))
        return per_node * self.nodes

    @property
    def gpus_per_node(self) -> int | None:
        if self.count_per_node is None:
            return None
        return self.physical_gpus // self.nodes

    def describe(self) -> str:
        per = f"{self.gpus_per_node}x " if self.gpus_per_node else ""
        nodes = f" on {self.nodes} nodes" if self.nodes > 1 else ""
        return f"{per}{self.product}{nodes}"


@dataclass
class Inventory:
    """The GPUs of a cluster (or host), grouped, with notes on where they came from."""

    groups: list[GpuGroup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.groups)

    def counts(self) -> dict[str, int]:
        """Profile token -> number of physical GPUs."""
        totals: dict[str, int] = {}
        for group in self.groups:
            if group.token:
                totals[group.token] = totals.get(group.token, 0) + group.physical_gpus
        return totals

    def max_gpus_per_node(self) -> int | None:
        """Largest GPU count on one node, None when any count is unknown."""
        per_node = [g.gpus_per_node for g in self.groups]
        if not per_node or any(n is None for n in per_node):
            return None
        return max(n for n in per_node if n is not None)

    def to_records(self) -> list[dict]:
        return [{**group.__dict__, "physical_gpus": group.physical_gpus} for group in self.groups]

    def describe(self) -> str:
        return ", ".join(g.describe() for g in self.groups) or "no GPUs"


def _grouped(entries: list[GpuGroup]) -> list[GpuGroup]:
    """Merge identical entries (same product, memory, count) into one group."""
    merged: dict[tuple, GpuGroup] = {}
    for entry in entries:
        key = (entry.product, entry.memory_mib, entry.count_per_node, entry.mig_slices, entry.source)
        if key in merged:
            old = merged[key]
            merged[key] = GpuGroup(**{**old.__dict__, "nodes": old.nodes + entry.nodes})
        else:
            merged[key] = entry
    return list(merged.values())


def _host_group(names: list[tuple[str, int | None, str | None]], source: str) -> list[GpuGroup]:
    """GPUs of one host (nvidia-smi): identical products make one group."""
    counts: dict[tuple[str, int | None, str | None], int] = {}
    for entry in names:
        counts[entry] = counts.get(entry, 0) + 1
    return [
        GpuGroup(
            product=name,
            token=gpu_token(device or name) or gpu_token(name),
            pci_device_id=device or _device_for_name(name),
            memory_mib=memory,
            count_per_node=count,
            source=source,
        )
        for (name, memory, device), count in counts.items()
    ]


_SMI_L_RE = re.compile(r"^GPU \d+: (?P<name>.+?) \(UUID: GPU-[^)]*\)\s*$")
_SMI_TABLE_RE = re.compile(r"^\|\s+\d+\s+(?P<name>\S.*?)\s{2,}(?:On|Off)\s+\|")
_SMI_TABLE_MEM_RE = re.compile(r"\d+MiB\s*/\s*(?P<mem>\d+)MiB")


def _mib(value: str) -> int | None:
    match = re.search(r"(\d+)\s*MiB", value)
    return int(match.group(1)) if match else None


def inventory_from_nvidia_smi(text: str) -> Inventory:
    """GPUs of one host from nvidia-smi output: ``-L``, CSV (with or without header) or the table.

    MIG devices listed under a GPU in ``-L`` output are slices of it, not GPUs.
    """
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    found: list[tuple[str, int | None, str | None]] = []
    if any(_SMI_L_RE.match(line) for line in lines):
        for line in lines:
            if match := _SMI_L_RE.match(line):
                found.append((match.group("name"), None, None))
        return Inventory(_host_group(found, "nvidia-smi -L"))
    if any(_SMI_TABLE_RE.match(line) for line in lines):
        for i, line in enumerate(lines):
            if match := _SMI_TABLE_RE.match(line):
                mem = _SMI_TABLE_MEM_RE.search(lines[i + 1]) if i + 1 < len(lines) else None
                found.append((match.group("name"), int(mem.group("mem")) if mem else None, None))
        return Inventory(_host_group(found, "nvidia-smi"))
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO("\n".join(lines)))]
    rows = [row for row in rows if row]
    if not rows:
        raise InputError(
            "The nvidia-smi output is empty.",
            hint="Run `nvidia-smi -L` or `nvidia-smi --query-gpu=name,memory.total,pci.device_id "
            "--format=csv` on a cluster node and pass what it prints.",
        )
    header = [cell.lower() for cell in rows[0]]
    if "name" in header:
        col_name = header.index("name")
        col_mem = next((i for i, h in enumerate(header) if h.startswith("memory.total")), None)
        col_pci = next((i for i, h in enumerate(header) if h.startswith("pci.device_id")), None)
        body = rows[1:]
    else:  # noheader: recognise the columns by their values
        sample = rows[0]
        col_name = next((i for i, v in enumerate(sample) if gpu_token(v) or re.match(r"(NVIDIA|Tesla)\b", v)), None)
        col_mem = next((i for i, v in enumerate(sample) if v.endswith("MiB")), None)
        col_pci = next((i for i, v in enumerate(sample) if re.fullmatch(r"0x[0-9A-Fa-f]{8}", v)), None)
        body = rows
        if col_name is None:
            raise InputError(
                f"Cannot find a GPU name in the nvidia-smi output (first line: {sample!r}).",
                hint="Query the name column: `nvidia-smi --query-gpu=name,memory.total --format=csv`.",
            )
    for row in body:
        if len(row) <= col_name:
            continue
        memory = _mib(row[col_mem]) if col_mem is not None and col_mem < len(row) else None
        device = pci_device_id(row[col_pci]) if col_pci is not None and col_pci < len(row) else None
        found.append((row[col_name], memory, device))
    return Inventory(_host_group(found, "nvidia-smi --query-gpu"))


def inventory_from_local_host(nvidia_smi: str = "nvidia-smi") -> Inventory:
    """The GPUs of this machine; no nvidia-smi means an empty inventory and a note."""
    if shutil.which(nvidia_smi) is None:
        return Inventory(
            notes=[
                "nvidia-smi is not installed on this host, so it has no GPU inventory. That is "
                "normal on a staging host: describe the cluster's GPUs instead (typed, or from "
                "its node labels)."
            ]
        )
    query = [nvidia_smi, "--query-gpu=name,memory.total,pci.device_id", "--format=csv"]
    result = subprocess.run(query, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return Inventory(notes=[f"nvidia-smi failed ({result.stderr.strip()[:200]}); no local GPUs used."])
    return inventory_from_nvidia_smi(result.stdout)


def _node_from_labels(labels: dict[str, str], source: str) -> GpuGroup | None:
    product = labels.get("nvidia.com/gpu.product")
    if not product:
        return None
    count = labels.get("nvidia.com/gpu.count")
    memory = labels.get("nvidia.com/gpu.memory")
    mig = _MIG_RE.search(product)
    base = _MIG_RE.sub("", product)
    base = re.sub(r"-SHARED$", "", base)
    return GpuGroup(
        product=base,
        token=gpu_token(product),
        pci_device_id=_device_for_name(base),
        memory_mib=int(memory) if memory and memory.isdigit() else None,
        count_per_node=int(count) if count and count.isdigit() else None,
        source=source,
        mig_slices=int(mig.group("g")) if mig else 0,
    )


def _label_blocks(text: str) -> list[dict[str, str]]:
    """``key=value`` lines (or ``--show-labels`` comma lists); a blank line or a
    repeated ``gpu.product`` starts the next node."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            if current and not line:
                blocks.append(current)
                current = {}
            continue
        for item in line.split(",") if "," in line and line.count("=") > 1 else [line]:
            key, sep, value = item.partition("=")
            if not sep:
                key, sep, value = item.partition(":")
            if not sep:
                continue
            key, value = key.strip(), value.strip()
            if key == "nvidia.com/gpu.product" and key in current:
                blocks.append(current)
                current = {}
            current[key] = value
    if current:
        blocks.append(current)
    return blocks


def inventory_from_node_labels(text: str) -> Inventory:
    """GPU nodes from ``kubectl get nodes -o json`` or ``label=value`` lines.

    Nodes without ``nvidia.com/gpu.product`` are skipped; identical nodes are
    grouped.
    """
    stripped = text.strip()
    nodes: list[GpuGroup] = []
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"The node list is not valid JSON ({exc}).",
                hint="Pass the output of `kubectl get nodes -o json` unchanged.",
            ) from None
        items = document.get("items", [document]) if isinstance(document, dict) else []
        for item in items:
            labels = (item.get("metadata") or {}).get("labels") or {}
            if group := _node_from_labels(labels, "kubernetes node labels"):
                nodes.append(group)
    else:
        for block in _label_blocks(text):
            if group := _node_from_labels(block, "kubernetes node labels"):
                nodes.append(group)
    inventory = Inventory(_grouped(nodes))
    if not nodes:
        inventory.notes.append(
            "No node carries an nvidia.com/gpu.product label: is NVIDIA GPU feature discovery "
            "(part of the GPU Operator) running in the cluster?"
        )
    return inventory


def inventory_from_cluster(kubeconfig: str | None = None, context: str | None = None) -> Inventory:
    """The GPU nodes of a live cluster, read through the kubernetes client."""
    from kubernetes import client, config  # imported late: optional at run time

    try:
        config.load_kube_config(config_file=kubeconfig, context=context)
    except Exception as exc:  # noqa: BLE001 - the client raises several unrelated types here
        raise InputError(
            f"Cannot load the kubeconfig ({type(exc).__name__}: {exc}).",
            hint="Pass --kubeconfig, or read the labels elsewhere with "
            "`kubectl get nodes -o json > nodes.json` and use that file.",
        ) from None
    api = client.CoreV1Api()
    nodes = api.list_node(label_selector="nvidia.com/gpu.product")
    document = {"items": [{"metadata": {"labels": n.metadata.labels or {}}} for n in nodes.items]}
    return inventory_from_node_labels(json.dumps(document))


_TYPED_RE = re.compile(r"^(?:(?P<n>\d+)\s*[x×*]\s*)?(?P<name>.+?)(?:\s*[x×*]\s*(?P<m>\d+))?$", re.IGNORECASE)


def inventory_from_text(text: str) -> Inventory:
    """A typed inventory: ``"L40S, 2xA10G"``; each item is the GPUs of one node."""
    groups: list[GpuGroup] = []
    for item in re.split(r"[,;+\n]", text):
        item = item.strip()
        if not item:
            continue
        match = _TYPED_RE.match(item)
        name = match.group("name").strip() if match else item
        count = int((match.group("n") or match.group("m") or 1) if match else 1)
        token = gpu_token(name)
        if token is None:
            known = ", ".join(sorted(KNOWN_TOKENS))
            raise UnknownGpuError(
                f"Unknown GPU name {name!r} in the GPU inventory {text!r}.",
                hint=f'Use an nvidia-smi name ("NVIDIA L40S"), a node label value '
                f'("NVIDIA-H100-80GB-HBM3"), a PCI id ("26b9") or a profile token ({known}).',
            )
        device = pci_device_id(name) or _device_for_name(name)
        product = PCI_DEVICES[device][0] if device in PCI_DEVICES else name
        groups.append(GpuGroup(product, token, device, None, count, 1, "typed"))
    if not groups:
        raise InputError(
            "The GPU inventory is empty.",
            hint='Type the GPUs of each node, e.g. "L40S, 2xA10G" (one L40S node, one node with two A10G).',
        )
    return Inventory(_grouped(groups))
