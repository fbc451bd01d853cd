"""Which profiles a cluster needs: the guide's §3.2 rules, with a reason per row.

The rules err towards downloading more: a profile that is not in the bucket
cannot be served inside the air gap, while an extra one only costs disk. NIM
itself then picks the best profile present at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import pandas as pd

from nimrunbook.gpus import GpuGroup, Inventory, tokens_served


def _as_set(values: Iterable[str] | None) -> set[str] | None:
    return {v.lower() for v in values} if values else None


def _gpus_needed(row: pd.Series) -> int | None:
    tp, pp = row.get("tp"), row.get("pp")
    if tp is None or pd.isna(tp):
        return None
    return int(tp) * (1 if pp is None or pd.isna(pp) else int(pp))


def _matching_groups(row: pd.Series, inventory: Inventory) -> list[tuple[GpuGroup, str]]:
    """Groups that can run this GPU-specific profile, with how they matched."""
    device, token = row.get("gpu_device"), row.get("gpu")
    regex = row.get("product_name_regex")
    found = []
    for group in inventory.groups:
        if isinstance(device, str) and device and group.pci_device_id:
            if device == group.pci_device_id:
                found.append((group, f"PCI device {device}"))
        elif isinstance(token, str) and token and token in tokens_served(group.token):
            found.append((group, f"GPU {token}"))
        elif isinstance(regex, str) and regex and re.search(regex, group.product.replace(" ", "-")):
            found.append((group, f"product pattern {regex}"))
    return found


def _decide(row: pd.Series, inventory: Inventory, lora: bool, engines, precisions) -> tuple[bool, str]:
    if row.get("lora") is True and not lora:
        return False, "skipped: LoRA not wanted"
    engine = row.get("engine")
    if engines is not None and (not isinstance(engine, str) or engine.lower() not in engines):
        return False, f"skipped: engine {engine} not wanted"
    precision = row.get("precision")
    if precisions is not None and (not isinstance(precision, str) or precision.lower() not in precisions):
        return False, f"skipped: precision {precision} not wanted"
    generic = row.get("generic")
    if generic is None or pd.isna(generic):
        return False, "skipped: name not understood (select it by id if it is needed)"
    needed = _gpus_needed(row)
    if generic:
        largest = inventory.max_gpus_per_node()
        if needed and largest is not None and needed > largest:
            return False, f"skipped: needs {needed} GPUs per node, nodes have at most {largest}"
        return True, "generic: runs on any GPU"
    if not inventory:
        return False, "skipped: no GPU inventory given"
    matches = _matching_groups(row, inventory)
    if not matches:
        wanted = row.get("gpu") or row.get("gpu_device") or row.get("product_name_regex")
        return False, f"skipped: built for {wanted}; the cluster has {inventory.describe()}"
    fitting = [(g, how) for g, how in matches if not needed or g.gpus_per_node is None or needed <= g.gpus_per_node]
    if not fitting:
        group = matches[0][0]
        return False, f"skipped: needs {needed} GPUs per node, {group.product} nodes have {group.gpus_per_node}"
    group, how = fitting[0]
    return True, f"matches {group.product} (by {how})"


def select_profiles(
    profiles: pd.DataFrame,
    inventory: Inventory,
    *,
    lora: bool = True,
    engines: Iterable[str] | None = None,
    precisions: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The profiles with a boolean ``selected`` column and a readable ``reason``.

    Rules: every generic profile; every profile whose GPU token matches a GPU
    present, or whose manifest ``gpu_device`` matches a PCI id present when both
    are known; ``lora=False`` drops LoRA variants; TP x PP above the GPUs of a
    node is dropped when counts are known.
    """
    engine_set, precision_set = _as_set(engines), _as_set(precisions)
    decisions = [_decide(row, inventory, lora, engine_set, precision_set) for _, row in profiles.iterrows()]
    result = profiles.copy()
    result["selected"] = [selected for selected, _ in decisions]
    result["reason"] = [reason for _, reason in decisions]
    return result


def selected_ids(selection: pd.DataFrame) -> list[str]:
    """The ids to pass to ``download-to-cache --profiles``, in listing order."""
    return [str(i) for i in selection.loc[selection["selected"], "id"]]
