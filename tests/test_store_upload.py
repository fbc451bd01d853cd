"""Publishing to each S3 server of the sandbox in turn (``any_s3``: moto behind nginx TLS with IAM enforced, and
`rclone serve s3` with its own TLS): what is sent is checked by its content, a re-run resumes and skips, the bucket
verifies, and every failure ends in one clear paragraph without a secret."""

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import FAKE_NGC_KEY, L40S_BF16, VLLM, VLLM_LORA, empty_bucket, needs_policies, s3_settings
from socket_proxy import TcpProxy

from nimrunbook import hashing
from nimrunbook.errors import StorageError
from nimrunbook.hashing import HashJournal
from nimrunbook.nim import download_profiles
from nimrunbook.profiles import parse_manifest
from nimrunbook.sandbox.tls import DOMAIN
from nimrunbook.standin import catalog
from nimrunbook.store import (
    S3Settings,
    load_processed,
    make_client,
    object_key,
    plan_publish,
    process_to_directory,
    publish,
    verify,
)
from nimrunbook.store.plan import PlannedObject
from nimrunbook.store.send import PART_SIZE
from nimrunbook.store.upload import require_verified

SERVER_CHECKSUMS = {"matches (SHA256)", "not reported by the store"}


@pytest.fixture(scope="module")
def processed(standin_manifest, downloaded_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("processed")
    process_to_directory(plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16, VLLM_LORA]), out)
    return out


@pytest.fixture(scope="module")
def large_processed(docker, standin_image, tmp_path_factory):
    """vLLM and one L40S engine with 20 MiB weights (3 parts each), processed: multipart uploads that take a while."""
    cache = tmp_path_factory.mktemp("large-cache")
    download_profiles(
        docker,
        standin_image,
        [VLLM, L40S_BF16],
        cache,
        ngc_api_key=FAKE_NGC_KEY,
        network_mode="none",
        environment={"NIM_STANDIN_WEIGHT_BYTES": str(20 << 20)},
        expected_bytes=40 << 20,  # two weight files of 20 MiB, not the estimate for a real 1B model
    )
    out = tmp_path_factory.mktemp("large-processed")
    process_to_directory(plan_publish(parse_manifest(catalog.manifest_yaml("1.8.5")), cache, [VLLM, L40S_BF16]), out)
    return out


def _files(directory: Path, sizes: list[int]) -> list[PlannedObject]:
    """Objects of random bytes with NIM-shaped keys, their digests on record as a manifest would hold them."""
    objects = []
    for number, size in enumerate(sizes):
        path = directory / f"file-{number}.bin"
        path.write_bytes(os.urandom(size))
        uri = f"ngc://nim/test/model:t?file=file-{number}.bin"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        objects.append(PlannedObject(object_key(uri), uri, path, size, ["test"], digest))
    return objects


def _flip_keeping_mtime(path: Path, offset: int) -> None:
    """Bit rot: one byte changed, the size and mtime as they were (so the file's identity is unchanged)."""
    info = path.stat()
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def _keys(client, bucket: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}


def _upload_keys(client, bucket: str) -> list[str]:
    try:
        return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    except client.exceptions.NoSuchUpload:  # rclone's answer when there is none
        return []


def _cli_publish(sandbox, directory: Path, bucket: str, endpoint_url: str, workers: int = 2) -> tuple[list[str], dict]:
    key_id, secret = sandbox.credentials["admin"]
    command = [
        sys.executable,
        "-m",
        "nimrunbook.cli",
        "profiles",
        "publish",
        "--from-dir",
        str(directory),
        "--bucket",
        bucket,
        "--endpoint-url",
        endpoint_url,
        "--ca-bundle",
        str(sandbox.certs.ca_bundle),
        "--workers",
        str(workers),
    ]
    return command, {**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}


def test_publish_then_second_run_uploads_nothing(any_s3, processed, standin_manifest, caplog):
    empty_bucket(any_s3, "nim-profiles")
    document, objects = load_processed(processed)
    settings = s3_settings(any_s3)
    with caplog.at_level(logging.INFO):
        first = publish(objects, settings, workers=4, journal=HashJournal(processed / ".nimrunbook/sha256.jsonl"))
    assert first.ok and first.counts() == {"uploaded": len(objects), "skipped": 0, "failed": 0}
    assert set(first.table["server_checksum"]) <= SERVER_CHECKSUMS
    if any_s3.enforces_policies:  # moto keeps the x-amz-checksum-sha256 it is sent; rclone only for a single PUT
        assert set(first.table["server_checksum"]) == {"matches (SHA256)"}
    expected_keys = {
        object_key(f.uri) for pid in (VLLM, L40S_BF16, VLLM_LORA) for f in standin_manifest.profile(pid).files
    }
    client = make_client(settings)
    assert _keys(client, "nim-profiles") == expected_keys  # flat, at the bucket root, exactly the manifest's keys
    config_key = object_key(f"ngc://{catalog.REPO}:{catalog.HF_TAG}?file=config.json")
    body = client.get_object(Bucket="nim-profiles", Key=config_key)["Body"].read()
    assert body == (processed / "objects" / config_key).read_bytes()
    before = hashing.BYTES_HASHED
    second = publish(objects, settings, workers=4, journal=HashJournal(processed / ".nimrunbook/sha256.jsonl"))
    assert second.counts() == {"uploaded": 0, "skipped": len(objects), "failed": 0}
    assert before == hashing.BYTES_HASHED  # the bucket holds the manifest's digests: no file is read
    assert (verify(objects, settings)["status"] == "ok").all()
    assert (verify(objects, settings, deep=True)["status"] == "ok").all()
    for secret in (*any_s3.credentials["admin"], FAKE_NGC_KEY):
        assert secret not in caplog.text


