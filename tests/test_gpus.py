import json

import pytest
from conftest import FIXTURES, fixture_text
from hypothesis import given, settings
from hypothesis import strategies as st

from nimrunbook.errors import InputError, UnknownGpuError
from nimrunbook.gpus import (
    gpu_token,
    inventory_from_listing,
    inventory_from_local_host,
    inventory_from_node_labels,
    inventory_from_nvidia_smi,
    inventory_from_text,
)

EXPECTED_SMI = {
    "A100-80GB-PCIe-L.txt": {"a100pcie": 4},
    "A100-80GB-PCIe-mixed-with-SXM4-csv.txt": {"a100pcie": 6, "a100": 1},
    "A100-SXM4-40GB-L.txt": {"a100_sxm4_40gb": 8},
    "A100-SXM4-40GB-csv.txt": {"a100_sxm4_40gb": 8},
    "A100-SXM4-80GB-L.txt": {"a100": 8},
    "A100-SXM4-80GB-csv.txt": {"a100": 8},
    "A100-SXM4-80GB-q-i0.txt": {"a100": 8},
    "A100-SXM4-80GB-x8-table-truncated-names.txt": {"a100": 8},
    "A10G-L.txt": {"a10g": 4},
    "A10G-csv-mem-used-free.txt": {"a10g": 1},
    "A10G-csv.txt": {"a10g": 4},
    "H100-80GB-HBM3-L.txt": {"h100": 8},
    "H100-80GB-HBM3-csv.txt": {"h100": 8},
    "H100-80GB-HBM3-x8-table.txt": {"h100": 8},
    "H100-NVL-L.txt": {"h100_nvl": 1},
    "H100-NVL-csv.txt": {"h100_nvl": 1},
    "H100-PCIe-L.txt": {"h100pcie": 1},
    "H100-PCIe-csv-noheader.txt": {"h100pcie": 2},
    "L4-L.txt": {"l4": 1},
    "L4-csv.txt": {"l4": 4},
    "L4-table.txt": {"l4": 1},
    "L40S-L.txt": {"l40s": 1},
    "L40S-csv-mem-used-free.txt": {"l40s": 1},
    "L40S-csv.txt": {"l40s": 4},
}


def test_every_nvidia_smi_sample_is_covered():
    assert sorted(EXPECTED_SMI) == sorted(p.name for p in (FIXTURES / "nvidia-smi").glob("*.txt"))


@pytest.mark.parametrize("name, counts", sorted(EXPECTED_SMI.items()))
def test_nvidia_smi_samples(name, counts):
    assert inventory_from_nvidia_smi(fixture_text(f"nvidia-smi/{name}")).counts() == counts


def test_memory_and_pci_ids_are_kept():
    inventory = inventory_from_nvidia_smi(fixture_text("nvidia-smi/L40S-csv.txt"))
    (group,) = inventory.groups
    assert (group.memory_mib, group.pci_device_id, group.count_per_node) == (46068, "26b9", 4)
    table = inventory_from_nvidia_smi(fixture_text("nvidia-smi/H100-80GB-HBM3-x8-table.txt"))
    assert table.groups[0].memory_mib == 81559


def test_query_with_pci_device_id_column():
    text = "name, memory.total [MiB], pci.device_id\nNVIDIA L40S, 46068 MiB, 0x26B910DE\n"
    (group,) = inventory_from_nvidia_smi(text).groups
    assert (group.token, group.pci_device_id) == ("l40s", "26b9")


def test_mig_devices_under_a_gpu_are_not_gpus():
    text = (
        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-4cf8db2d-06c0-7d70-1a51-e59b25b2c16c)\n"
        "  MIG 1g.5gb      Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)\n"
        "  MIG 1g.5gb      Device  1: (UUID: MIG-11111111-2222-3333-4444-666666666666)\n"
    )
    assert inventory_from_nvidia_smi(text).counts() == {"a100_sxm4_40gb": 1}


