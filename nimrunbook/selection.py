"""Which profiles a cluster needs: the guide's §3.2 rules, with a reason per row.

Two questions are kept apart. *Can the cluster run it?* (``runs``) is the
hardware verdict NIM itself gives in ``list-model-profiles``: the profile's GPU
(PCI device, else profile token, else product pattern; ``ampereplus:enabled``
profiles on any GPU of compute capability 8.0 or newer), enough GPUs on one
node, a compute capability that has the profile's precision, and weights that
fit in the GPUs' memory. *Is it wanted?* applies the user's filters (LoRA,
engines, precisions). ``selected`` is both.

Where the rules cannot know (no memory figure, no GPU count), they keep the
profile: a profile missing from the bucket cannot be served inside the air gap,
while an extra one only costs disk. NIM then picks the best profile present.
:func:`check_against_listing` compares the hardware verdict with NIM's own,
where a listing ran on a host with GPUs.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from nimrunbook.errors import InputError, UnknownProfileError, require_bool
from nimrunbook.gpus import GpuGroup, Inventory
from nimrunbook.profiles.names import BYTES_PER_PARAMETER

# "CUDA compute capability > 7.0 (8.0 for bfloat16)": NIM for LLMs support matrix (1.1.0 and later).
MIN_COMPUTE_CAPABILITY = {"bf16": 8.0}

# ``ampereplus:enabled``: built on Ampere, runs on Ampere and newer (Riva NIM support matrix:
# prebuilt models on GPUs with compute capability >= 8.0).
AMPERE_PLUS = 8.0

# NIM's sections that mean "this host can run it" (busy or low free memory is not incompatible).
NIM_RUNS = {"compatible": True, "compatible_low_memory": True, "compilable": True, "incompatible": False}

_ID_RE = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{64}(?![0-9a-fA-F])")
_ID_PREFIX_RE = re.compile(r"^[0-9a-fA-F]{4,63}(?:\.\.\.|…)?$")


def _value(row: pd.Series, column: str):
    value = row.get(column)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value


def gpus_needed(row: pd.Series) -> int | None:
    """GPUs one instance of the profile takes: the manifest's ``number_of_gpus``, else TP x PP."""
    declared = _value(row, "number_of_gpus")
    if declared:
        return int(declared)
    tp, pp = _value(row, "tp"), _value(row, "pp")
    if tp is None:
        return None
    return int(tp) * (int(pp) if pp else 1)


def memory_per_gpu(row: pd.Series, parameters_b: float | None) -> tuple[float | None, str]:
    """Bytes of GPU memory one GPU needs at least, and how that figure was reached."""
    needs: list[tuple[float, str]] = []
    stated = _value(row, "min_gpu_memory_gb")
    if stated:
        needs.append((float(stated) * 1e9, f"the profile requires >= {float(stated):g} GB per GPU"))
    precision = (_value(row, "precision") or "").lower()
    if parameters_b and precision in BYTES_PER_PARAMETER:
        gpus = gpus_needed(row) or 1
        total = parameters_b * 1e9 * BYTES_PER_PARAMETER[precision]
        over = f" over {gpus} GPUs" if gpus > 1 else ""
        needs.append((total / gpus, f"{parameters_b:g}B parameters in {precision} are ~{total / 1e9:.0f} GB{over}"))
    return max(needs) if needs else (None, "")


def _gpu_match(row: pd.Series, group: GpuGroup) -> str | None:
    """How this GPU-specific profile matches the group's GPU, or None."""
    device, token, regex = _value(row, "gpu_device"), _value(row, "gpu"), _value(row, "product_name_regex")
    if _value(row, "ampere_plus") is True and (group.compute_capability or 0) >= AMPERE_PLUS:
        return f"ampereplus: built for {token or device}, runs on compute capability {AMPERE_PLUS:g}+"
    if device and group.pci_device_id:
        return f"PCI device {device}" if device == group.pci_device_id else None
    if token and group.token:
        return f"GPU {token}" if token == group.token else None
    if token or device:
        return None
    if regex:
        label = re.sub(r"\s+", "-", group.product)
        return f"product pattern {regex}" if re.search(regex, label) else None
    return None


