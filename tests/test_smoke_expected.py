"""The publish records the smoke test compares with: processed directories, bundles, run directories."""

from __future__ import annotations

import json
import os

import pytest
from conftest import L40S_BF16, VLLM

from nimrunbook.bundle import layout as bundle_layout
from nimrunbook.errors import InputError, VerificationError
from nimrunbook.smoke import ExpectedObject, Published, load_published
from nimrunbook.store import plan_publish, process_to_directory

IMAGE = "nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"


@pytest.fixture
def processed(standin_manifest, downloaded_cache, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16])
    names = {VLLM: "vllm-bf16-tp1-pp1", L40S_BF16: "tensorrt_llm-l40s-bf16-tp1-pp1-throughput"}
    process_to_directory(plan, tmp_path / "processed", image=IMAGE, profile_names=names)
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


def _bundle_document(processed_document: dict) -> dict:
    """bundle.json as `bundle create` writes it, for the objects of a processed directory (no parts, no files)."""
    objects = [
        {**o, "path": f"{bundle_layout.OBJECTS_DIR}/{o['key']}", "parts": []} for o in processed_document["objects"]
    ]
    return {
        "format": bundle_layout.FORMAT,
        "version": bundle_layout.VERSION,
        "images": [{"source": IMAGE, "digest": "sha256:" + "0" * 64}],
        "profiles": processed_document["profiles"],
        "objects": objects,
        "inside": {},
        "signed": False,
        "files": [],
    }


def test_a_bundle_manifest_is_read_confined_and_checked_entry_by_entry(processed, tmp_path):
    directory, plan = processed
    document = _bundle_document(json.loads((directory / "nim-objects.json").read_text()))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "bundle.json").write_text(json.dumps(document))
    assert set(load_published(bundle).objects) == {o.key for o in plan.objects}
    assert load_published(bundle).images == [IMAGE]
    assert load_published(bundle / "bundle.json").profile_ids == [VLLM, L40S_BF16]
    # from the media: hostile entries are refused by the bundle schema, naming what is wrong
    for field, value, words in (
        ("key", "../../etc/passwd", "not the flat, percent-encoded NIM key"),
        ("sha256", "not-a-digest", "sha256 that is not 64"),
        ("size", -1, "negative size"),
        ("size", True, "no valid 'size'"),
        ("path", "../outside", "not a safe path"),
    ):
        broken = json.loads(json.dumps(document))
        broken["objects"][0][field] = value
        (bundle / "bundle.json").write_text(json.dumps(broken))
        with pytest.raises(VerificationError, match=words):
            load_published(bundle)
    (bundle / "bundle.json").write_text("{not json")
    with pytest.raises(VerificationError, match="not JSON"):
        load_published(bundle)
    # a bundle.json that is a link (to anything) is refused, not followed; so is a folder that also holds a
    # nim-objects.json: a bundle is read as a bundle
    (bundle / "bundle.json").unlink()
    (bundle / "bundle.json").symlink_to(directory / "nim-objects.json")
    (bundle / "nim-objects.json").write_text((directory / "nim-objects.json").read_text())
    with pytest.raises(VerificationError, match="symbolic link|link"):
        load_published(bundle)
    (bundle / "bundle.json").unlink()
    os.mkfifo(bundle / "bundle.json")  # would hang a plain reader
    with pytest.raises(VerificationError, match="not a regular file|FIFO|fifo"):
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
