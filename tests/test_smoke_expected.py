"""The publish records the smoke test compares with: processed directories, bundles, run directories."""

from __future__ import annotations

import json

import pytest
from conftest import L40S_BF16, VLLM

from nimrunbook.errors import InputError
from nimrunbook.smoke import ExpectedObject, Published, load_published
from nimrunbook.store import plan_publish, process_to_directory

IMAGE = "nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"


@pytest.fixture
def processed(standin_manifest, downloaded_cache, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16])
    names = {VLLM: "vllm-bf16-tp1-pp1", L40S_BF16: "tensorrt_llm-l40s-bf16-tp1-pp1-throughput"}
    process_to_directory(plan, tmp_path / "processed", image=IMAGE, profile_names=names, progress="none")
    return tmp_path / "processed", plan


def test_a_processed_directory_gives_every_object_with_its_digest_and_the_profiles(processed):
    directory, plan = processed
    published = load_published(directory)
    assert set(published.objects) == {o.key for o in plan.objects}
    for obj in plan.objects:
        assert published.objects[obj.key] == ExpectedObject(obj.key, obj.sha256, obj.size, obj.uri)
    assert published.profile_ids == [VLLM, L40S_BF16] and published.images == [IMAGE]
    assert published.profile_names[VLLM] == "vllm-bf16-tp1-pp1"
    assert load_published(directory / "nim-objects.json").objects == published.objects


def test_a_run_directory_leads_to_what_its_publish_step_processed(processed, tmp_path):
    directory, _ = processed
    run = tmp_path / "run"
    run.mkdir()
    record = {
        "publish": {"images": {IMAGE: {"directory": str(directory), "objects": 19}}},
        "selection": {IMAGE: [{"id": VLLM, "name": "vllm-bf16-tp1-pp1"}]},
    }
    (run / "run.json").write_text(json.dumps(record))
    published = load_published(run)
    assert published.objects == load_published(directory).objects
    assert published.sources[0].endswith("run.json")


def test_a_bundle_manifest_is_read_and_checked_entry_by_entry(processed, tmp_path):
    directory, plan = processed
    document = json.loads((directory / "nim-objects.json").read_text())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    document["format"], document["images"] = "nimrunbook.bundle", [{"source": IMAGE, "digest": "sha256:" + "0" * 64}]
    (bundle / "bundle.json").write_text(json.dumps(document))
    assert set(load_published(bundle).objects) == {o.key for o in plan.objects}
    assert load_published(bundle).images == [IMAGE]
    # from the media: hostile entries are refused, naming what is wrong
    for field, value, words in (
        ("key", "../../etc/passwd", "not a flat object key"),
        ("sha256", "not-a-digest", "has no sha256"),
        ("size", -1, "has no size"),
        ("size", True, "has no size"),
    ):
        broken = json.loads(json.dumps(document))
        broken["objects"][0][field] = value
        (bundle / "bundle.json").write_text(json.dumps(broken))
        with pytest.raises(InputError, match=words):
            load_published(bundle)
    (bundle / "bundle.json").write_text("{not json")
    with pytest.raises(InputError, match="not JSON"):
        load_published(bundle)


def test_a_folder_without_a_record_says_what_to_give(tmp_path):
    with pytest.raises(InputError, match="holds no record of published objects"):
        load_published(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"steps": {}}))
    with pytest.raises(InputError, match="names no published profiles"):
        load_published(tmp_path)


def test_published_of_plain_objects():
    published = Published.of([ExpectedObject("k", "a" * 64, 3)])
    assert published.objects["k"].size == 3 and published.profile_ids == []
