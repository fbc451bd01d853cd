import re

import pandas as pd
import pytest
from conftest import FIXTURES, fixture_text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nimrunbook.errors import InputError
from nimrunbook.gpu_models import MODELS, identify
from nimrunbook.gpus import (
    inventory_from_listing,
    inventory_from_node_labels,
    inventory_from_nvidia_smi,
    inventory_from_text,
    listing_host,
)
from nimrunbook.profiles import enrich, model_parameters_b, parse_listing, parse_manifest
from nimrunbook.selection import (
    check_listing,
    has_host_verdict,
    plan_warnings,
    select_profiles,
    selected_ids,
)


def _names(selection: pd.DataFrame) -> list[str]:
    return list(selection.loc[selection.selected, "name"])


def test_guide_example_without_lora(guide_listing):
    selection = select_profiles(parse_listing(guide_listing), inventory_from_text("L40S, A10G"), lora=False)
    assert _names(selection) == [
        "vllm-bf16-tp1-pp1",
        "tensorrt_llm-trtllm_buildable-bf16-tp1-pp1",
        "tensorrt_llm-l40s-bf16-tp1-pp1-throughput",
        "tensorrt_llm-l40s-fp8-tp1-pp1-throughput",
    ]
    reasons = dict(zip(selection.name, selection.reason, strict=True))
    assert reasons["vllm-bf16-tp1-pp1"] == "generic: runs on any GPU"
    assert reasons["tensorrt_llm-l40s-fp8-tp1-pp1-throughput"].startswith("matches NVIDIA L40S")
    assert reasons["vllm-bf16-tp1-pp1-lora"] == "skipped: LoRA not wanted"
    assert "h200" in reasons["tensorrt_llm-h200-fp8-tp1-pp1-throughput"]


def test_guide_example_with_lora(guide_listing):
    selection = select_profiles(parse_listing(guide_listing), inventory_from_text("L40S, A10G"), lora=True)
    assert _names(selection) == [
        "vllm-bf16-tp1-pp1",
        "tensorrt_llm-trtllm_buildable-bf16-tp1-pp1",
        "tensorrt_llm-l40s-bf16-tp1-pp1-throughput",
        "tensorrt_llm-l40s-fp8-tp1-pp1-throughput",
        "tensorrt_llm-l40s-fp8-tp1-pp1-throughput-lora-lora",
        "vllm-bf16-tp1-pp1-lora",
    ]
    assert selected_ids(selection)[0] == "4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728d"


def test_tensor_parallel_above_the_gpus_of_a_node_is_dropped():
    listing = parse_listing(fixture_text("list-model-profiles/llama3-8b-instruct-1.0.3-2xL40S.txt"))
    one = select_profiles(listing, inventory_from_text("L40S"))
    reasons = dict(zip(one.name, one.reason, strict=True))
    assert reasons["tensorrt_llm-l40s-fp8-tp2-latency"] == "skipped: needs 2 GPUs per node, NVIDIA L40S nodes have 1"
    assert reasons["vllm-fp16-tp2"] == "skipped: needs 2 GPUs per node, NVIDIA L40S nodes have 1"
    two = select_profiles(listing, inventory_from_text("2xL40S"))
    assert "tensorrt_llm-l40s-fp8-tp2-latency" in _names(two)


def test_unknown_counts_keep_multi_gpu_profiles():
    listing = parse_listing(fixture_text("list-model-profiles/llama3-8b-instruct-1.0.3-2xL40S.txt"))
    labels = "nvidia.com/gpu.product=NVIDIA-L40S\n"
    selection = select_profiles(listing, inventory_from_node_labels(labels))
    assert "tensorrt_llm-l40s-fp8-tp2-latency" in _names(selection)


def test_manifest_pci_device_decides_when_both_sides_know_it():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-controller-manifest_trtllm-v1.yaml"))
    profiles = manifest.profiles_frame()
    # The fixture's L40S-tagged profile names PCI device 26b5 (an L40): device wins over the name.
    on_l40s = select_profiles(profiles, inventory_from_text("8xL40S"))
    assert not on_l40s.selected.any()
    on_l40 = select_profiles(profiles, inventory_from_text("8xL40"))
    assert on_l40.selected.all()
    assert "PCI device 26b5" in on_l40.reason.iloc[0]


def test_product_name_regex_of_embedding_manifests():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-old-manifest_embedding.yaml"))
    selection = select_profiles(
        manifest.profiles_frame(), inventory_from_node_labels("nvidia.com/gpu.product=NVIDIA-A10G\n")
    )
    assert list(selection.selected) == [False, True]