def test_publish_from_the_cache_hashes_before_and_while_sending(any_s3, standin_manifest, downloaded_cache, tmp_path):
    empty_bucket(any_s3, "nim-direct")
    settings = s3_settings(any_s3, bucket="nim-direct")
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    assert all(o.size <= PART_SIZE for o in plan.objects)  # single PUTs: the sent bytes' hash is the S3 checksum too
    journal = HashJournal(tmp_path / "journal.jsonl")
    before = hashing.BYTES_HASHED
    result = publish(plan.objects, settings, journal=journal)
    # no digest on record: each file is hashed for its metadata, then its bytes hashed again as they are sent
    assert result.ok and hashing.BYTES_HASHED - before == 2 * plan.total_bytes
    assert all(o.sha256 for o in plan.objects)  # known now, for the verification that follows a publish
    before = hashing.BYTES_HASHED
    again = publish(plan_publish(standin_manifest, downloaded_cache, [VLLM]).objects, settings, journal=journal)
    assert again.counts()["skipped"] == len(plan.objects) and before == hashing.BYTES_HASHED


def test_bit_rot_is_refused_before_the_object_becomes_visible(any_s3, tmp_path):
    empty_bucket(any_s3, "nim-rot")
    settings = s3_settings(any_s3, bucket="nim-rot")
    large, small, honest = _files(tmp_path, [PART_SIZE + 5000, 3000, 2000])
    _flip_keeping_mtime(large.source, PART_SIZE + 10)  # in the second part: the first one is sent already
    _flip_keeping_mtime(small.source, 10)
    honest.source.write_bytes(b"changed" + honest.source.read_bytes()[7:])  # a change with a new mtime
    for attempt in ("publish", "publish again"):
        result = publish([large, small, honest], settings, workers=2)
        rows = result.table.set_index("key")
        assert list(rows["status"]) == ["failed"] * 3, attempt
        assert all("hash to sha256" in detail and "from the manifest" in detail for detail in rows["detail"])
        client = make_client(settings)
        assert _keys(client, "nim-rot") == set(), attempt  # never visible, not even for a moment after the upload
        assert _upload_keys(client, "nim-rot") == [], attempt  # the multipart upload was aborted
    with pytest.raises(StorageError, match="download its profile again"):
        result.raise_for_failures()


def test_bit_rot_behind_the_hash_journal_is_refused(any_s3, tmp_path):
    """No digest on record (a publish straight from the cache): the journal's is a cache, not evidence."""
    empty_bucket(any_s3, "nim-rot")
    (obj,) = _files(tmp_path, [3000])
    journal = HashJournal(tmp_path / "journal.jsonl")
    journal.record(obj.source, obj.sha256)
    obj.sha256 = None
    _flip_keeping_mtime(obj.source, 100)
    assert journal.lookup(obj.source)  # same device, inode, size and mtime: the journal still vouches for it
    result = publish([obj], s3_settings(any_s3, bucket="nim-rot"), journal=journal)
    (detail,) = result.table["detail"]
    assert result.counts()["failed"] == 1 and "from the hash journal" in detail


def test_bit_rot_after_the_upload_leaves_the_bucket_as_proven(any_s3, tmp_path):
    """The skip rule: an object the bucket holds with the expected digest was proven when it was sent; the local file
    is not read again, so its later rot neither blocks nor changes the bucket (`verify_directory` finds it)."""
    empty_bucket(any_s3, "nim-rot")
    settings = s3_settings(any_s3, bucket="nim-rot")
    objects = _files(tmp_path, [PART_SIZE + 1, 500])
    publish(objects, settings).raise_for_failures()
    for obj in objects:
        _flip_keeping_mtime(obj.source, 3)
    before = hashing.BYTES_HASHED
    assert publish(objects, settings).counts() == {"uploaded": 0, "skipped": 2, "failed": 0}
    assert before == hashing.BYTES_HASHED
    require_verified(verify(objects, settings, deep=True))


