"""The cluster's GPU inventory, from whatever form it is described in.

The staging host that downloads profiles is usually not the cluster, so the
inventory comes from what people have at hand: typed names, the cluster's
GPU-feature-discovery node labels, ``nvidia-smi`` output (``-L``, the table,
``--query-gpu`` CSV with or without ``pci.device_id``, ``-q``), or the SYSTEM
INFO block of a ``list-model-profiles`` run. Every entry is identified as one
:class:`~nimrunbook.gpu_models.GpuModel` (see :func:`~nimrunbook.gpu_models.identify`),
and a group carries the model's canonical facts, never the spelling, so the
selection cannot depend on how the GPUs were written down.
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
from nimrunbook.gpu_models import (
    KNOWN_TOKENS,
    GpuModel,
    gpu_token,
    identify,
    known_names,
    mig_slices,
    pci_device_id,
)

__all__ = [
    "KNOWN_TOKENS",
    "GpuGroup",
    "Inventory",
    "gpu_token",
    "identify",
    "inventory_from_cluster",
    "inventory_from_listing",
    "listing_host",
    "inventory_from_local_host",
    "inventory_from_node_labels",
    "inventory_from_nvidia_smi",
    "inventory_from_text",
    "pci_device_id",
]


@dataclass(frozen=True)
class GpuGroup:
    """Identical GPUs: ``count_per_node`` of them on each of ``nodes`` nodes.

    ``product``, ``token``, ``pci_device_id`` and ``compute_capability`` are the
    identified model's; ``spelled_as`` keeps what the source said.
    """

    product: str
    token: str | None
    pci_device_id: str | None = None
    memory_mib: int | None = None
    count_per_node: int | None = 1
    nodes: int = 1
    source: str = "typed"
    mig_slices: int = 0
    compute_capability: float | None = None
    spelled_as: str = ""

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


def gpu_group(
    spelled: str,
    *,
    memory_mib: int | None = None,
    device: str | None = None,
    count: int | None = 1,
    source: str = "typed",
    mig: int = 0,
) -> GpuGroup:
    """A group of one GPU spelling, identified: the PCI id when the source gives it, else the name."""
    model: GpuModel | None = identify(device) if device else None
    model = model or identify(spelled, memory_mib)
    if model is None:
        return GpuGroup(spelled.strip(), None, device, memory_mib, count, 1, source, mig, None, spelled.strip())
    return GpuGroup(
        product=model.product,
        token=model.token,
        pci_device_id=model.pci_device_id,
        memory_mib=memory_mib if memory_mib is not None else model.memory_mib,
        count_per_node=count,
        source=source,
        mig_slices=mig,
        compute_capability=model.compute_capability,
        spelled_as=spelled.strip(),
    )


@dataclass
class Inventory:
    """The GPUs of a cluster (or host), grouped, with notes on where they came from."""

    groups: list[GpuGroup] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.groups)

    def counts(self) -> dict[str, int]:
        """Profile token (or product, for GPUs no profile names) -> number of physical GPUs."""
        totals: dict[str, int] = {}
        for group in self.groups:
            key = group.token or group.product
            totals[key] = totals.get(key, 0) + group.physical_gpus
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
    """Merge identical node entries (same GPU, memory, count) into one group of several nodes."""
    merged: dict[tuple, GpuGroup] = {}
    for entry in entries:
        key = (entry.product, entry.memory_mib, entry.count_per_node, entry.mig_slices, entry.source)
        if key in merged:
            old = merged[key]
            merged[key] = GpuGroup(**{**old.__dict__, "nodes": old.nodes + entry.nodes})
        else:
            merged[key] = entry
    return list(merged.values())


def _host_groups(found: list[tuple[str, int | None, str | None]], source: str) -> list[GpuGroup]:
    """GPUs of one host: every GPU model there makes one group of its count."""
    singles = [gpu_group(name, memory_mib=memory, device=device, source=source) for name, memory, device in found]
    counts: dict[tuple, tuple[GpuGroup, int]] = {}
    for group in singles:
        key = (group.product, group.memory_mib)
        first, count = counts.get(key, (group, 0))
        counts[key] = (first, count + 1)
    return [GpuGroup(**{**first.__dict__, "count_per_node": count}) for first, count in counts.values()]


# ---- nvidia-smi -------------------------------------------------------------------------------

_SMI_L_RE = re.compile(r"^GPU \d+: (?P<name>.+?) \(UUID: GPU-[^)]*\)\s*$")
_SMI_TABLE_RE = re.compile(r"^\|\s+\d+\s+(?P<name>\S.*?)\s{2,}(?:On|Off)\s+\|")
_SMI_TABLE_MEM_RE = re.compile(r"\d+MiB\s*/\s*(?P<mem>\d+)MiB")
_SMI_Q_GPU_RE = re.compile(r"^GPU [0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]\s*$")
_SMI_Q_ITEM_RE = re.compile(r"^(?P<indent>\s*)(?P<key>[^:]+?)\s*:\s*(?P<value>.*?)\s*$")


def _mib(value: str) -> int | None:
    match = re.search(r"(\d+)\s*MiB", value)
    return int(match.group(1)) if match else None


def _smi_q(lines: list[str]) -> tuple[list[tuple[str, int | None, str | None]], int | None]:
    """GPUs of ``nvidia-smi -q``: (name, FB memory total, PCI device id) per GPU block, and Attached GPUs."""
    gpus: list[dict] = []
    attached = None
    section = ""
    for line in lines:
        if _SMI_Q_GPU_RE.match(line):
            gpus.append({})
            section = ""
            continue
        match = _SMI_Q_ITEM_RE.match(line)
        if match is None:
            if line.startswith("    ") and not line.startswith("     "):
                section = line.strip().lower()
            continue
        key, value, indent = match.group("key").strip().lower(), match.group("value"), len(match.group("indent"))
        if key == "attached gpus" and value.isdigit():
            attached = int(value)
        if not gpus:
            continue
        if indent <= 4:
            section = ""
        if key == "product name":
            gpus[-1]["name"] = value
        elif key == "device id" and section == "pci":
            gpus[-1]["device"] = pci_device_id(value)
        elif key == "total" and section == "fb memory usage":
            gpus[-1]["memory"] = _mib(value)
    found = [(g["name"], g.get("memory"), g.get("device")) for g in gpus if g.get("name")]
    return found, attached


def _smi_csv(lines: list[str]) -> list[tuple[str, int | None, str | None]]:
    rows = [[cell.strip() for cell in row] for row in csv.reader(io.StringIO("\n".join(lines)))]
    rows = [row for row in rows if row]
    header = [cell.lower() for cell in rows[0]]
    if "name" in header:
        col_name = header.index("name")
        col_mem = next((i for i, h in enumerate(header) if h.startswith("memory.total")), None)
        col_pci = next((i for i, h in enumerate(header) if h.startswith("pci.device_id")), None)
        body = rows[1:]
    else:  # noheader: recognise the columns by their values
        sample = rows[0]
        col_name = next((i for i, v in enumerate(sample) if identify(v) or re.match(r"(NVIDIA|Tesla)\b", v)), None)
        col_mem = next((i for i, v in enumerate(sample) if v.endswith("MiB")), None)
        col_pci = next((i for i, v in enumerate(sample) if re.fullmatch(r"0x[0-9A-Fa-f]{8}", v)), None)
        body = rows
        if col_name is None:
            raise InputError(
                f"Cannot find a GPU name in the nvidia-smi output (first line: {sample!r}).",
                hint="Pass `nvidia-smi -L`, `nvidia-smi -q`, or `nvidia-smi --query-gpu=name,memory.total,"
                "pci.device_id --format=csv` output of a cluster node.",
            )
    found = []
    for row in body:
        if len(row) <= col_name:
            continue
        memory = _mib(row[col_mem]) if col_mem is not None and col_mem < len(row) else None
        device = pci_device_id(row[col_pci]) if col_pci is not None and col_pci < len(row) else None
        found.append((row[col_name], memory, device))
    return found


def inventory_from_nvidia_smi(text: str) -> Inventory:
    """GPUs of one host from nvidia-smi output: ``-L``, ``-q``, the table, or ``--query-gpu`` CSV.

    MIG devices listed under a GPU in ``-L`` output are slices of it, not GPUs.
    """
    lines = [line.rstrip() for line in text.replace("\r", "").splitlines() if line.strip()]
    if not lines:
        raise InputError(
            "The nvidia-smi output is empty.",
            hint="Run `nvidia-smi -L` or `nvidia-smi --query-gpu=name,memory.total,pci.device_id "
            "--format=csv` on a cluster node and pass what it prints.",
        )
    if any(_SMI_L_RE.match(line) for line in lines):
        found = [(m.group("name"), None, None) for line in lines if (m := _SMI_L_RE.match(line))]
        return Inventory(_host_groups(found, "nvidia-smi -L"))
    if any(line.strip() == "==============NVSMI LOG==============" for line in lines) or any(
        re.match(r"^\s+Product Name\s+:", line) for line in lines
    ):
        return _inventory_from_smi_q(lines)
    if any(_SMI_TABLE_RE.match(line) for line in lines):
        found = []
        for i, line in enumerate(lines):
            if match := _SMI_TABLE_RE.match(line):
                mem = _SMI_TABLE_MEM_RE.search(lines[i + 1]) if i + 1 < len(lines) else None
                found.append((match.group("name"), int(mem.group("mem")) if mem else None, None))
        return Inventory(_host_groups(found, "nvidia-smi"))
    return Inventory(_host_groups(_smi_csv(lines), "nvidia-smi --query-gpu"))


def _inventory_from_smi_q(lines: list[str]) -> Inventory:
    found, attached = _smi_q(lines)
    if not found:
        raise InputError(
            "The nvidia-smi -q output names no GPU (no `Product Name` under a `GPU <bus id>` line).",
            hint="Pass the complete output of `nvidia-smi -q` run on a cluster node.",
        )
    inventory = Inventory(_host_groups(found, "nvidia-smi -q"))
    if attached and attached > len(found) and len(inventory.groups) == 1:
        (group,) = inventory.groups
        inventory.groups = [GpuGroup(**{**group.__dict__, "count_per_node": attached})]
        inventory.notes.append(
            f"nvidia-smi -q describes {len(found)} of the host's {attached} attached GPUs (run with -i?); "
            f"all {attached} are counted as {group.product}."
        )
    return inventory


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


# ---- list-model-profiles SYSTEM INFO ----------------------------------------------------------

_LISTING_GPU_RE = re.compile(r"^\s*-\s+\[(?P<dev>[0-9a-fA-F]{4}):10de\]\s*\(\d+\)\s*(?P<rest>.*)$")
_LISTING_TAIL_RE = re.compile(r"\s*\[current utilization[^\]]*\]\s*$")
_LISTING_FAMILY_RE = re.compile(r"\s*\([^()]*\)\s*$")


def inventory_from_listing(text: str) -> Inventory:
    """The GPUs of the host that ran ``list-model-profiles``, from its SYSTEM INFO block.

    Free and non-free GPUs both count: NIM judges compatibility on all of them
    (busy ones only make a profile "not runnable"). Empty when the listing ran
    without GPUs, or when only its profile list was kept.
    """
    found = []
    for raw in text.replace("\r", "").splitlines():
        line = raw.expandtabs()
        if line.lstrip().startswith("MODEL PROFILES"):
            break
        if match := _LISTING_GPU_RE.match(line):
            name = _LISTING_FAMILY_RE.sub("", _LISTING_TAIL_RE.sub("", match.group("rest")))
            found.append((name.strip(), None, match.group("dev").lower()))
    return Inventory(_host_groups(found, "list-model-profiles SYSTEM INFO"))


def listing_host(text: str, typed: str = "") -> Inventory:
    """The host a listing ran on: the GPUs a person names (``typed``), else its SYSTEM INFO block."""
    if typed.strip():
        return inventory_from_text(typed)
    return inventory_from_listing(text)


# ---- Kubernetes node labels -------------------------------------------------------------------


def _node_from_labels(labels: dict[str, str], source: str) -> GpuGroup | None:
    product = labels.get("nvidia.com/gpu.product")
    if not product:
        return None
    count = labels.get("nvidia.com/gpu.count")
    memory = labels.get("nvidia.com/gpu.memory")
    return gpu_group(
        product,
        memory_mib=int(memory) if memory and memory.isdigit() else None,
        count=int(count) if count and count.isdigit() else None,
        source=source,
        mig=mig_slices(product),
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


def _node_items(document) -> list[dict]:
    """The nodes of ``kubectl get nodes -o json`` (a list) or of one node's JSON; anything else is refused,
    never read as a cluster without GPUs."""
    if isinstance(document, dict) and isinstance(document.get("items"), list):
        items = document["items"]
    elif isinstance(document, dict) and document.get("kind") == "Node":
        items = [document]
    else:
        kind = document.get("kind") if isinstance(document, dict) else type(document).__name__
        raise InputError(
            f"The node list is JSON, but not Kubernetes nodes (it holds {kind or 'no kind'}).",
            hint="Pass the output of `kubectl get nodes -o json` unchanged.",
        )
    if not all(isinstance(item, dict) and item.get("kind", "Node") == "Node" for item in items):
        raise InputError(
            "The node list holds items that are not Kubernetes nodes.",
            hint="Pass the output of `kubectl get nodes -o json` unchanged.",
        )
    return items


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
            ) from exc
        for item in _node_items(document):
            labels = (item.get("metadata") or {}).get("labels") or {}
            if group := _node_from_labels(labels, "kubernetes node labels"):
                nodes.append(group)
    else:
        blocks = _label_blocks(text)
        if not any("/" in key for block in blocks for key in block):  # every node has kubernetes.io/... labels
            raise InputError(
                "The node labels hold no Kubernetes label: no line reads like nvidia.com/gpu.product=NVIDIA-L4.",
                hint="Pass `kubectl get nodes -o json`, or the nodes' labels one label=value a line.",
            )
        for block in blocks:
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
        ) from exc
    api = client.CoreV1Api()
    nodes = api.list_node(label_selector="nvidia.com/gpu.product")
    document = {"items": [{"metadata": {"labels": n.metadata.labels or {}}} for n in nodes.items]}
    return inventory_from_node_labels(json.dumps(document))


# ---- typed ------------------------------------------------------------------------------------

_COUNT_FIRST_RE = re.compile(r"^(?P<n>\d+)\s*[x×*]\s*(?P<name>.+)$", re.IGNORECASE)
_COUNT_LAST_RE = re.compile(r"^(?P<name>.+?)\s*[x×*]\s*(?P<n>\d+)$", re.IGNORECASE)


def _typed_item(item: str) -> tuple[str, int]:
    """``8xB200``, ``H100 x 8``, ``RTX 5090``, ``0x20B510DE`` -> (name, count): a count is read
    only where what remains names a GPU (``RTX 5090`` is not 5090 ``RT``)."""
    for pattern in (_COUNT_FIRST_RE, _COUNT_LAST_RE):
        match = pattern.match(item)
        if match and int(match.group("n")) > 0 and identify(match.group("name").strip()) is not None:
            return match.group("name").strip(), int(match.group("n"))
    return item, 1


def inventory_from_text(text: str) -> Inventory:
    """A typed inventory: ``"L40S, 2xA10G"``; each item is the GPUs of one node."""
    groups: list[GpuGroup] = []
    for item in re.split(r"[,;+\n]", text):
        item = item.strip()
        if not item:
            continue
        name, count = _typed_item(item)
        if identify(name) is None:
            raise UnknownGpuError(
                f"Unknown GPU name {name!r} in the GPU inventory {text!r}.",
                hint=f'Use an nvidia-smi name ("NVIDIA L40S"), a node label value '
                f'("NVIDIA-H100-80GB-HBM3"), a PCI id ("26b9", "0x26B910DE") or a profile token '
                f"({known_names()}).",
            )
        groups.append(gpu_group(name, count=count, source="typed"))
    if not groups:
        raise InputError(
            "The GPU inventory is empty.",
            hint='Type the GPUs of each node, e.g. "L40S, 2xA10G" (one L40S node, one node with two A10G).',
        )
    return Inventory(_grouped(groups))