def test_filters_and_no_inventory():
    listing = parse_listing(fixture_text("list-model-profiles/llama3-8b-instruct-1.0.3-2xL40S.txt"))
    vllm_only = select_profiles(listing, inventory_from_text("2xL40S"), engines=["vllm"], precisions=["FP16"])
    assert set(vllm_only.loc[vllm_only.selected, "engine"]) == {"vllm"}
    from nimrunbook.gpus import Inventory

    nothing = select_profiles(listing, Inventory())
    assert set(nothing.loc[nothing.selected, "engine"]) == {"vllm"}
    assert "no GPU inventory" in nothing.loc[~nothing.selected, "reason"].iloc[0]


def test_enriched_listing_selects_like_the_listing():
    listing = parse_listing(fixture_text("list-model-profiles/llama3-8b-instruct-1.0.3-2xL40S.txt"))
    assert select_profiles(enrich(listing, None), inventory_from_text("L40S")).selected.sum() > 0


# ---- NIM's own verdict: every real listing that ran on a host with GPUs ---------------------------

# listing -> (host when its SYSTEM INFO names none: as its source says, model, {name: risk} of the
# disagreements the rules are known to have, each explained). Everything else must agree with NIM.
VERDICTS = {
    "deplot-1.0.0-2xH100NVL.txt": (None, "google/deplot", {}),
    "llama-3.1-405b-instruct-1.3.0-8xA100-SXM4-80GB.txt": (None, "nvcr.io/nim/meta/llama-3.1-405b-instruct:1.3.0", {}),
    # A profile NIM_CUSTOM_MODEL_NAME built in that host's own cache: no name to decode, not on NGC.
    "llama-3.1-70b-instruct-1.3.3-2xA100-80GB-PCIe-truncated.txt": (
        None,
        "meta/llama-3.1-70b-instruct",
        {"70b-trt-engine": "missing"},
    ),
    # the notebook's own VM: Standard_NC48ads_A100_v4, the 2x A100 80GB PCIe of its other listing
    "llama-3.1-70b-instruct-1.3.3-A100-80GB-PCIe-example-truncated.txt": (
        "2x A100 80GB PCIe",
        "meta/llama-3.1-70b-instruct",
        {},
    ),
    "llama-3.1-8b-instruct-1.1.2-2xL40S.txt": (None, "meta/llama-3.1-8b-instruct", {}),
    "llama-3.1-8b-instruct-1.3.3-L4-truncated.txt": ("L4", "meta/llama-3.1-8b-instruct", {}),  # GKE g2-standard-16
    "llama-3.1-8b-instruct-2.0.6-RTX5090-truncated.txt": ("RTX 5090", "meta/llama-3.1-8b-instruct", {}),
    # NIM judged the host as a whole: the T600 beside the RTX 6000 Ada has no bf16 (compute capability 7.5).
    # The rules judge GPU groups one by one and keep the generic bf16 profiles the RTX 6000 Ada can run.
    "llama-3.2-1b-instruct-1.8.4-RTX6000Ada+T600-noisy.txt": (
        None,
        "meta/llama-3.2-1b-instruct",
        {
            "vllm-bf16-tp1-pp1": "extra",
            "vllm-bf16-tp1-pp1-lora": "extra",
            "tensorrt_llm-trtllm_buildable-bf16-tp1-pp1": "extra",
            "tensorrt_llm-trtllm_buildable-bf16-tp1-pp1-lora": "extra",
        },
    ),
    # "The following example output is for an H100-NVL with 1 GPU allocated" (the source's words)
    "llama-3.3-nemotron-super-49b-v1.5-1.12.0-1xH100NVL.txt": (
        "H100 NVL",
        "nvidia/llama-3.3-nemotron-super-49b-v1.5",
        {},
    ),
    "llama3-8b-instruct-1.0.3-2xL40S.txt": (None, "meta/llama3-8b-instruct", {}),
    "llama3-8b-instruct-1.0.3-A10.txt": (None, "meta/llama3-8b-instruct", {}),
    "llama3-8b-instruct-docs-1.0.0-2xA100-SXM4-80GB-truncated.txt": (None, "meta/llama3-8b-instruct", {}),
    # Riva marks these RMIR profiles (built at start-up, for any GPU) incompatible where a prebuilt engine
    # for the GPU exists; the rules keep RMIR profiles everywhere (disk, not a failed start).
    "magpie-tts-multilingual-1.3.0-A100-SXM4-80GB-riva-format.txt": (
        None,
        "magpie-tts-multilingual",
        {
            "batch_size:32|model_type:rmir|name:magpie-tts-multilingual": "extra",
            "batch_size:8|model_type:rmir|name:magpie-tts-multilingual": "extra",
            "batch_size:64|model_type:rmir|name:magpie-tts-multilingual": "extra",
        },
    ),
    "phi-3-mini-4k-instruct-1.2.3-1xA100-80GB-PCIe-truncated.txt": (None, "microsoft/phi-3-mini-4k-instruct", {}),
    "riva-asr-parakeet-0-6b-ctc-en-us-docs-latest-H100-80GB-HBM3-truncated.txt": (None, "parakeet-0-6b-ctc-en-us", {}),
    "riva-asr-parakeet-0-6b-ctc-riva-en-us-docs-1.3.2-H100PCIe-truncated.txt": (
        None,
        "parakeet-0-6b-ctc-riva-en-us",
        {},
    ),
    "riva-nmt-riva-translate-1_6b-docs-latest-H100PCIe.txt": (None, "riva-translate-1_6b", {}),
    "riva-tts-magpie-tts-multilingual-docs-latest-H100PCIe.txt": (None, "magpie-tts-multilingual", {}),
}
# Listings with sections but no known host: the model-free NIM example names no GPU.
NO_HOST = {"nim-llm-model-free-2.0.2-unknown-truncated.txt"}


