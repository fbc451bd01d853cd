"""Preflight against each S3 server of the sandbox (moto behind nginx TLS with IAM, `rclone serve s3` with its own
TLS), test CA, virtual-hosted names on loopback."""

import pytest
from conftest import needs_policies, s3_settings

from nimrunbook.errors import InputError, PreflightError
from nimrunbook.sandbox.s3 import UNRESOLVED_BUCKET
from nimrunbook.store import S3Settings, run_preflight


def _status(report) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def test_all_checks_pass_and_the_probe_is_gone(any_s3):
    report = run_preflight(s3_settings(any_s3))
    assert report.ok, report.frame().to_string()
    assert _status(report) == {
        "bucket host resolves": "ok",
        "TLS": "ok",
        "credentials": "ok",
        "bucket exists": "ok",
        "dedicated bucket": "ok",
        "write, read, delete": "ok",
    }
    tls = next(c for c in report.checks if c.name == "TLS")
    assert "*.s3.example.test" in tls.detail
    client = __import__("nimrunbook.store", fromlist=["make_client"]).make_client(s3_settings(any_s3))
    assert client.list_objects_v2(Bucket="nim-profiles").get("KeyCount", 0) == 0 or all(
        not o["Key"].startswith("nimrunbook-preflight")
        for o in client.list_objects_v2(Bucket="nim-profiles")["Contents"]
    )


def test_bucket_host_that_does_not_resolve(any_s3):
    report = run_preflight(s3_settings(any_s3, bucket=UNRESOLVED_BUCKET))
    first = report.checks[0]
    assert (first.status, report.ok) == ("fail", False)
    assert "MINIO_DOMAIN" in first.fix and f"{UNRESOLVED_BUCKET}.s3.example.test" in first.detail


def test_certificate_whose_sans_miss_the_bucket_host(any_s3):
    report = run_preflight(s3_settings(any_s3, endpoint_url=any_s3.narrow_endpoint_url))
    tls = next(c for c in report.checks if c.name == "TLS")
    assert tls.status == "fail" and "does not cover nim-profiles.s3.example.test" in tls.detail
    assert "SANs s3.example.test" in tls.detail and "*.s3.example.test" in tls.fix


def test_wrong_ca(any_s3):
    report = run_preflight(s3_settings(any_s3, ca_bundle=str(any_s3.certs.other_ca_bundle)))
    tls = next(c for c in report.checks if c.name == "TLS")
    assert tls.status == "fail" and "does not verify" in tls.detail and "CA bundle" in tls.fix
    with pytest.raises(PreflightError, match="does not verify"):
        report.raise_for_failures()


def test_insecure_warns_loudly_and_is_recorded(any_s3):
    settings = s3_settings(any_s3, ca_bundle=None, insecure=True)
    report = run_preflight(settings)
    assert report.ok and report.settings["insecure"] is True
    assert _status(report)["TLS"] == "warn"
    assert any("TLS verification is OFF" in c.detail for c in report.checks if c.name == "settings")


def test_bad_credentials_and_missing_bucket(any_s3):
    bad = S3Settings(
        "nim-profiles",
        any_s3.endpoint_url,
        access_key_id="AKIAWRONGWRONGWRONG1",
        secret_access_key="wrong-secret-value",
        ca_bundle=str(any_s3.certs.ca_bundle),
    )
    report = run_preflight(bad)
    assert _status(report)["credentials"] == "fail"
    assert "wrong-secret-value" not in report.frame().to_string()
    missing = run_preflight(s3_settings(any_s3, bucket="nim-bench"))  # resolves, never created in the tests
    assert _status(missing)["bucket exists"] == "fail" and "Create" in missing.checks[-1].fix


def test_foreign_objects_warn_that_the_bucket_is_not_dedicated(any_s3):
    from nimrunbook.store import make_client

    client = make_client(s3_settings(any_s3, bucket="nim-mixed"))
    client.put_object(Bucket="nim-mixed", Key="backups/db.sql", Body=b"x")
    report = run_preflight(s3_settings(any_s3, bucket="nim-mixed"), probe=False)
    assert _status(report)["dedicated bucket"] == "warn" and report.ok


def test_read_only_keys_fail_the_write_probe(any_s3):
    needs_policies(any_s3)
    report = run_preflight(s3_settings(any_s3, user="reader"))
    assert _status(report)["write, read, delete"] == "fail"


def test_settings_validation():
    with pytest.raises(InputError, match="No bucket"):
        S3Settings("")
    with pytest.raises(InputError, match="no scheme"):
        S3Settings("b", endpoint_url="minio.example.com:9000")