def _fit(row: pd.Series, group: GpuGroup, parameters_b: float | None) -> str | None:
    """Why the group cannot run the profile (count, precision, memory), or None when it can."""
    needed = gpus_needed(row)
    if needed and group.gpus_per_node is not None and needed > group.gpus_per_node:
        return f"needs {needed} GPUs per node, {group.product} nodes have {group.gpus_per_node}"
    precision = (_value(row, "precision") or "").lower()
    floor = MIN_COMPUTE_CAPABILITY.get(precision)
    if floor and group.compute_capability is not None and group.compute_capability < floor:
        return f"{precision} needs compute capability {floor:g}+, {group.product} has {group.compute_capability:g}"
    need, why = memory_per_gpu(row, parameters_b)
    if need and group.memory_mib:
        have = group.memory_mib * 2**20
        if need > have:
            return (
                f"does not fit: {why}, ~{need / 1e9:.0f} GB per GPU; "
                f"{group.product} has {have / 1e9:.0f} GB ({group.memory_mib} MiB)"
            )
    return None


def _target(row: pd.Series) -> str | None:
    return _value(row, "gpu") or _value(row, "gpu_device") or _value(row, "product_name_regex")


def hardware_verdict(
    row: pd.Series, inventory: Inventory, parameters_b: float | None = None
) -> tuple[bool | None, str]:
    """Can some GPU group of the inventory run this profile? (verdict, reason); None: cannot tell."""
    generic = _value(row, "generic")
    if generic is None:
        return None, "name not understood (select it by id if it is needed)"
    if not generic and _target(row) is None and _value(row, "ampere_plus") is not True:
        return False, "built for a GPU its name does not state (pass the image's manifest, or select it by id)"
    if not inventory:
        if generic:
            return True, "generic: runs on any GPU"
        return False, "no GPU inventory given"
    matched: list[str] = []
    for group in inventory.groups:
        how = "generic" if generic else _gpu_match(row, group)
        if how is None:
            continue
        if (problem := _fit(row, group, parameters_b)) is not None:
            matched.append(problem)
            continue
        if generic:
            return True, "generic: runs on any GPU"
        return True, f"matches {group.product} (by {how})"
    if matched:
        return False, matched[0]
    wanted = _target(row)
    return False, f"built for {wanted}; the cluster has {inventory.describe()}"


def _unwanted(row: pd.Series, lora: bool, engines: set[str] | None, precisions: set[str] | None) -> str | None:
    if _value(row, "lora") and not lora:  # a numpy bool is not `True`: truth, not identity
        return "LoRA not wanted"
    engine = _value(row, "engine")
    if engines is not None and (not isinstance(engine, str) or engine.lower() not in engines):
        return f"engine {engine} not wanted"
    precision = _value(row, "precision")
    if precisions is not None and (not isinstance(precision, str) or precision.lower() not in precisions):
        return f"precision {precision} not wanted"
    return None


def _warning(row: pd.Series) -> str:
    files = _value(row, "files")  # set from a manifest: enrich(), or Manifest.profiles_frame()
    if _value(row, "in_manifest") is not False and files is not None and int(files) == 0:
        return "the manifest lists no files for this profile: publishing it would upload nothing"
    return ""