def test_every_listing_with_a_verdict_is_checked():
    with_sections = {
        p.name
        for p in (FIXTURES / "list-model-profiles").glob("*.txt")
        if has_host_verdict(parse_listing(p.read_text()))
    }
    assert with_sections == set(VERDICTS) | NO_HOST


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_rules_reproduce_nims_own_sections_for_the_listings_host(name):
    typed, model, expected = VERDICTS[name]
    text = fixture_text(f"list-model-profiles/{name}")
    check = check_listing(parse_listing(text), listing_host(text, typed or ""), parameters_b=model_parameters_b(model))
    assert dict(zip(check.disagreements.name, check.disagreements.risk, strict=True)) == expected
    assert all(check.disagreements.nim_says.str.contains(check.host.describe()))


def test_the_check_record_names_host_summary_and_each_disagreement():
    text = fixture_text("list-model-profiles/llama-3.1-70b-instruct-1.3.3-2xA100-80GB-PCIe-truncated.txt")
    record = check_listing(parse_listing(text), listing_host(text), parameters_b=70).to_record()
    assert record["host"] == "2x NVIDIA A100 80GB PCIe"
    assert "1 NIM runs that the rules would leave out" in record["summary"]
    (row,) = record["disagreements"]
    assert (row["name"], row["nim_section"], row["risk"]) == ("70b-trt-engine", "compatible", "missing")
    assert row["nim_says"] == "runs on 2x NVIDIA A100 80GB PCIe (listed as compatible)"


def test_a_profile_too_large_for_the_gpus_says_why():
    text = fixture_text("list-model-profiles/llama-3.1-405b-instruct-1.3.0-8xA100-SXM4-80GB.txt")
    plan = select_profiles(parse_listing(text), inventory_from_text("8x A100"), parameters_b=405).set_index("name")
    assert plan.loc["tensorrt_llm-a100-fp16-tp8-latency", "reason"] == (
        "skipped: does not fit: 405B parameters in fp16 are ~810 GB over 8 GPUs, ~101 GB per GPU; "
        "NVIDIA A100-SXM4-80GB has 86 GB (81920 MiB)"
    )
    unknown_size = select_profiles(parse_listing(text), inventory_from_text("8x A100")).set_index("name")
    assert bool(unknown_size.loc["tensorrt_llm-a100-fp16-tp8-latency", "selected"])  # cannot tell: keep it


def test_gpu_count_comes_from_the_manifest_when_it_says():
    manifest = parse_manifest(fixture_text("manifests/qwen-2.5-7b-instruct-trtllm-a100-profile-snippet-truncated.yaml"))
    frame = manifest.profiles_frame()
    assert frame.number_of_gpus.tolist() == [1]
    assert model_parameters_b(manifest.model_name()) == 7.0  # qwen/qwen-2.5-7b-instruct, from the file URIs
    assert select_profiles(frame, inventory_from_text("A100")).selected.tolist() == [True]