@pytest.mark.parametrize(
    "text, token",
    [
        ("NVIDIA H100 80GB HBM3", "h100"),
        ("NVIDIA-H100-80GB-HBM3", "h100"),
        ("NVIDIA-H100-NVL-SHARED", "h100_nvl"),
        ("NVIDIA-H100-NVL-MIG-1g.12gb", "h100_nvl"),
        ("NVIDIA-A100-80GB-PCIe-MIG-1g.10gb", "a100pcie"),
        ("NVIDIA A100-SXM4-40GB", "a100_sxm4_40gb"),
        ("NVIDIA-A100-SXM4-80GB", "a100"),
        ("NVIDIA-L4-SHARED", "l4"),
        ("NVIDIA-L40", "l40"),
        ("l40s", "l40s"),
        ("L40S", "l40s"),
        ("A10G", "a10g"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA-H200", "h200"),
        ("NVIDIA-B200", "b200"),
        ("NVIDIA-GH200-480GB", "gh200"),
        ("NVIDIA-GB200", "gb200"),
        ("NVIDIA-B300-SXM6-AC", "b300"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx6000_blackwell_sv"),
        ("2330", "h100"),
        ("2330:10de", "h100"),
        ("0x233010DE", "h100"),
        ("26B9", "l40s"),
        ("h100_nvl", "h100_nvl"),
        ("a100_sxm4_40gb", "a100_sxm4_40gb"),
        ("Tesla-T4-SHARED", None),
        ("NVIDIA-GeForce-GTX-1660-Ti-SHARED", None),
        ("", None),
    ],
)
def test_gpu_token(text, token):
    assert gpu_token(text) == token


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_gpu_token_never_crashes(text):
    result = gpu_token(text)
    assert result is None or isinstance(result, str)


def test_node_labels_sample_groups_nodes_and_does_not_count_mig_slices():
    inventory = inventory_from_node_labels(fixture_text("k8s-node-labels.txt"))
    by_product = {(g.product, g.mig_slices): g for g in inventory.groups}
    mig = by_product[("NVIDIA H100 NVL", 1)]
    assert mig.count_per_node == 7 and mig.physical_gpus == 1
    dgx = by_product[("NVIDIA A100-SXM4-40GB", 0)]
    assert (dgx.token, dgx.count_per_node, dgx.memory_mib) == ("a100_sxm4_40gb", 4, 40960)
    assert inventory.counts()["h100"] >= 8


def test_node_labels_from_kubectl_json():
    nodes = {
        "items": [
            {
                "metadata": {
                    "name": "a",
                    "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.count": "2"},
                }
            },
            {
                "metadata": {
                    "name": "b",
                    "labels": {"nvidia.com/gpu.product": "NVIDIA-L40S", "nvidia.com/gpu.count": "2"},
                }
            },
            {"metadata": {"name": "cpu", "labels": {"kubernetes.io/os": "linux"}}},
        ]
    }
    inventory = inventory_from_node_labels(json.dumps(nodes))
    (group,) = inventory.groups
    assert (group.nodes, group.count_per_node, inventory.counts()) == (2, 2, {"l40s": 4})
    assert inventory.max_gpus_per_node() == 2


def test_node_labels_without_gpus_give_a_note():
    inventory = inventory_from_node_labels('{"items": []}')
    assert not inventory and "feature discovery" in inventory.notes[0]


def test_show_labels_comma_form():
    line = "beta.kubernetes.io/arch=amd64,nvidia.com/gpu.count=1,nvidia.com/gpu.product=NVIDIA-A100-80GB-PCIe"
    assert inventory_from_node_labels(line).counts() == {"a100pcie": 1}


def test_typed_inventory():
    inventory = inventory_from_text("L40S, 2xA10G, H100 x 8")
    assert inventory.counts() == {"l40s": 1, "a10g": 2, "h100": 8}
    assert inventory.max_gpus_per_node() == 8
    assert inventory.groups[0].pci_device_id == "26b9"


def test_typed_inventory_rejects_unknown_names_with_help():
    with pytest.raises(UnknownGpuError) as info:
        inventory_from_text("L40S, Voodoo5")
    assert "Voodoo5" in str(info.value) and "l40s" in str(info.value)
    with pytest.raises(InputError):
        inventory_from_text(" , ")


def test_local_host_without_nvidia_smi_is_an_empty_inventory_with_a_note():
    inventory = inventory_from_local_host("nvidia-smi-not-installed-here")
    assert not inventory and "not installed" in inventory.notes[0]


@pytest.mark.parametrize(
    "typed, device, count",
    [
        ("8xB200", "2901", 8),
        ("b200", "2901", 1),
        ("B300 x 4", "3182", 4),
        ("2x A100", "20b2", 2),
        ("A100 40GB", "20b0", 1),
        ("8x NVIDIA B200", "2901", 8),
        ("RTX 5090", "2b85", 1),  # "x 5090" is part of the name, not a count
        ("2 x RTX 5090", "2b85", 2),
        ("4x 0x20B510DE", "20b5", 4),
    ],
)
def test_typed_names_that_look_like_hex_or_counts(typed, device, count):
    (group,) = inventory_from_text(typed).groups
    assert (group.pci_device_id, group.count_per_node) == (device, count)


def test_nvidia_smi_q_reads_name_pci_id_and_fb_memory_not_bar1():
    inventory = inventory_from_nvidia_smi(fixture_text("nvidia-smi/A100-SXM4-80GB-q-i0.txt"))
    (group,) = inventory.groups
    assert (group.pci_device_id, group.memory_mib, group.count_per_node) == ("20b2", 81920, 8)
    assert "1 of the host's 8 attached GPUs" in inventory.notes[0]


def test_nvidia_smi_table_with_names_cut_short_uses_the_memory():
    (group,) = inventory_from_nvidia_smi(fixture_text("nvidia-smi/A100-SXM4-80GB-x8-table-truncated-names.txt")).groups
    assert (group.product, group.memory_mib, group.count_per_node) == ("NVIDIA A100-SXM4-80GB", 81920, 8)
    assert group.spelled_as == "NVIDIA A100-SXM..."


LISTING_HOSTS = {
    "deplot-1.0.0-2xH100NVL.txt": {"h100_nvl": 2},
    "llama-3.1-405b-instruct-1.3.0-8xA100-SXM4-80GB.txt": {"a100": 8},
    "llama-3.1-70b-instruct-1.3.3-2xA100-80GB-PCIe-truncated.txt": {"a100pcie": 2},
    "llama-3.1-8b-instruct-1.1.2-2xL40S.txt": {"l40s": 2},
    "llama-3.2-1b-instruct-1.8.4-RTX6000Ada+T600-noisy.txt": {"NVIDIA RTX 6000 Ada Generation": 1, "NVIDIA T600": 1},
    "llama3-8b-instruct-1.0.3-2xL40S.txt": {"l40s": 2},
    "llama3-8b-instruct-1.0.3-A10.txt": {"a10": 1},
    "llama3-8b-instruct-docs-1.0.0-2xA100-SXM4-80GB-truncated.txt": {"a100": 2},
    "magpie-tts-multilingual-1.3.0-A100-SXM4-80GB-riva-format.txt": {"a100": 1},
    "phi-3-mini-4k-instruct-1.2.3-1xA100-80GB-PCIe-truncated.txt": {"a100pcie": 1},
    "riva-asr-parakeet-0-6b-ctc-en-us-docs-latest-H100-80GB-HBM3-truncated.txt": {"h100": 1},
    "riva-asr-parakeet-0-6b-ctc-riva-en-us-docs-1.3.2-H100PCIe-truncated.txt": {"h100pcie": 1},
    "riva-nmt-riva-translate-1_6b-docs-latest-H100PCIe.txt": {"h100pcie": 1},
    "riva-tts-magpie-tts-multilingual-docs-latest-H100PCIe.txt": {"h100pcie": 1},
}


@pytest.mark.parametrize("path", sorted((FIXTURES / "list-model-profiles").glob("*.txt")), ids=lambda p: p.stem)
def test_system_info_of_every_real_listing(path):
    """Free and non-free GPUs are the host's; a listing without SYSTEM INFO GPU lines has no host."""
    assert inventory_from_listing(path.read_text()).counts() == LISTING_HOSTS.get(path.name, {})
