import pandas as pd
from conftest import fixture_text

from nimrunbook.gpus import inventory_from_node_labels, inventory_from_text
from nimrunbook.profiles import enrich, parse_listing, parse_manifest
from nimrunbook.selection import select_profiles, selected_ids


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