def test_a100_40gb_gets_its_own_profile_and_a100_pcie_not_the_sxm_ones(guide_listing):
    listing = parse_listing(guide_listing)
    forty = select_profiles(listing, inventory_from_text("A100 40GB"), lora=False)
    assert "tensorrt_llm-a100_sxm4_40gb-bf16-tp1-pp1-throughput" in _names(forty)
    noisy = parse_listing(fixture_text("list-model-profiles/llama-3.2-1b-instruct-1.8.4-RTX6000Ada+T600-noisy.txt"))
    for spelled in ("A100 80GB PCIe", "NVIDIA-A100-80GB-PCIe", "0x20B510DE"):
        pcie = select_profiles(noisy, inventory_from_text(spelled))
        assert not [n for n in _names(pcie) if "a100" in n], spelled


def test_ampereplus_profiles_run_on_any_gpu_of_compute_capability_8_or_newer():
    listing = parse_listing(
        fixture_text("list-model-profiles/riva-asr-parakeet-0-6b-ctc-riva-en-us-docs-1.3.2-H100PCIe-truncated.txt")
    )
    prebuilt = "c08781f3bd37aafe92d47d2e1f82dc8705f508d9f8ad11c6fcccd598adcf0fe4"
    for gpus, runs in (("A10G", True), ("L4", True), ("H100 PCIe", True), ("A100", True), ("T4", False)):
        plan = select_profiles(listing, inventory_from_text(gpus)).set_index("id")
        assert bool(plan.loc[prebuilt, "selected"]) is runs, gpus


def test_a_profile_whose_manifest_lists_no_files_is_a_warning():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-legacy-manifest_legacy_molmim.yaml"))
    plan = select_profiles(manifest.profiles_frame(), inventory_from_text("A100"))
    assert plan.selected.all()
    warnings = plan_warnings(plan)
    assert len(warnings) == 2 and "lists no files" in warnings[0]


def test_the_check_needs_a_verdict_and_a_host(guide_listing):
    with pytest.raises(InputError, match="ran without GPUs"):
        check_listing(parse_listing(guide_listing), inventory_from_text("L40S"))
    l4 = fixture_text("list-model-profiles/llama-3.1-8b-instruct-1.3.3-L4-truncated.txt")
    with pytest.raises(InputError, match="--listing-gpus"):
        check_listing(parse_listing(l4), listing_host(l4))


# ---- the same GPU, any spelling: one selection ------------------------------------------------


def _lines(path: str, *numbers: int) -> str:
    lines = fixture_text(path).splitlines()
    return "\n".join(lines[n] for n in numbers) + "\n"


def _labels(product: str, count: int, memory: int | None = None) -> str:
    text = f"nvidia.com/gpu.product={product}\nnvidia.com/gpu.count={count}\n"
    return text + (f"nvidia.com/gpu.memory={memory}\n" if memory else "")


def _pci_csv(name: str, memory: int, device: str, count: int) -> str:
    """``--query-gpu=name,memory.total,pci.device_id --format=csv``: composed from the header and value formats of
    the real captures (CSV header with units; PCI ids as ``-q`` prints them, ``0x20B210DE``), since no real
    capture of that query was found."""
    row = f"{name}, {memory} MiB, 0x{device.upper()}10DE"
    return "name, memory.total [MiB], pci.device_id\n" + "\n".join([row] * count) + "\n"


