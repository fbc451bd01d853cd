"""The download's size, estimated before it starts: from the manifest (real samples) and the NIM cache."""

import os

import pytest
from conftest import FIXTURES

from nimrunbook.download_estimate import estimate_download, parameters_in_name
from nimrunbook.localdisk import NimCache
from nimrunbook.profiles import parse_manifest
from nimrunbook.standin import catalog

QWEN = FIXTURES / "manifests/qwen-2.5-7b-instruct-trtllm-a100-profile-snippet-truncated.yaml"


@pytest.mark.parametrize(
    "model, parameters",
    [
        ("nim/meta/llama-3.2-1b-instruct", 1e9),
        ("nim/meta/llama-3_1-8b-instruct", 8e9),  # the cache's underscore spelling
        ("nim/meta/llama3-8b-instruct", 8e9),
        ("nim/meta/llama-3.3-70b-instruct", 70e9),
        ("nim/nvidia/llama-3.3-nemotron-super-49b-v1.5", 49e9),
        ("nim/mistralai/mixtral-8x7b-instruct-v01", 56e9),
        ("nim/qwen/qwen-2.5-7b-instruct", 7e9),
        ("nim/nvidia/deplot", None),
        ("nim/nvidia/nv-embedqa-e5-v5", None),
    ],
)
def test_parameters_from_the_model_name(model, parameters):
    assert parameters_in_name(model) == parameters


def test_estimate_from_a_real_manifest_and_an_empty_cache(tmp_path):
    manifest = parse_manifest(QWEN.read_text())
    (profile,) = manifest.profiles
    estimate = estimate_download(manifest, [profile.id], NimCache(tmp_path))
    assert estimate.bytes == 14_000_000_000  # 7B parameters at bf16, in rank0.engine
    assert "7B parameters x 2 bytes" in estimate.describe()


def test_what_the_cache_holds_is_not_counted_again(downloaded_cache):
    manifest = parse_manifest(catalog.manifest_yaml("1.8.5"))
    vllm, l40s_bf16, h200_fp8 = (catalog.PROFILES_1_8_5[i].id for i in (0, 2, 4))
    cache = NimCache(downloaded_cache)
    assert estimate_download(manifest, [vllm, l40s_bf16], cache).bytes == 0  # downloaded: nothing to add
    assert estimate_download(manifest, [vllm, h200_fp8], cache).bytes == 1_000_000_000  # 1B at fp8, one engine


def test_a_model_that_does_not_state_its_size_says_why(tmp_path):
    manifest = parse_manifest(
        "schema_version: '2.0.0'\nprofiles:\n- id: a1\n  tags: {precision: fp16}\n  workspace:\n    files:\n"
        "      model.safetensors: {uri: 'ngc://nim/nvidia/deplot:hf-1?file=model.safetensors'}\n"
    )
    estimate = estimate_download(manifest, ["a1"], NimCache(tmp_path))
    assert estimate.bytes is None and "states no parameter count" in estimate.describe()
    blob = tmp_path / "ngc/hub/models--nim--nvidia--deplot/blobs/0a1b"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"w" * 10)
    link = tmp_path / "ngc/hub/models--nim--nvidia--deplot/snapshots/hf-1/model.safetensors"
    link.parent.mkdir(parents=True)
    os.symlink("../../blobs/0a1b", link)
    assert estimate_download(manifest, ["a1"], NimCache(tmp_path)).bytes == 0  # in the cache: no size needed
