"""Publishing to a real S3 server (moto) behind real TLS (nginx, test CA), with IAM checked."""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import FAKE_NGC_KEY, L40S_BF16, VLLM, VLLM_LORA, s3_settings

from nimrunbook import hashing
from nimrunbook.errors import StorageError
from nimrunbook.hashing import HashJournal
from nimrunbook.nim import download_profiles
from nimrunbook.standin import catalog
from nimrunbook.store import (
    load_processed,
    make_client,
    object_key,
    plan_publish,
    process_to_directory,
    publish,
    verify,
)
from nimrunbook.store.upload import require_verified

ALL_ENGINES = [p.id for p in catalog.PROFILES_1_8_5]


@pytest.fixture(scope="module")
def processed(standin_manifest, downloaded_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("processed")
    process_to_directory(plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16, VLLM_LORA]), out)
    return out


def test_publish_then_second_run_uploads_nothing(s3, processed, standin_manifest, caplog):
    document, objects = load_processed(processed)
    settings = s3_settings(s3)
    with caplog.at_level(logging.INFO):
        first = publish(objects, settings, workers=4, journal=HashJournal(processed / ".nimrunbook/sha256.jsonl"))
    assert first.ok and first.counts() == {"uploaded": len(objects), "skipped": 0, "failed": 0}
    expected_keys = {
        object_key(f.uri) for pid in (VLLM, L40S_BF16, VLLM_LORA) for f in standin_manifest.profile(pid).files
    }
    client = make_client(settings)
    stored = {o["Key"]: o["Size"] for o in client.list_objects_v2(Bucket="nim-profiles")["Contents"]}
    assert set(stored) == expected_keys  # flat, at the bucket root, exactly the manifest's keys
    config_key = object_key(f"ngc://{catalog.REPO}:{catalog.HF_TAG}?file=config.json")
    body = client.get_object(Bucket="nim-profiles", Key=config_key)["Body"].read()
    assert body == (processed / "objects" / config_key).read_bytes()
    before = hashing.BYTES_HASHED
    second = publish(objects, settings, workers=4, journal=HashJournal(processed / ".nimrunbook/sha256.jsonl"))
    assert second.counts() == {"uploaded": 0, "skipped": len(objects), "failed": 0}
    assert before == hashing.BYTES_HASHED  # nothing re-hashed either
    assert (verify(objects, settings)["status"] == "ok").all()
    assert (verify(objects, settings, deep=True)["status"] == "ok").all()
    for secret in (*s3.credentials["admin"], FAKE_NGC_KEY):
        assert secret not in caplog.text


