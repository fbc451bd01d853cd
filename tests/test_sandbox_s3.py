"""What every S3 server of the sandbox must do alike (moto behind nginx, and rclone serve s3), through the
product's own client: TLS with virtual-hosted names, keys checked, uploads accepted, sha256 metadata kept."""

import io
import os

import pytest
from conftest import s3_settings

from nimrunbook.sandbox.ports import port_open
from nimrunbook.sandbox.rclone import RcloneS3Sandbox
from nimrunbook.store import make_client, run_preflight
from nimrunbook.store.client import error_code


def test_the_products_preflight_passes(any_s3):
    report = run_preflight(s3_settings(any_s3, bucket="nim-direct"))
    assert report.ok, report.frame().to_string()
    assert "*.s3.example.test" in next(c for c in report.checks if c.name == "TLS").detail


def test_a_certificate_that_misses_the_bucket_host_is_named(any_s3):
    report = run_preflight(s3_settings(any_s3, endpoint_url=any_s3.narrow_endpoint_url))
    tls = next(c for c in report.checks if c.name == "TLS")
    assert tls.status == "fail" and "does not cover nim-profiles.s3.example.test" in tls.detail


def test_uploads_are_accepted_and_keep_their_sha256(any_s3):
    client = make_client(s3_settings(any_s3, bucket="nim-direct"))
    client.put_object(Bucket="nim-direct", Key="sandbox-small", Body=b"small", Metadata={"sha256": "a" * 64})
    # 9 MiB: a multipart upload, as the product sends profiles
    client.upload_fileobj(io.BytesIO(b"x" * (9 << 20)), "nim-direct", "sandbox-large", ExtraArgs={"Metadata": {}})
    head = client.head_object(Bucket="nim-direct", Key="sandbox-small")
    assert {k.lower(): v for k, v in head["Metadata"].items()} == {"sha256": "a" * 64}
    assert client.head_object(Bucket="nim-direct", Key="sandbox-large")["ContentLength"] == 9 << 20
    client.delete_objects(Bucket="nim-direct", Delete={"Objects": [{"Key": "sandbox-small"}, {"Key": "sandbox-large"}]})


def test_a_wrong_secret_is_refused(any_s3):
    settings = s3_settings(any_s3)
    settings.secret_access_key = "not-the-secret"
    client = make_client(settings)
    with pytest.raises(Exception) as caught:
        client.list_objects_v2(Bucket="nim-profiles", MaxKeys=1)
    assert error_code(caught.value) in ("SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403")


def test_the_reader_key_is_read_only_only_where_policies_are_enforced(any_s3):
    client = make_client(s3_settings(any_s3, user="reader"))
    assert client.list_objects_v2(Bucket="nim-profiles", MaxKeys=1)["ResponseMetadata"]["HTTPStatusCode"] == 200
    if any_s3.enforces_policies:
        with pytest.raises(Exception) as caught:
            client.put_object(Bucket="nim-profiles", Key="reader-probe", Body=b"no")
        assert error_code(caught.value) == "AccessDenied"
    else:  # rclone: every key may write; the demo says so, and tests of read-only keys use moto
        client.put_object(Bucket="nim-profiles", Key="reader-probe", Body=b"yes")
        client.delete_object(Bucket="nim-profiles", Key="reader-probe")


def test_rclone_adding_a_key_restarts_the_server_and_keeps_the_objects(tmp_path):
    sandbox = RcloneS3Sandbox(root=tmp_path / "s3").start()
    try:
        sandbox.create_bucket("nim-profiles")
        admin = make_client(s3_settings(sandbox))
        admin.put_object(Bucket="nim-profiles", Key="kept", Body=b"on disk")
        before = sandbox.pids
        sandbox.create_user("reader", ["s3:GetObject"])
        assert sandbox.pids and set(sandbox.pids).isdisjoint(before)
        reader = make_client(s3_settings(sandbox, user="reader"))
        assert reader.get_object(Bucket="nim-profiles", Key="kept")["Body"].read() == b"on disk"
    finally:
        pids, ports = sandbox.pids, sandbox.ports
        sandbox.stop()
    assert sandbox.pids == [] and not any(port_open(port) for port in ports)
    assert all(not os.path.exists(f"/proc/{pid}") for pid in pids)


def test_rclone_that_cannot_listen_fails_at_once_with_its_log(tmp_path, rclone_s3):
    taken = RcloneS3Sandbox(root=tmp_path / "s3", port=rclone_s3.port)  # the port is in use
    with pytest.raises(RuntimeError, match="(?s)exited with code .*address already in use"):
        taken.start()
    assert taken.pids == []