def test_a_killed_publish_resumes_and_its_multipart_upload_is_aborted(any_s3, large_processed):
    bucket = "nim-resume"
    empty_bucket(any_s3, bucket)
    settings = s3_settings(any_s3, bucket=bucket)
    client = make_client(settings)
    _, objects = load_processed(large_processed)
    ours = {o.key for o in objects}
    other = client.create_multipart_upload(Bucket=bucket, Key="someone-elses-upload")["UploadId"]
    try:
        with TcpProxy(any_s3.port, rate=4_000_000) as slow:  # a slow path, so the kill lands mid-upload
            command, env = _cli_publish(any_s3, large_processed, bucket, f"https://{DOMAIN}:{slow.port}", workers=1)
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            # one complete object (the largest is sent first), and the next one's multipart upload under way
            while time.monotonic() < deadline and not (
                _keys(client, bucket) and ours & set(_upload_keys(client, bucket))
            ):
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        present = _keys(client, bucket)
        assert ours & set(_upload_keys(client, bucket)), "no multipart upload was under way when the publish was killed"
        assert 1 <= len(present) < len(objects), "the publish was not interrupted part-way"
        command, env = _cli_publish(any_s3, large_processed, bucket, any_s3.endpoint_url)
        resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stderr
        assert "aborted 1 unfinished multipart uploads" in resumed.stderr
        assert f"'skipped': {len(present)}" in resumed.stdout and "'failed': 0" in resumed.stdout
        assert _upload_keys(client, bucket) == ["someone-elses-upload"]  # others' uploads are left alone
        assert publish(objects, settings).counts() == {"uploaded": 0, "skipped": len(objects), "failed": 0}
        require_verified(verify(objects, settings, deep=True))
        for value in env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]:
            assert value not in resumed.stdout + resumed.stderr
    finally:
        client.abort_multipart_upload(Bucket=bucket, Key="someone-elses-upload", UploadId=other)


def test_a_front_end_that_dies_mid_upload_ends_in_one_clear_error(any_s3, large_processed):
    bucket = "nim-cut"
    empty_bucket(any_s3, bucket)
    with TcpProxy(any_s3.port, cut_after=12 << 20) as front_end:  # dies in the second part of the first file
        command, env = _cli_publish(any_s3, large_processed, bucket, f"https://{DOMAIN}:{front_end.port}")
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    error = run.stderr[run.stderr.index("nimrunbook: error:") :]
    assert "objects were not stored correctly" in error
    assert "closed the connection" in error or "cannot be reached" in error
    for value in env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]:
        assert value not in run.stdout + run.stderr
    command, env = _cli_publish(any_s3, large_processed, bucket, any_s3.endpoint_url)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert _upload_keys(make_client(s3_settings(any_s3, bucket)), bucket) == []


@pytest.mark.parametrize("case", ["missing bucket", "read-only key"])
def test_missing_bucket_and_read_only_keys(any_s3, processed, case):
    _, objects = load_processed(processed)
    if case == "missing bucket":
        with pytest.raises(StorageError, match="nim-bench does not exist"):  # resolves, but never created in tests
            publish(objects, s3_settings(any_s3, bucket="nim-bench"))
        return
    needs_policies(any_s3)
    result = publish(objects[:2], s3_settings(any_s3, bucket="nim-inside", user="reader"), workers=1)
    assert not result.ok and (result.table["status"] == "failed").all()
    assert "refused" in result.table["detail"][0]
    assert "not sent: an earlier request failed" in result.table["detail"][1]  # one refusal stops the rest


def test_bad_credentials_and_wrong_ca_say_what_to_do(any_s3, processed):
    _, objects = load_processed(processed)
    bad = S3Settings(
        "nim-inside",
        any_s3.endpoint_url,
        access_key_id="AKIAWRONGWRONGWRONG1",
        secret_access_key="wrong-secret-value",
        ca_bundle=str(any_s3.certs.ca_bundle),
    )
    with pytest.raises(StorageError) as info:
        publish(objects, bad)
    assert "access key" in str(info.value) and "wrong-secret-value" not in str(info.value)
    with pytest.raises(StorageError, match="TLS verification failed"):
        publish(objects, s3_settings(any_s3, bucket="nim-inside", ca_bundle=str(any_s3.certs.other_ca_bundle)))


def test_verify_names_missing_objects(any_s3, processed):
    _, objects = load_processed(processed)
    settings = s3_settings(any_s3, bucket="nim-inside")
    publish(objects, settings).raise_for_failures()
    make_client(settings).delete_object(Bucket="nim-inside", Key=objects[0].key)
    table = verify(objects, settings)
    assert list(table.loc[table.status != "ok", "key"]) == [objects[0].key]
