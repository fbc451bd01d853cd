import contextlib
import json

import pytest
from conftest import FIXTURES, fixture_text
from hypothesis import given, settings
from hypothesis import strategies as st

from nimrunbook.errors import ListingParseError
from nimrunbook.profiles import LISTING_COLUMNS, decode_name, model_parameters_b, parse_listing

LISTINGS = sorted((FIXTURES / "list-model-profiles").glob("*.txt"))


@pytest.mark.parametrize("path", LISTINGS, ids=lambda p: p.stem)
def test_every_real_listing_matches_its_expected_rows(path):
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    frame = parse_listing(path.read_text())
    assert list(frame.columns) == LISTING_COLUMNS
    assert frame[["id", "name", "section", "lora_block"]].to_dict("records") == expected


def test_decoded_fields_of_a_1_x_listing():
    frame = parse_listing(fixture_text("list-model-profiles/llama3-8b-instruct-1.0.3-2xL40S.txt")).set_index("name")
    row = frame.loc["tensorrt_llm-l40s-fp8-tp2-latency"]
    assert (row.engine, row.gpu, row.precision, row.tp, row["mode"], row.lora, row.generic) == (
        "tensorrt_llm",
        "l40s",
        "fp8",
        2,
        "latency",
        False,
        False,
    )
    assert pd_isna(row.pp)  # 1.0 names have no -pp
    vllm = frame.loc["vllm-fp16-tp1-lora"]
    assert (vllm.engine, vllm.lora, vllm.generic) == ("vllm", True, True) and pd_isna(vllm.gpu)


def pd_isna(value):
    import pandas as pd

    return pd.isna(value)


def test_2_x_memory_suffix_and_requires_hint_give_min_memory():
    frame = parse_listing(fixture_text("list-model-profiles/llama-3.1-8b-instruct-2.0.6-RTX5090-truncated.txt"))
    row = frame.iloc[0]
    assert row.min_gpu_memory_gb == 33.0
    assert row.requires.startswith("requires >=33 GB/gpu")
    assert row.id_truncated
    free = parse_listing(fixture_text("list-model-profiles/nim-llm-model-free-2.0.2-unknown-truncated.txt"))
    assert list(free.min_gpu_memory_gb) == [18.0, 22.0, 18.0]
    assert list(free.lora) == [False, True, False]


def test_1_12_long_names_carry_pci_id_and_bare_engine_names_are_generic():
    frame = parse_listing(
        fixture_text("list-model-profiles/llama-3.3-nemotron-super-49b-v1.5-1.12.0-1xH100NVL.txt")
    ).set_index("id")
    h100 = frame.loc["e759b32c9a5c4d16aced45cd7797ec030feb7d9164a7fe74278a76c795baf8cb"]
    assert (h100.gpu, h100.gpu_device, h100.precision, h100.tp, h100.pp) == ("h100_nvl", "2321", "fp8", 1, 1)
    assert frame.loc["50e138f94d85b97117e484660d13b6b54234e60c20584b1de6ed55d109ca4f21"].engine == "sglang"
    assert bool(frame.loc["668b575f1701fa70a97cfeeae998b5d70b048a9b917682291bb82b67f308f80c"].generic)


def test_riva_tag_names_and_vlm_names_without_engine():
    riva = parse_listing(
        fixture_text("list-model-profiles/magpie-tts-multilingual-1.3.0-A100-SXM4-80GB-riva-format.txt")
    )
    assert list(riva.gpu[:3]) == ["a100"] * 3 and list(riva.gpu_device[:3]) == ["20b2"] * 3
    rmir = riva[riva.engine == "rmir"]
    assert len(rmir) == 3 and rmir.generic.all()
    vlm = parse_listing(fixture_text("list-model-profiles/deplot-1.0.0-2xH100NVL.txt"))
    assert list(vlm.gpu) == ["a100", "a10g", "h100", "l40s", "a100pcie", "h100pcie"]


def test_text_without_profiles_is_a_clear_error_quoting_its_start():
    with pytest.raises(ListingParseError) as info:
        parse_listing("INFO starting\nSYSTEM INFO\n- Free GPUs: <None>\n")
    assert "INFO starting" in str(info.value)
    assert "list-model-profiles" in str(info.value)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_parse_listing_never_crashes_on_arbitrary_text(text):
    with contextlib.suppress(ListingParseError):
        parse_listing(text)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            fixture_text("list-model-profiles/llama-3.2-1b-instruct-1.8.4-RTX6000Ada+T600-noisy.txt").splitlines()
        )
    )
)
def test_shuffled_real_lines_never_crash(lines):
    with contextlib.suppress(ListingParseError):
        parse_listing("\n".join(lines))


def test_riva_dict_text_names_decode_their_tags():
    frame = parse_listing(
        fixture_text("list-model-profiles/riva-asr-parakeet-0-6b-ctc-riva-en-us-docs-1.3.2-H100PCIe-truncated.txt")
    ).set_index("id")
    rmir = frame.loc["3b65973c2bae708ba3e2f6dc65f7e85c2c12829fdd2970c848e4b7ee00175505"]
    assert (rmir.engine, bool(rmir.generic), pd_isna(rmir.gpu_device)) == ("rmir", True, True)
    prebuilt = frame.loc["c08781f3bd37aafe92d47d2e1f82dc8705f508d9f8ad11c6fcccd598adcf0fe4"]
    assert (prebuilt.engine, prebuilt.gpu_device, bool(prebuilt.ampere_plus), bool(prebuilt.generic)) == (
        "prebuilt",
        "20b2",
        True,
        False,
    )


def test_prebuilt_tags_without_a_gpu_are_not_generic():
    frame = parse_listing(fixture_text("list-model-profiles/riva-tts-magpie-tts-multilingual-docs-latest-H100PCIe.txt"))
    row = frame.iloc[0]
    assert (row.engine, bool(row.generic), row.gpu, row.gpu_device) == ("prebuilt", False, None, None)


@pytest.mark.parametrize(
    "name, generic, gpu, ampere_plus",
    [
        ("type=bert", True, None, None),
        (
            "ampereplus:enabled|diarizer:sortformer|gpu:a100|gpu_device:20b2|mode:all|model_type:prebuilt",
            False,
            "a100",
            True,
        ),
        ("ampereplus:disabled|batch_size:32|gpu:h100|gpu_device:2330|model_type:prebuilt", False, "h100", False),
        ("{'model_type': 'rmir', 'name': 'x'}", True, None, None),
        ("{}", None, None, None),
    ],
)
def test_tag_style_names(name, generic, gpu, ampere_plus):
    fields = decode_name(name)
    assert (fields.generic, fields.gpu, fields.ampere_plus) == (generic, gpu, ampere_plus)


@pytest.mark.parametrize(
    "model, billions",
    [
        ("nvcr.io/nim/meta/llama-3.1-405b-instruct:1.3.0", 405.0),
        ("meta/llama3-8b-instruct", 8.0),
        ("nvidia/llama-3.3-nemotron-super-49b-v1.5", 49.0),
        ("parakeet-0-6b-ctc-en-us", 0.6),
        ("riva-translate-1_6b", 1.6),
        ("qwen/qwen3-30b-a3b", 30.0),
        ("mistralai/mixtral-8x7b-instruct-v01", None),  # experts: the total is not in the name
        ("microsoft/phi-3-mini-4k-instruct", None),
        ("", None),
    ],
)
def test_model_parameters_from_the_name(model, billions):
    assert model_parameters_b(model) == billions