SMI = inventory_from_nvidia_smi
SPELLINGS = {
    "A100 80GB PCIe x1": [
        ("typed", inventory_from_text, "A100 80GB PCIe"),
        ("typed name", inventory_from_text, "NVIDIA A100 80GB PCIe"),
        ("token", inventory_from_text, "a100pcie"),
        ("typed PCI id", inventory_from_text, "20b5"),
        ("typed PCI id 0x", inventory_from_text, "0x20B510DE"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-A100-80GB-PCIe", 1)),
        ("-L", SMI, _lines("nvidia-smi/A100-80GB-PCIe-L.txt", 0)),
        ("CSV", SMI, _lines("nvidia-smi/A100-80GB-PCIe-mixed-with-SXM4-csv.txt", 0, 1)),
        ("CSV + pci.device_id", SMI, _pci_csv("NVIDIA A100 80GB PCIe", 81920, "20b5", 1)),
        (
            "listing",
            inventory_from_listing,
            fixture_text("list-model-profiles/phi-3-mini-4k-instruct-1.2.3-1xA100-80GB-PCIe-truncated.txt"),
        ),
    ],
    "A100-SXM4-80GB x8": [
        ("typed", inventory_from_text, "8x A100"),
        ("typed 80GB", inventory_from_text, "A100 80GB x 8"),
        ("typed name", inventory_from_text, "8xNVIDIA A100-SXM4-80GB"),
        ("typed PCI id", inventory_from_text, "8x 20b2:10de"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-A100-SXM4-80GB", 8)),
        ("-L", SMI, fixture_text("nvidia-smi/A100-SXM4-80GB-L.txt")),
        ("CSV", SMI, fixture_text("nvidia-smi/A100-SXM4-80GB-csv.txt")),
        ("CSV + pci.device_id", SMI, _pci_csv("NVIDIA A100-SXM4-80GB", 81920, "20b2", 8)),
        ("table, names cut short", SMI, fixture_text("nvidia-smi/A100-SXM4-80GB-x8-table-truncated-names.txt")),
        ("-q", SMI, fixture_text("nvidia-smi/A100-SXM4-80GB-q-i0.txt")),
        (
            "listing",
            inventory_from_listing,
            fixture_text("list-model-profiles/llama-3.1-405b-instruct-1.3.0-8xA100-SXM4-80GB.txt"),
        ),
    ],
    "A100-SXM4-40GB x8": [
        ("typed", inventory_from_text, "8x A100 40GB"),
        ("token", inventory_from_text, "8x a100_sxm4_40gb"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-A100-SXM4-40GB", 8, 40960)),
        ("-L", SMI, fixture_text("nvidia-smi/A100-SXM4-40GB-L.txt")),
        ("CSV", SMI, fixture_text("nvidia-smi/A100-SXM4-40GB-csv.txt")),
        ("CSV + pci.device_id", SMI, _pci_csv("NVIDIA A100-SXM4-40GB", 40960, "20b0", 8)),
    ],
    "H100 PCIe x2": [
        ("typed", inventory_from_text, "2x H100 PCIe"),
        ("token", inventory_from_text, "h100pcie x2"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-H100-PCIe", 2, 81559)),
        ("CSV noheader", SMI, fixture_text("nvidia-smi/H100-PCIe-csv-noheader.txt")),
        ("CSV + pci.device_id", SMI, _pci_csv("NVIDIA H100 PCIe", 81559, "2331", 2)),
    ],
    "H100 SXM x8": [
        ("typed", inventory_from_text, "8x H100"),
        ("typed name", inventory_from_text, "8x NVIDIA H100 80GB HBM3"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-H100-80GB-HBM3", 8)),
        ("-L", SMI, fixture_text("nvidia-smi/H100-80GB-HBM3-L.txt")),
        ("CSV", SMI, fixture_text("nvidia-smi/H100-80GB-HBM3-csv.txt")),
        ("table", SMI, fixture_text("nvidia-smi/H100-80GB-HBM3-x8-table.txt")),
    ],
    "L4 x1": [
        ("typed", inventory_from_text, "L4"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-L4", 1)),
        ("label, time-sliced", inventory_from_node_labels, _labels("NVIDIA-L4-SHARED", 1)),
        ("-L", SMI, fixture_text("nvidia-smi/L4-L.txt")),
        ("table", SMI, fixture_text("nvidia-smi/L4-table.txt")),
        ("CSV", SMI, _lines("nvidia-smi/L4-csv.txt", 0, 1)),
    ],
    "L40S x2": [
        ("typed", inventory_from_text, "2xL40S"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-L40S", 2, 46068)),
        ("CSV", SMI, _lines("nvidia-smi/L40S-csv.txt", 0, 1, 2)),
        ("listing", inventory_from_listing, fixture_text("list-model-profiles/llama-3.1-8b-instruct-1.1.2-2xL40S.txt")),
    ],
    "H100 NVL x1": [
        ("typed", inventory_from_text, "H100 NVL"),
        ("token", inventory_from_text, "h100_nvl"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-H100-NVL", 1, 95830)),
        ("-L", SMI, fixture_text("nvidia-smi/H100-NVL-L.txt")),
        ("CSV", SMI, fixture_text("nvidia-smi/H100-NVL-csv.txt")),
    ],
    "B200 x8": [
        ("typed", inventory_from_text, "8xB200"),
        ("typed lower", inventory_from_text, "b200 x 8"),
        ("typed name", inventory_from_text, "8x NVIDIA B200"),
        ("label", inventory_from_node_labels, _labels("NVIDIA-B200", 8)),
    ],
}

SPELLING_LISTINGS = [
    ("datarobot-guide-llama-3.2-1b-instruct-1.8.5-truncated.txt", 1.0),
    ("llama-3.2-1b-instruct-1.8.4-RTX6000Ada+T600-noisy.txt", 1.0),
    ("deplot-1.0.0-2xH100NVL.txt", None),
    ("llama-3.1-8b-instruct-1.1.2-2xL40S.txt", 8.0),
    ("llama-3.1-405b-instruct-1.3.0-8xA100-SXM4-80GB.txt", 405.0),
    ("llama-3.3-nemotron-super-49b-v1.5-1.12.0-1xH100NVL.txt", 49.0),
    ("riva-asr-parakeet-0-6b-ctc-riva-en-us-docs-1.3.2-H100PCIe-truncated.txt", None),
    ("magpie-tts-multilingual-1.3.0-A100-SXM4-80GB-riva-format.txt", None),
]
_PARSED = {name: parse_listing(fixture_text(f"list-model-profiles/{name}")) for name, _ in SPELLING_LISTINGS}


def _selection(inventory) -> list:
    return [
        select_profiles(_PARSED[name], inventory, parameters_b=parameters)[["id", "runs", "selected", "reason"]]
        .astype(str)
        .values.tolist()
        for name, parameters in SPELLING_LISTINGS
    ]


@pytest.mark.parametrize("gpu", sorted(SPELLINGS))
def test_every_spelling_of_one_gpu_yields_one_selection(gpu):
    spellings = SPELLINGS[gpu]
    _, parse, text = spellings[0]
    reference = _selection(parse(text))
    for form, parse, text in spellings[1:]:
        inventory = parse(text)
        assert _selection(inventory) == reference, f"{gpu}: {form} ({inventory.describe()})"


# ---- property: the selection never depends on how the inventory was spelled -------------------

_PROPERTY_MODELS = [m for m in MODELS if m.memory_mib]


def _typed_names(model) -> list[str]:
    names = [model.product, model.label, model.pci_device_id, f"0x{model.pci_device_id.upper()}10DE"]
    names += [f"{model.pci_device_id}:10de", f"10de:{model.pci_device_id}"]
    if model.token and identify(model.token) == model:
        names.append(model.token)
    return names


@st.composite
def _spelled_inventories(draw):
    """(canonical typed inventory, the same GPUs spelled in a drawn form)."""
    form = draw(st.sampled_from(["typed", "labels", "-L", "csv", "csv+pci"]))
    many = form in ("typed", "labels")
    nodes = draw(
        st.lists(
            st.tuples(st.sampled_from(_PROPERTY_MODELS), st.integers(min_value=1, max_value=8)),
            min_size=1,
            max_size=3 if many else 1,
            unique_by=lambda node: node[0].pci_device_id,
        )
    )
    canonical = ", ".join(f"{count}x {model.product}" for model, count in nodes)
    if form == "typed":
        items = []
        for model, count in nodes:
            name = draw(st.sampled_from(_typed_names(model)))
            name = draw(st.sampled_from([name, name.lower(), name.upper(), re.sub(r"[ -]", "_", name)]))
            pattern = draw(st.sampled_from(["{n}x{name}", "{n} x {name}", "{name} x {n}", "{n}*{name}"]))
            items.append(pattern.format(n=count, name=name))
        return canonical, inventory_from_text(draw(st.sampled_from([", ", ";", "\n"])).join(items))
    if form == "labels":
        blocks = []
        for model, count in nodes:
            product = model.label + draw(st.sampled_from(["", "-SHARED"]))
            memory = draw(st.sampled_from([None, model.memory_mib]))
            blocks.append(_labels(product, count, memory))
        return canonical, inventory_from_node_labels("\n".join(blocks))
    ((model, count),) = nodes
    if form == "-L":
        lines = [f"GPU {i}: {model.product} (UUID: GPU-{i:08x}-0000-0000-0000-000000000000)" for i in range(count)]
        return canonical, inventory_from_nvidia_smi("\n".join(lines))
    if form == "csv":
        rows = [f"{i}, {model.product}, {model.memory_mib} MiB" for i in range(count)]
        return canonical, inventory_from_nvidia_smi("index, name, memory.total [MiB]\n" + "\n".join(rows))
    return canonical, inventory_from_nvidia_smi(_pci_csv(model.product, model.memory_mib, model.pci_device_id, count))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spelled_inventories())
def test_the_selection_never_depends_on_how_the_inventory_was_spelled(spelled):
    canonical, inventory = spelled
    assert _selection(inventory) == _selection(inventory_from_text(canonical))