def test_publish_straight_from_the_cache_hashes_once(s3, standin_manifest, downloaded_cache, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    journal = HashJournal(tmp_path / "journal.jsonl")
    before = hashing.BYTES_HASHED
    result = publish(plan.objects, s3_settings(s3, bucket="nim-direct"), journal=journal)
    assert result.ok and hashing.BYTES_HASHED - before == plan.total_bytes


def test_resume_after_a_killed_upload(s3, docker, standin_image, tmp_path):
    cache = tmp_path / "cache"
    download_profiles(
        docker,
        standin_image,
        ALL_ENGINES,
        cache,
        ngc_api_key=FAKE_NGC_KEY,
        network_mode="none",
        environment={"NIM_STANDIN_WEIGHT_BYTES": str(24 * 1024 * 1024)},
    )
    manifest_file = tmp_path / "manifest.yaml"
    manifest_file.write_text(catalog.manifest_yaml("1.8.5"))
    out = tmp_path / "out"
    process_to_directory(
        plan_publish(
            __import__("nimrunbook.profiles", fromlist=["x"]).parse_manifest(manifest_file.read_text()),
            cache,
            ALL_ENGINES,
        ),
        out,
    )
    _, objects = load_processed(out)
    settings = s3_settings(s3, bucket="nim-resume")
    key_id, secret = s3.credentials["admin"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}
    command = [
        sys.executable,
        "-m",
        "nimrunbook.cli",
        "profiles",
        "publish",
        "--from-dir",
        str(out),
        "--bucket",
        "nim-resume",
        "--endpoint-url",
        s3.endpoint_url,
        "--ca-bundle",
        str(s3.certs.ca_bundle),
        "--workers",
        "1",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = make_client(settings)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and client.list_objects_v2(Bucket="nim-resume").get("KeyCount", 0) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    present = client.list_objects_v2(Bucket="nim-resume").get("KeyCount", 0)
    assert 3 <= present < len(objects), "the upload was not interrupted part-way"
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    counts = publish(objects, settings).counts()
    assert counts == {"uploaded": 0, "skipped": len(objects), "failed": 0}
    assert "'skipped': " in resumed.stdout and "'failed': 0" in resumed.stdout
    for value in (key_id, secret):
        assert value not in resumed.stdout + resumed.stderr
    require_verified(verify(objects, settings, deep=True))


def test_a_file_changed_after_hashing_is_caught(s3, standin_manifest, downloaded_cache):
    destination = tempfile.mkdtemp(dir="/dev/shm")  # copies: changing them leaves the shared cache intact
    try:
        process_to_directory(plan_publish(standin_manifest, downloaded_cache, [VLLM]), destination)
        _, objects = load_processed(destination)
        journal = HashJournal(os.path.join(destination, ".nimrunbook/sha256.jsonl"))
        weights = next(o for o in objects if o.key.endswith("model.safetensors"))
        tokenizer = next(o for o in objects if o.key.endswith("tokenizer.json"))
        data = bytearray(weights.source.read_bytes())
        data[0] ^= 0xFF
        weights.source.write_bytes(bytes(data))  # an honest change: new mtime
        stat = tokenizer.source.stat()
        changed = bytearray(tokenizer.source.read_bytes())
        changed[1] ^= 0x01
        tokenizer.source.write_bytes(bytes(changed))
        os.utime(tokenizer.source, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a sneaky change: mtime restored
        settings = s3_settings(s3, bucket="nim-changed")
        result = publish(objects, settings, journal=journal)
        rows = result.table.set_index("key")
        assert (
            rows.loc[weights.key, "status"] == "failed"
            and "changed since it was hashed" in rows.loc[weights.key, "detail"]
        )
        with pytest.raises(StorageError, match="not stored correctly"):
            result.raise_for_failures()
        table = verify(objects, settings, deep=True).set_index("key")
        assert table.loc[tokenizer.key, "status"] == "content mismatch"
        assert table.loc[weights.key, "status"] == "missing"
    finally:
        shutil.rmtree(destination)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"bucket": "nim-bench"}, "does not exist"),  # resolves, but never created in the tests
        ({"user": "reader"}, None),
    ],
)
def test_missing_bucket_and_read_only_keys(s3, processed, overrides, message):
    _, objects = load_processed(processed)
    settings = s3_settings(s3, **{"bucket": "nim-inside", **overrides})
    if message:
        with pytest.raises(StorageError, match=message):
            publish(objects, settings)
    else:
        result = publish(objects[:2], settings)
        assert not result.ok and (result.table["status"] == "failed").all()


def test_bad_credentials_and_wrong_ca_say_what_to_do(s3, processed):
    from nimrunbook.store import S3Settings

    _, objects = load_processed(processed)
    bad = S3Settings(
        "nim-inside",
        s3.endpoint_url,
        access_key_id="AKIAWRONGWRONGWRONG1",
        secret_access_key="wrong-secret-value",
        ca_bundle=str(s3.certs.ca_bundle),
    )
    with pytest.raises(StorageError) as info:
        publish(objects, bad)
    assert "access key" in str(info.value) and "wrong-secret-value" not in str(info.value)
    with pytest.raises(StorageError, match="TLS verification failed"):
        publish(objects, s3_settings(s3, bucket="nim-inside", ca_bundle=str(s3.certs.other_ca_bundle)))


def test_verify_names_missing_objects(s3, processed):
    _, objects = load_processed(processed)
    settings = s3_settings(s3, bucket="nim-inside")
    publish(objects, settings).raise_for_failures()
    make_client(settings).delete_object(Bucket="nim-inside", Key=objects[0].key)
    table = verify(objects, settings)
    assert list(table.loc[table.status != "ok", "key"]) == [objects[0].key]
