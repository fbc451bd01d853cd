"""Parse what `list-model-profiles` prints.

There is no JSON mode, and the text is mixed with a banner, Rust and Python
log lines and (on real hosts) whatever the shell printed before. So the parser
recognises only the lines it understands -- section headers, "With LoRA
support:" sub-headers and profile entries -- and passes over everything else.
"""

from __future__ import annotations

import re

import pandas as pd

from nimrunbook.errors import ListingParseError
from nimrunbook.profiles.names import decode_name, min_memory_from_hint

LISTING_COLUMNS = [
    "id",
    "name",
    "section",
    "lora_block",
    "engine",
    "gpu",
    "gpu_device",
    "precision",
    "tp",
    "pp",
    "mode",
    "lora",
    "generic",
    "min_gpu_memory_gb",
    "ampere_plus",
    "requires",
    "id_truncated",
]

_ID = r"(?P<id>[0-9a-f]{64}|[0-9a-f]{4,63}(?:\.\.\.|…))"
_ENTRY_RE = re.compile(rf"^(?P<indent>\s*)-\s+{_ID}\s+\((?P<name>.*)\)\s*(?:\[(?P<requires>requires[^\]]*)\])?\s*$")
_RIVA_ENTRY_RE = re.compile(rf"^(?P<indent>\s*)-\s+{_ID}\s+-\s+(?P<name>\S.*?)\s*$")
_BARE_RE = re.compile(r"^\s*(?P<id>[0-9a-f]{64}):\s+(?P<name>\S+)\s*$")
_LORA_RE = re.compile(r"^(?P<indent>\s*)-\s+With LoRA support\s*:?", re.IGNORECASE)
_SECTION_RE = re.compile(r"^\s*-\s+(?P<title>(?:Compatible|Compilable|Incompatible)\b[^:]*?)\s*(?::.*)?$")


def _section_of(title: str) -> str | None:
    title = title.lower()
    if title.startswith("incompatible"):
        return "incompatible"
    if title.startswith("compilable"):
        return "compilable"
    if title.startswith("compatible"):
        return "compatible_low_memory" if "memory" in title else "compatible"
    return None


def _entry(match: re.Match, section: str, lora_block: bool) -> dict:
    profile_id = match.group("id")
    name = match.group("name").strip()
    requires = match.groupdict().get("requires")
    fields = decode_name(name).as_dict()
    if fields["min_gpu_memory_gb"] is None:
        fields["min_gpu_memory_gb"] = min_memory_from_hint(requires)
    return {
        "id": profile_id,
        "name": name,
        "section": section,
        "lora_block": lora_block,
        **fields,
        "requires": requires,
        "id_truncated": len(profile_id) != 64,
    }


def parse_listing(text: str) -> pd.DataFrame:
    """One row per profile, in printed order; see :data:`LISTING_COLUMNS`.

    ``section`` is ``compatible``, ``compatible_low_memory``, ``compilable``,
    ``incompatible``, or ``all`` for the bare ``<id>: <name>`` form (and for
    entries printed before any section header). ``lora_block`` is true only for
    entries under a "With LoRA support:" sub-list.
    """
    rows: list[dict] = []
    section = "all"
    lora_indent: int | None = None
    for raw in text.replace("\r", "").splitlines():
        line = raw.expandtabs()
        if match := _ENTRY_RE.match(line) or _RIVA_ENTRY_RE.match(line):
            indent = len(match.group("indent"))
            if lora_indent is not None and indent <= lora_indent:
                lora_indent = None
            rows.append(_entry(match, section, lora_indent is not None))
        elif match := _LORA_RE.match(line):
            lora_indent = len(match.group("indent"))
        elif match := _SECTION_RE.match(line):
            if (new_section := _section_of(match.group("title"))) is not None:
                section, lora_indent = new_section, None
        elif match := _BARE_RE.match(line):
            rows.append(_entry(match, "all", False))
    if not rows:
        head = "\n".join(text.strip().splitlines()[:5]) or "(empty)"
        raise ListingParseError(
            f"No model profile found in the list-model-profiles output. It begins:\n{head}\n",
            hint="Pass the complete standard output of `list-model-profiles` run in the NIM "
            "container (entries look like `- <64-hex id> (<name>)` or `<id>: <name>`).",
        )
    frame = pd.DataFrame(rows, columns=LISTING_COLUMNS)
    frame["tp"] = frame["tp"].astype("Int64")
    frame["pp"] = frame["pp"].astype("Int64")
    return frame