def select_profiles(
    profiles: pd.DataFrame,
    inventory: Inventory,
    *,
    lora: bool = True,
    engines: Iterable[str] | None = None,
    precisions: Iterable[str] | None = None,
    parameters_b: float | None = None,
) -> pd.DataFrame:
    """The profiles with ``runs`` (hardware verdict), ``selected``, a readable ``reason`` and a ``warning``.

    ``parameters_b`` (billions of parameters, see
    :func:`nimrunbook.profiles.model_parameters_b`) lets the rules tell when a
    profile's weights cannot fit in the GPUs' memory.
    """
    require_bool("lora", lora)
    engine_set = {e.lower() for e in engines} if engines else None
    precision_set = {p.lower() for p in precisions} if precisions else None
    runs, selected, reasons = [], [], []
    for _, row in profiles.iterrows():
        verdict, why = hardware_verdict(row, inventory, parameters_b)
        unwanted = _unwanted(row, lora, engine_set, precision_set)
        runs.append(verdict)
        selected.append(bool(verdict) and unwanted is None)
        if unwanted is not None:
            reasons.append(f"skipped: {unwanted}")
        else:
            reasons.append(why if verdict else f"skipped: {why}")
    result = profiles.copy()
    result["runs"] = pd.array(runs, dtype="boolean")
    result["selected"] = selected
    result["reason"] = reasons
    result["warning"] = [_warning(row) for _, row in profiles.iterrows()]
    return result


def selected_ids(selection: pd.DataFrame) -> list[str]:
    """The ids to pass to ``download-to-cache --profiles``, in listing order."""
    return [str(i) for i in selection.loc[selection["selected"], "id"]]


def plan_warnings(selection: pd.DataFrame) -> list[str]:
    """One line per selected profile that carries a warning."""
    chosen = selection[selection["selected"] & (selection["warning"] != "")]
    return [f"{row['id'][:12]} ({row['name']}): {row['warning']}" for _, row in chosen.iterrows()]


# ---- the self-check against NIM's own verdict -------------------------------------------------

CHECK_COLUMNS = ["id", "name", "nim_section", "nim_says", "rules_say", "rules_reason", "risk"]


def check_against_listing(listing: pd.DataFrame, host: Inventory, *, parameters_b: float | None = None) -> pd.DataFrame:
    """Every profile where the rules, run for the listing's own host, disagree with NIM's sections.

    ``listing`` is a parsed (optionally enriched) listing that ran on a host
    with GPUs; ``host`` is that host (its SYSTEM INFO block, or what the user
    says). ``risk`` is ``missing`` where the rules would leave out a profile NIM
    runs (the dangerous direction) and ``extra`` where they keep one NIM refuses.
    """
    judged = select_profiles(listing, host, lora=True, parameters_b=parameters_b)
    rows = []
    for _, row in judged.iterrows():
        nim = NIM_RUNS.get(row["section"])
        ours = row["runs"]
        if nim is None or (not pd.isna(ours) and bool(ours) == nim):
            continue
        ours_text = "cannot tell" if pd.isna(ours) else ("runs" if ours else "cannot run")
        rows.append(
            {
                "id": row["id"],
                "name": row["name"],
                "nim_section": row["section"],
                "nim_says": f"{'runs' if nim else 'cannot run'} on {host.describe()} (listed as {row['section']})",
                "rules_say": ours_text,
                "rules_reason": row["reason"].removeprefix("skipped: "),
                "risk": "missing" if nim else "extra",
            }
        )
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def has_host_verdict(listing: pd.DataFrame) -> bool:
    """Whether the listing sorted its profiles for a host (sections), not just listed them all."""
    return bool(listing["section"].isin(list(NIM_RUNS)).any())


@dataclass
class ListingCheck:
    """The rules' verdict for a listing's own host, compared with NIM's sections."""

    host: Inventory
    disagreements: pd.DataFrame

    @property
    def missing(self) -> pd.DataFrame:
        """Profiles NIM runs on that host but the rules would leave out."""
        return self.disagreements[self.disagreements["risk"] == "missing"]

    def to_record(self) -> dict:
        """What the run record keeps: the host, the summary and every disagreement."""
        return {
            "host": self.host.describe(),
            "summary": self.summary(),
            "disagreements": self.disagreements.to_dict("records"),
        }

    def summary(self) -> str:
        count = len(self.disagreements)
        if not count:
            return f"The rules agree with NIM's own verdict for {self.host.describe()} on every profile."
        return (
            f"The rules disagree with NIM's own verdict for {self.host.describe()} on {count} profile(s): "
            f"{len(self.missing)} NIM runs that the rules would leave out, "
            f"{count - len(self.missing)} the rules would keep although NIM refuses them."
        )


