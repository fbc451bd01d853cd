"""Every way boto3 fails ends in one StorageError paragraph that says what happened and what to do, without a secret:
against the sandbox's real S3 servers where the failure can be caused here, from S3's documented error codes where
it cannot (a skewed clock, a wrong region, a store that refuses checksum headers)."""

import socket

import botocore.exceptions
import pytest
from conftest import s3_settings

from nimrunbook.errors import StorageError
from nimrunbook.sandbox.s3 import UNRESOLVED_BUCKET
from nimrunbook.sandbox.tls import DOMAIN
from nimrunbook.store import S3Settings, make_client, publish, run_preflight
from nimrunbook.store import upload as upload_module
from nimrunbook.store.client import storage_error
from nimrunbook.store.plan import PlannedObject

SECRET = "not-a-real-secret-0123456789abcdefghij"


@pytest.fixture
def no_aws_configuration(monkeypatch, tmp_path):
    """No AWS credentials or profiles anywhere: not in the environment, not in files, not from an instance."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
    ):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "empty").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "empty"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _keyless(sandbox, **options) -> S3Settings:
    return S3Settings("nim-profiles", sandbox.endpoint_url, ca_bundle=str(sandbox.certs.ca_bundle), **options)


def _one_object(tmp_path) -> list[PlannedObject]:
    path = tmp_path / "config.json"
    path.write_bytes(b"{}")
    return [PlannedObject("nim%2Ftest%2Fm%3At%3Ffile%3Dconfig.json", "ngc://nim/test/m:t?file=config.json", path, 2)]


def test_an_unknown_aws_profile(no_aws_configuration, any_s3):
    settings = _keyless(any_s3, profile="no-such-profile")
    with pytest.raises(StorageError, match="There is no AWS profile 'no-such-profile'") as info:
        make_client(settings)
    assert isinstance(info.value.__cause__, botocore.exceptions.ProfileNotFound)
    credentials = {c.name: c for c in run_preflight(settings, probe=False).checks}["credentials"]
    assert credentials.status == "fail" and "no-such-profile" in credentials.detail


def test_no_credentials_at_all(no_aws_configuration, any_s3, tmp_path):
    settings = _keyless(any_s3)
    with pytest.raises(StorageError, match="No usable AWS credentials") as info:
        publish(_one_object(tmp_path), settings)
    assert "AWS_ACCESS_KEY_ID" in info.value.hint


def test_a_name_that_does_not_resolve_is_not_a_missing_bucket(any_s3, tmp_path):
    with pytest.raises(StorageError) as unresolved:
        publish(_one_object(tmp_path), s3_settings(any_s3, bucket=UNRESOLVED_BUCKET))
    assert f"{UNRESOLVED_BUCKET}.{DOMAIN} does not resolve" in unresolved.value.message
    assert "wildcard" in unresolved.value.hint
    with pytest.raises(StorageError) as missing:  # resolves, answered by the store: never created in the tests
        publish(_one_object(tmp_path), s3_settings(any_s3, bucket="nim-bench"))
    assert "The bucket nim-bench does not exist" in missing.value.message


def test_a_store_that_is_not_there(any_s3, tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens on it
    settings = S3Settings(
        "nim-profiles",
        f"https://{DOMAIN}:{port}",
        access_key_id=any_s3.credentials["admin"][0],
        secret_access_key=SECRET,
        ca_bundle=str(any_s3.certs.ca_bundle),
    )
    with pytest.raises(StorageError) as info:
        publish(_one_object(tmp_path), settings)
    assert "cannot be reached" in info.value.message and "resolves" in info.value.hint
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "code, status, words",
    [
        ("RequestTimeTooSkewed", 403, "clock"),
        ("AuthorizationHeaderMalformed", 400, "region"),
        ("BadDigest", 400, "other bytes than were sent"),
        ("SlowDown", 503, "on its side"),
        ("InternalError", 500, "on its side"),
        ("NoSuchUpload", 404, "multipart upload was removed"),
        ("InvalidAccessKeyId", 403, "does not know this access key"),
        ("SignatureDoesNotMatch", 403, "secret access key does not belong"),
        ("AccessDenied", 403, "refused"),
        ("NoSuchBucket", 404, "does not exist"),
        ("NoSuchKey", 404, "no such object"),
        ("EntityTooLarge", 400, "refused uploading"),
    ],
)
def test_s3_error_codes_read_as_what_to_do(code, status, words):
    """S3's documented codes, as botocore raises them; most cannot be caused against the sandbox."""
    settings = S3Settings("nim-profiles", "https://minio.example.test", access_key_id="AKIATESTONLY00000000")
    response = {"Error": {"Code": code, "Message": f"{code} {SECRET}"}, "ResponseMetadata": {"HTTPStatusCode": status}}
    error = storage_error(botocore.exceptions.ClientError(response, "PutObject"), settings, "uploading x")
    assert words in str(error), str(error)
    assert SECRET not in str(error) or code == "EntityTooLarge"  # an unknown code quotes the store's (redacted) text


def test_a_store_that_refuses_checksum_headers_gets_none(s3, tmp_path, monkeypatch):
    """No server here refuses x-amz-checksum-*; one that does (older gateways) is played by a botocore hook in front
    of the real moto, answering InvalidArgument to any request that carries one."""

    def refusing_client(*args, **kwargs):
        client = make_client(*args, **kwargs)

        def refuse(request, **_):
            if any(h.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum")) for h in request.headers):
                raise botocore.exceptions.ClientError(
                    {"Error": {"Code": "InvalidArgument"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
                    request.context.get("operation_name", "PutObject"),
                )

        client.meta.events.register("before-send.s3", refuse)
        return client

    monkeypatch.setattr(upload_module, "make_client", refusing_client)
    big = tmp_path / "big.bin"
    big.write_bytes(b"\x01" * (9 << 20))
    objects = _one_object(tmp_path) + [
        PlannedObject("nim%2Ftest%2Fm%3At%3Ffile%3Dbig.bin", "ngc://nim/test/m:t?file=big.bin", big, 9 << 20)
    ]
    result = publish(objects, s3_settings(s3, bucket="nim-rot"), workers=1)
    assert result.ok, result.table.to_string()
    assert set(result.table["server_checksum"]) == {"not accepted by the store"}


def test_listing_the_bucket_for_a_tag_update(any_s3):
    """What the tag update (step 08) and the inventory read: every key, or one paragraph saying why not."""
    from nimrunbook.runbook.inputs import bucket_keys

    client = make_client(s3_settings(any_s3, bucket="nim-mixed"))
    client.put_object(Bucket="nim-mixed", Key="nim%2Ftest%2Fm%3At%3Ffile%3Dlisted.json", Body=b"{}")
    assert "nim%2Ftest%2Fm%3At%3Ffile%3Dlisted.json" in bucket_keys(s3_settings(any_s3, bucket="nim-mixed"))
    with pytest.raises(StorageError, match="The bucket nim-bench does not exist"):
        bucket_keys(s3_settings(any_s3, bucket="nim-bench"))
