"""Shared test fixtures. Samples under tests/fixtures are real (see SOURCES.md)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text(encoding="utf-8")


@pytest.fixture
def guide_listing() -> str:
    return fixture_text("list-model-profiles/datarobot-guide-llama-3.2-1b-instruct-1.8.5-truncated.txt")


# -- real services, started once per test session ------------------------------------------------

import os  # noqa: E402

from nimrunbook.engine import docker_client as _docker_client  # noqa: E402
from nimrunbook.errors import DockerError  # noqa: E402
from nimrunbook.sandbox.registry import LocalRegistry  # noqa: E402
from nimrunbook.standin import build_standin_image  # noqa: E402

# Looks like a real NGC key so that the key-shape redaction is exercised too.
FAKE_NGC_KEY = "nvapi-TESTONLY0123456789abcdefABCDEF-not-a-real-key"


@pytest.fixture(scope="session")
def docker():
    """The real Docker engine that scripts/test started (or the user's own)."""
    try:
        return _docker_client()
    except DockerError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Docker engine: {error}")


@pytest.fixture(scope="session")
def standin_image(docker) -> str:
    # pinned: a ref that a build of another checkout on a shared engine cannot move to another image
    return build_standin_image(docker, "1.8.5", pinned=True)


@pytest.fixture(scope="session")
def standin_image_next(docker) -> str:
    return build_standin_image(docker, "1.8.6", pinned=True)


@pytest.fixture(scope="session")
def ngc_registry(tmp_path_factory):
    """A real registry on loopback standing in for nvcr.io."""
    registry = LocalRegistry(root=tmp_path_factory.mktemp("ngc-registry")).start()
    yield registry
    registry.stop()


def pushed(docker, image: str, ref: str) -> str:
    """``image`` of the engine, tagged ``ref`` and pushed to ``ref``'s registry; returns ``ref``."""
    docker.images.get(image).tag(ref)
    for event in docker.api.push(ref, stream=True, decode=True):
        assert "error" not in event, event
    return ref


@pytest.fixture(scope="session")
def ngc_image(docker, standin_image, ngc_registry) -> str:
    """The stand-in image, pushed to the nvcr.io stand-in under the real repository path."""
    return pushed(docker, standin_image, f"{ngc_registry.host}/nim/meta/llama-3.2-1b-instruct:1.8.5")


from nimrunbook.nim import download_profiles  # noqa: E402
from nimrunbook.sandbox.rclone import RcloneS3Sandbox, new_key  # noqa: E402
from nimrunbook.sandbox.s3 import BUCKETS, S3Sandbox, ensure_hosts_entries  # noqa: E402

VLLM = "4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728d"
L40S_BF16 = "ac5071bbd91efcc71dc486fcd5210779570868b3b8328b4abf7a408a58b5e57c"
VLLM_LORA = "f749ba07aade1d9e1c36ca1b4d0b67949122bd825e8aa6a52909115888a34b95"


@pytest.fixture(scope="session")
def downloaded_cache(docker, standin_image, tmp_path_factory):
    """A NIM cache filled by the stand-in's download-to-cache: vLLM, its LoRA variant and one L40S engine."""
    cache = tmp_path_factory.mktemp("nim-cache")
    download_profiles(
        docker,
        standin_image,
        [VLLM, L40S_BF16, VLLM_LORA],
        cache,
        ngc_api_key=FAKE_NGC_KEY,
        network_mode="none",
        environment={"NIM_STANDIN_WEIGHT_BYTES": "262144"},
        expected_bytes=10**7,  # the stand-in's weights are tiny; the estimate is for a real 1B model
    )
    return cache


@pytest.fixture(scope="session")
def standin_manifest(docker, standin_image):
    from nimrunbook.nim import read_manifest

    return read_manifest(docker, standin_image)[0]


# The tests' buckets: the sandbox's names (each has an /etc/hosts line) but the demo's and the benchmarks'.
TEST_BUCKETS = tuple(name for name in BUCKETS if not name.startswith(("nim-demo", "nim-bench")))


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto behind nginx TLS (test CA, SAN *.s3.example.test), with IAM checked: users admin and reader."""
    assert ensure_hosts_entries() or os.environ.get("CI") is None, "cannot add the sandbox names to /etc/hosts"
    sandbox = S3Sandbox(root=tmp_path_factory.mktemp("s3")).start()
    for bucket in TEST_BUCKETS:
        sandbox.create_bucket(bucket)
    sandbox.create_user("admin", ["s3:*"])
    sandbox.create_user("ecr-admin", ["ecr:*"])
    sandbox.create_user("iam-admin", ["iam:*"])  # changes other users' policies mid-test (tests/test_smoke.py)
    # moto names the HeadBucket permission s3:HeadBucket (AWS folds it into s3:ListBucket).
    sandbox.create_user("reader", ["s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation", "s3:HeadBucket"])
    sandbox.enforce_auth()
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session")
def rclone_s3(tmp_path_factory):
    """rclone serve s3 over a folder, with its own TLS (same test CA shape, SAN *.s3.example.test).

    The same buckets and user names as ``s3``, but rclone has no per-key policies: ``reader`` may write too
    (``enforces_policies`` is False), and user metadata lives in the server's memory.
    """
    assert ensure_hosts_entries() or os.environ.get("CI") is None, "cannot add the sandbox names to /etc/hosts"
    sandbox = RcloneS3Sandbox(root=tmp_path_factory.mktemp("rclone-s3"))
    for user in ("admin", "ecr-admin", "reader"):
        sandbox.credentials[user] = new_key()  # before start: adding a key later restarts the server
    sandbox.start()
    for bucket in TEST_BUCKETS:
        sandbox.create_bucket(bucket)
    yield sandbox
    sandbox.stop()


@pytest.fixture(scope="session", params=["moto", "rclone"])
def any_s3(request):
    """Each S3 server of the sandbox in turn, for tests of what every S3 server must do alike.

    Tests of a read-only key need ``sandbox.enforces_policies`` (moto only).
    """
    return request.getfixturevalue("s3" if request.param == "moto" else "rclone_s3")


def needs_policies(sandbox) -> None:
    """Skip on an S3 server that cannot hold a key to read-only (rclone serve s3): the test proves a refusal."""
    if not sandbox.enforces_policies:
        pytest.skip(f"{type(sandbox).__name__} has no per-key policies: a read-only key is tested on moto with IAM")


def empty_bucket(sandbox, bucket: str) -> None:
    """``bucket`` with no objects and no unfinished multipart uploads, for a test that counts what it stores (the
    servers live for the whole session and tests share the sandbox's bucket names)."""
    from nimrunbook.store import make_client

    client = make_client(s3_settings(sandbox, bucket))
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for o in page.get("Contents", [])
    ]
    for key in keys:
        client.delete_object(Bucket=bucket, Key=key)
    try:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    except client.exceptions.NoSuchUpload:  # rclone's answer when there is none
        uploads = []
    for upload in uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def s3_settings(sandbox: S3Sandbox, bucket: str = "nim-profiles", user: str = "admin", **overrides):
    from nimrunbook.store import S3Settings

    key_id, secret = sandbox.credentials[user]
    options = {"endpoint_url": sandbox.endpoint_url, "ca_bundle": str(sandbox.certs.ca_bundle), **overrides}
    return S3Settings(bucket, access_key_id=key_id, secret_access_key=secret, **options)


from nimrunbook.sandbox.tls import Certificates  # noqa: E402


@pytest.fixture(scope="session")
def certs(tmp_path_factory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="session")
def internal_registry(tmp_path_factory, certs):
    """The air gap's internal registry: TLS with the test CA."""
    cert, key = certs.issue("registry", "127.0.0.1", "localhost")
    registry = LocalRegistry(root=tmp_path_factory.mktemp("internal-registry"), cert_file=cert, key_file=key).start()
    yield registry
    registry.stop()


@pytest.fixture(scope="session")
def ngc_images(docker, standin_image, standin_image_next, ngc_registry, ngc_image) -> list[str]:
    """Two NIM versions in the nvcr.io stand-in, as a run that mirrors the guide's allowlist would."""
    second = pushed(docker, standin_image_next, f"{ngc_registry.host}/nim/meta/llama-3.2-1b-instruct:1.8.6")
    return [ngc_image, second]


# -- the smoke test's bucket: profiles published as step 04 does, for the NIM (stand-in) to read -----------

SMOKE_BUCKET = "nim-smoke"


@pytest.fixture(scope="session")
def smoke_published(any_s3, standin_manifest, downloaded_cache, tmp_path_factory):
    """vLLM and one L40S engine profile processed (nim-objects.json) and published to nim-smoke by the admin,
    on each S3 server of the sandbox in turn (``any_s3``)."""
    from nimrunbook.standin.catalog import PROFILES_1_8_5
    from nimrunbook.store import plan_publish, process_to_directory, publish

    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16])
    directory = tmp_path_factory.mktemp("smoke-published")
    names = {p.id: p.name for p in PROFILES_1_8_5}
    image = "nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5"
    process_to_directory(plan, directory, image=image, profile_names=names)
    publish(plan.objects, s3_settings(any_s3, SMOKE_BUCKET), workers=4).raise_for_failures()
    return directory