def check_listing(listing: pd.DataFrame, host: Inventory, *, parameters_b: float | None = None) -> ListingCheck:
    """:func:`check_against_listing`, with a clear error where there is nothing to check against."""
    if not has_host_verdict(listing):
        raise InputError(
            "The listing sorts no profile into compatible/incompatible sections: list-model-profiles "
            "ran without GPUs, so there is no NIM verdict to check the rules against.",
            hint="Run list-model-profiles on a host with the cluster's GPUs (docker run --gpus all ...) and pass that.",
        )
    if not host:
        raise InputError(
            "The listing does not say which GPUs its host had (no GPU line in a SYSTEM INFO block), "
            "so NIM's verdict cannot be compared with the rules for the same GPUs.",
            hint='Say which GPUs the host had, e.g. --listing-gpus "2x A100 80GB PCIe".',
        )
    return ListingCheck(host, check_against_listing(listing, host, parameters_b=parameters_b))


# ---- profile ids a person gives ----------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    id: str
    name: str

    def show(self) -> str:
        return f"{self.id} ({self.name})"


def _nearest(item: str, known: Sequence[_Known]) -> list[_Known]:
    text = item.strip().lower()
    prefix = re.sub(r"(\.\.\.|…)$", "", text)
    if _ID_PREFIX_RE.match(text) and (by_prefix := [k for k in known if k.id.startswith(prefix)]):
        return by_prefix[:3]
    by_name = [k for k in known if k.name.lower() == text or text in k.name.lower().split()]
    ids = difflib.get_close_matches(text, [k.id for k in known], n=3, cutoff=0.5)
    names = difflib.get_close_matches(text, [k.name.lower() for k in known], n=3, cutoff=0.5)
    close = [k for k in known if k.id in ids] + [k for n in names for k in known if k.name.lower() == n]
    unique = list(dict.fromkeys([*by_name, *close]))
    return unique[:3]


def resolve_profile_ids(plan: pd.DataFrame, wanted: Iterable[str]) -> list[str]:
    """The 64-hex ids a person gave (``<id>``, a pasted ``<id> (name)`` or ``<id>: name`` line), in
    their order; any item that names no id of this image is an error listing the nearest known ids."""
    known = [_Known(str(i), str(n)) for i, n in zip(plan["id"], plan["name"], strict=True)]
    ids = {k.id for k in known}
    chosen: list[str] = []
    problems: list[str] = []
    for item in wanted:
        text = str(item).strip()
        if not text:
            continue
        found = _ID_RE.findall(text)
        if len(found) == 1 and found[0].lower() in ids:
            chosen.append(found[0].lower())
            continue
        if len(found) > 1:
            problems.append(f"{text!r} holds {len(found)} profile ids; give one per item.")
            continue
        what = "is not a profile of this image" if found else "is not a 64-hex profile id"
        nearest = _nearest(found[0] if found else text, known)
        near = ("; nearest known: " + ", ".join(k.show() for k in nearest)) if nearest else ""
        problems.append(f"{text!r} {what}{near}.")
    if problems:
        raise UnknownProfileError(
            "Some selected profile ids are not profiles of this image: " + " ".join(problems),
            hint="Use the 64-hex ids from the plan's id column (the picker shows them under 'selected ids').",
        )
    return list(dict.fromkeys(chosen))


def wanted_ids(wanted: str | Sequence[str]) -> list[str]:
    """A ``selected_profiles`` value other than "auto" as a list of items: one per list entry or line."""
    if isinstance(wanted, str):
        if not _ID_RE.search(wanted):
            raise InputError(
                f"selected_profiles={wanted!r} is neither 'auto' nor a list of profile ids.",
                hint='Use "auto" for the selection rules, or a list of 64-hex profile ids.',
            )
        items: list[str] = []
        for line in re.split(r"[\n,;]+", wanted):
            ids = _ID_RE.findall(line)
            items.extend(ids if len(ids) > 1 else [line] if line.strip() else [])
        return items
    return [str(item) for item in wanted]
