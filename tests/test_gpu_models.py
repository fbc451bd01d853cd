"""GPU identity: every spelling of a GPU names one catalogue model (PCI id, token, memory, capability)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nimrunbook.gpu_models import BY_DEVICE, KNOWN_TOKENS, MODELS, gpu_token, identify, normalise_name, pci_device_id


@pytest.mark.parametrize(
    "text, device",
    [
        # names that are also valid hexadecimal stay names (issue class 1)
        ("b200", "2901"),
        ("B200", "2901"),
        ("A100", "20b2"),
        ("a100", "20b2"),
        ("B300", "3182"),
        # bare 4-hex words that name no GPU are PCI ids
        ("2330", "2330"),
        ("20b2", "20b2"),
        ("26B9", "26b9"),
        ("0x20B510DE", "20b5"),
        ("20b5:10de", "20b5"),
        ("10de:2331", "2331"),
        ("[2321:10de]", "2321"),
        # the A100 family (issue class 2)
        ("A100 40GB", "20b0"),
        ("NVIDIA A100-SXM4-40GB", "20b0"),
        ("NVIDIA-A100-SXM4-40GB", "20b0"),
        ("a100_sxm4_40gb", "20b0"),
        ("NVIDIA A100-SXM4-80GB", "20b2"),
        ("A100 80GB", "20b2"),
        ("NVIDIA A100 80GB PCIe", "20b5"),
        ("NVIDIA-A100-80GB-PCIe", "20b5"),
        ("NVIDIA-A100-80GB-PCIe-MIG-1g.10gb", "20b5"),
        ("a100pcie", "20b5"),
        ("A100 PCIe", "20b5"),
        ("NVIDIA A100-PCIE-40GB", "20f1"),
        ("A100 40GB PCIe", "20f1"),
        # Hopper and the rest
        ("NVIDIA H100 80GB HBM3", "2330"),
        ("H100 SXM", "2330"),
        ("NVIDIA-H100-PCIe", "2331"),
        ("h100pcie", "2331"),
        ("NVIDIA H100 NVL", "2321"),
        ("NVIDIA-H100-NVL-SHARED", "2321"),
        ("h100_nvl", "2321"),
        ("NVIDIA-H200", "2335"),
        ("NVIDIA-GH200-480GB", "2342"),
        ("NVIDIA GH200 144G HBM3e", "2348"),
        ("NVIDIA-B300-SXM6-AC", "3182"),
        ("NVIDIA-GB200", "2941"),
        ("NVIDIA-GB300", "31c2"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "2bb5"),
        ("rtx6000_blackwell_sv", "2bb5"),
        ("NVIDIA RTX 6000 Ada Generation", "26b1"),
        ("NVIDIA GeForce RTX 5090", "2b85"),
        ("NVIDIA A10G", "2237"),
        ("NVIDIA A10", "2236"),
        ("NVIDIA-L40", "26b5"),
        ("NVIDIA-L4-SHARED", "27b8"),
        ("Tesla-T4-SHARED", "1eb8"),
        ("NVIDIA T600", "1fb1"),
    ],
)
def test_identify(text, device):
    model = identify(text)
    assert model is not None and model.pci_device_id == device


@pytest.mark.parametrize(
    "text, memory, device",
    [
        ("NVIDIA A100-SXM...", 81920, "20b2"),  # nvidia-smi's table cuts long names short
        ("NVIDIA A100-SXM...", 40960, "20b0"),
        ("A100", 40960, "20b0"),  # a name without its memory variant: the measured memory decides
        ("NVIDIA-A100-80GB-PCIe", 40960, "20b5"),  # a name that says its memory wins over a figure
        ("NVIDIA RTX PRO 6000 Blac...", None, "2bb5"),
    ],
)
def test_memory_settles_names_that_do_not_say_which_variant(text, memory, device):
    assert identify(text, memory).pci_device_id == device


@pytest.mark.parametrize("text", ["", "Voodoo5", "NVIDIA-GeForce-GTX-1660-Ti-SHARED", "beef", "0x1234ABCD", "RTX"])
def test_unknown_spellings(text):
    assert identify(text) is None


def test_pci_device_id_never_mistakes_a_name():
    assert pci_device_id("b200") is None and pci_device_id("a100") is None
    assert pci_device_id("2330") == "2330" and pci_device_id("0x233010DE") == "2330"


def test_every_catalogue_model_is_identified_by_each_of_its_own_spellings():
    assert len(BY_DEVICE) == len(MODELS)
    for model in MODELS:
        spellings = [model.product, model.label, model.pci_device_id, f"0x{model.pci_device_id.upper()}10DE"]
        spellings += [f"{model.pci_device_id}:10de", f"10de:{model.pci_device_id}", model.product.upper()]
        for spelled in spellings:
            assert identify(spelled, model.memory_mib) == model, spelled
        if model.token:
            assert identify(model.token).token == model.token
            assert gpu_token(model.product) == model.token


def test_tokens_are_the_catalogue_tokens():
    assert {"a10g", "a100", "a100_sxm4_40gb", "a100pcie", "h100", "h100pcie", "h100_nvl", "l40s"} <= KNOWN_TOKENS
    assert normalise_name("NVIDIA-A100-80GB-PCIe-MIG-1g.10gb") == "a100 80gb pcie"


@settings(max_examples=500, deadline=None)
@given(st.text(), st.one_of(st.none(), st.integers(min_value=0, max_value=10**6)))
def test_identify_never_crashes(text, memory):
    model = identify(text, memory)
    assert model is None or model in MODELS