def s3_admin_client(sandbox: S3Sandbox | RcloneS3Sandbox, service: str = "s3"):
    """boto3 for changing the sandbox behind the tests' back: objects (admin) or IAM policies (iam-admin, moto
    only: rclone has no policies)."""
    import boto3

    user = "iam-admin" if service == "iam" else "admin"
    key_id, secret = sandbox.credentials[user]
    if service == "iam":
        return boto3.client(
            "iam",
            endpoint_url=f"http://127.0.0.1:{sandbox.moto_port}",
            region_name=sandbox.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
    from nimrunbook.store import make_client

    return make_client(s3_settings(sandbox, SMOKE_BUCKET))


# Breakages of one published object in nim-smoke, each undone on the way out (tests/test_smoke.py, test_standin.py).


@contextlib.contextmanager
def _object_rewritten(sandbox, key: str, change: Callable[[bytes], bytes | None]) -> Iterator[None]:
    """The object ``key`` replaced by ``change(body)`` (deleted when it returns None), put back afterwards."""
    client = s3_admin_client(sandbox)
    body = client.get_object(Bucket=SMOKE_BUCKET, Key=key)["Body"].read()
    changed = change(body)
    if changed is None:
        client.delete_object(Bucket=SMOKE_BUCKET, Key=key)
    else:
        client.put_object(Bucket=SMOKE_BUCKET, Key=key, Body=changed)
    try:
        yield
    finally:
        client.put_object(Bucket=SMOKE_BUCKET, Key=key, Body=body)


def smoke_object_deleted(sandbox, key: str):
    return _object_rewritten(sandbox, key, lambda _body: None)


def smoke_object_one_byte_changed(sandbox, key: str):
    return _object_rewritten(sandbox, key, lambda body: body[:10] + bytes([body[10] ^ 1]) + body[11:])


@contextlib.contextmanager
def smoke_object_read_denied(sandbox: S3Sandbox, key: str) -> Iterator[None]:
    """The reader may not GetObject ``key`` (an IAM user policy: moto only, rclone has no per-key policies)."""
    iam = s3_admin_client(sandbox, "iam")
    statement = {"Effect": "Deny", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{SMOKE_BUCKET}/{key}"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [statement]})
    iam.put_user_policy(UserName="reader", PolicyName="smoke-deny", PolicyDocument=document)
    try:
        yield
    finally:
        iam.delete_user_policy(UserName="reader", PolicyName="smoke-deny")
