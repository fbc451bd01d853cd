import pytest
from conftest import FIXTURES, fixture_text

from nimrunbook.errors import ManifestParseError
from nimrunbook.profiles import enrich, parse_listing, parse_manifest

MANIFESTS = sorted((FIXTURES / "manifests").glob("*.yaml"))


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.stem)
def test_every_real_manifest_parses(path):
    manifest = parse_manifest(path.read_text())
    assert manifest.profiles
    frame = manifest.profiles_frame()
    assert list(frame["id"]) == [p.id for p in manifest.profiles]


def test_v1_custom_yaml_tags_are_read_as_plain_data():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-v1-manifest_trtllm_v1-yamltags.yaml"))
    assert manifest.schema == "v1"
    (profile,) = manifest.profiles
    assert [f.path for f in profile.files] == [
        "trtllm_engine/LICENSE.txt",
        "trtllm_engine/checksums.blake3",
        "trtllm_engine/config.json",
    ]
    assert (profile.engine, profile.gpu, profile.gpu_device, profile.tag("tp")) == ("tensorrt_llm", "l40s", "26b5", "8")


def test_v1_files_with_repo_id_get_ngc_uris():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-controller-manifest_trtllm-v1.yaml"))
    files = manifest.profiles[0].files
    assert files[0].uri == "ngc://nim/meta/llama3-70b-instruct?file=LICENSE.txt"
    assert manifest.profiles[0].lora is True


def test_v2_schema_lists_files_with_their_uris():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-v2-manifest_v2.yaml"))
    assert manifest.schema == "v2.0.0"
    first = manifest.profiles[0]
    assert [(f.path, f.uri) for f in first.files] == [
        ("engine", "ngc://org/team/model/engine.bin"),
        ("config", "ngc://org/team/model/config.json"),
        ("license", "ngc://org/team/model/LICENSE"),
    ]
    frame = manifest.profiles_frame().set_index("id")
    assert bool(frame.loc["1111222233334444555566667777888899990000aaaabbbbccccddddeeeeffff"].generic)
    assert not bool(frame.loc[first.id].generic)


def test_pasted_profile_excerpts_with_an_elision_line_still_parse():
    manifest = parse_manifest(
        fixture_text("manifests/llama-3.3-70b-instruct-1.5.2-vllm-profile-snippet-truncated.yaml")
    )
    assert manifest.schema == "v2-profiles" and len(manifest.profiles[0].files) == 4
    qwen = parse_manifest(fixture_text("manifests/qwen-2.5-7b-instruct-trtllm-a100-profile-snippet-truncated.yaml"))
    assert qwen.profiles[0].files[1].path == "trtllm_engine/rank0.engine"
    assert qwen.profiles[0].tag("number_of_gpus") == "1"
    buildable = parse_manifest(
        fixture_text("manifests/llama-3.3-70b-instruct-1.5.2-trtllm-buildable-profile-snippet-truncated.yaml")
    )
    assert buildable.profiles[0].generic and buildable.profiles[0].trtllm_buildable


def test_legacy_lists_in_both_spellings():
    single = parse_manifest(fixture_text("manifests/k8snimop-legacy-manifest_legacy_single_key.yaml"))
    assert single.schema == "legacy"
    assert single.profiles[0].id.startswith("f1e2d3c4")
    assert single.profiles[0].tag("product_name_regex") == "^NVIDIA-L40S.*"
    real = parse_manifest(fixture_text("manifests/k8snimop-legacy-manifest_molmim_1.0.0_real.yaml"))
    assert real.profiles[0].id == "MolMIM"
    assert real.profiles[0].files[0].uri == "ngc://nim/nvidia/molmim:1.3"


@pytest.mark.parametrize(
    "text, found",
    [("just: text\nother: 1\n", "keys just, other"), ("- 1\n- 2\n", "list"), ("", "NoneType")],
)
def test_unknown_schema_names_what_it_found(text, found):
    with pytest.raises(ManifestParseError) as info:
        parse_manifest(text)
    assert found in str(info.value)


def test_invalid_yaml_is_a_clear_error():
    with pytest.raises(ManifestParseError, match="not valid YAML"):
        parse_manifest("profiles: [\n")


def test_enrich_adds_manifest_device_to_a_listing():
    manifest = parse_manifest(fixture_text("manifests/k8snimop-v1-manifest_lora.yaml"))
    listing = parse_listing(
        "36fc1fa4fc35c1d54da115a39323080b08d7937dceb8ba47be44f4da0ec720ff: tensorrt_llm-h100-fp16-tp4-pp1-throughput-lora\n"
    )
    frame = enrich(listing, manifest)
    assert frame.loc[0, "gpu_device"] == "2330" and bool(frame.loc[0, "in_manifest"])
