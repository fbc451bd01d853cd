import json
import os
import subprocess

from conftest import L40S_BF16, VLLM

from nimrunbook import hashing
from nimrunbook.store import load_processed, plan_publish, process_to_directory, verify_directory


def test_process_hard_links_hashes_once_and_sha256sum_agrees(standin_manifest, downloaded_cache, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16])
    before = hashing.BYTES_HASHED
    result = process_to_directory(plan, tmp_path / "out", image="nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5")
    assert hashing.BYTES_HASHED - before == plan.total_bytes  # every byte hashed exactly once
    assert (result.linked, result.copied, result.skipped) == (len(plan.objects), 0, 0)
    for obj in plan.objects:
        placed = tmp_path / "out/objects" / obj.key
        assert placed.stat().st_ino == obj.source.stat().st_ino  # a hard link: no bytes copied
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path / "out", capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    document = json.loads((tmp_path / "out/nim-objects.json").read_text())
    assert document["format"] == "nimrunbook.nim-objects" and document["version"] == 1
    assert document["image"].endswith(":1.8.5") and [p["id"] for p in document["profiles"]] == [VLLM, L40S_BF16]
    assert {o["key"] for o in document["objects"]} == {o.key for o in plan.objects}
    assert not list((tmp_path / "out/.nimrunbook/incomplete").iterdir())


def test_rerun_skips_complete_files_without_hashing(standin_manifest, downloaded_cache, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    process_to_directory(plan, tmp_path / "out")
    before = hashing.BYTES_HASHED
    again = process_to_directory(plan_publish(standin_manifest, downloaded_cache, [VLLM]), tmp_path / "out")
    assert again.skipped == len(plan.objects) and before == hashing.BYTES_HASHED


def test_interrupted_process_leaves_no_partial_object_and_resumes(standin_manifest, downloaded_cache, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    out = tmp_path / "out"
    # An interruption leaves a temporary file, never a file under objects/.
    (out / ".nimrunbook/incomplete").mkdir(parents=True)
    (out / ".nimrunbook/incomplete" / f"{plan.objects[0].key}.incomplete").write_bytes(b"half")
    result = process_to_directory(plan, out)
    assert result.linked == len(plan.objects)
    assert verify_directory(out) == []


def test_copy_across_filesystems_hashes_while_copying(standin_manifest, downloaded_cache, tmp_path):
    shm = "/dev/shm"
    target = tmp_path / "out" if os.stat(shm).st_dev == os.stat(tmp_path).st_dev else None
    destination = target or __import__("tempfile").mkdtemp(dir=shm)
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    before = hashing.BYTES_HASHED
    result = process_to_directory(plan, destination)
    assert result.copied == len(plan.objects) and hashing.BYTES_HASHED - before == plan.total_bytes
    assert verify_directory(destination) == []


def test_verify_directory_names_corrupt_truncated_and_missing(standin_manifest, downloaded_cache, tmp_path):
    import shutil
    import tempfile

    destination = tempfile.mkdtemp(dir="/dev/shm")  # copies, so damaging them leaves the shared cache intact
    try:
        plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
        process_to_directory(plan, destination)
        _, objects = load_processed(destination)
        weights = next(o for o in objects if o.key.endswith("model.safetensors"))
        data = bytearray(weights.source.read_bytes())
        data[100] ^= 0xFF
        weights.source.write_bytes(bytes(data))
        small = [o for o in objects if o is not weights]
        small[0].source.write_bytes(small[0].source.read_bytes()[:-3])
        small[1].source.unlink()
        problems = verify_directory(destination)
        assert any(p.startswith("corrupt:") and "safetensors" in p for p in problems)
        assert any(p.startswith("truncated") for p in problems)
        assert any(p.startswith("missing:") for p in problems)
    finally:
        shutil.rmtree(destination)
