"""The smoke test against real parts: the Docker engine, the internal registry over TLS, the sandbox's S3 servers
(moto behind nginx TLS with IAM enforced, and rclone's over TLS), and the stand-in NIM's own download-to-cache
reading the bucket on an isolated network.

What reads the bucket runs against both S3 servers (``any_s3``); a read permission removed needs moto's IAM
(rclone has no per-key policies), and what stops before the NIM reads the bucket runs against moto alone.
Each breakage (object deleted, one byte changed, read permission removed) is undone after its test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import (
    FAKE_NGC_KEY,
    L40S_BF16,
    SMOKE_BUCKET,
    VLLM,
    pushed,
    s3_settings,
    smoke_object_deleted,
    smoke_object_one_byte_changed,
    smoke_object_read_denied,
)

from nimrunbook.progress import LogReporter
from nimrunbook.smoke import Cause, load_published, smoke_test
from nimrunbook.smoke.network import LABEL
from nimrunbook.standin.catalog import PROFILES_1_8_5
from nimrunbook.store.keys import object_key

pytestmark = pytest.mark.docker

ENGINE_CONFIG = next(
    uri for p in PROFILES_1_8_5 if p.id == L40S_BF16 for path, uri in p.files() if "engine/config" in path
)
ENGINE_CONFIG_KEY = object_key(ENGINE_CONFIG)


@pytest.fixture(scope="module")
def mirrored(docker, standin_image, internal_registry) -> str:
    """The stand-in, pushed to the internal registry under a path of its own."""
    return pushed(docker, standin_image, f"{internal_registry.host}/smoke/nim/meta/llama-3.2-1b-instruct:1.8.5")


# For tests that stop before the NIM reads the bucket: one S3 server is enough.
MOTO_ONLY = pytest.mark.parametrize("any_s3", ["moto"], indirect=True)


@pytest.fixture
def reader(any_s3):
    return s3_settings(any_s3, SMOKE_BUCKET, user="reader")


def _leftovers(docker) -> tuple[list, list]:
    return docker.containers.list(all=True, filters={"label": LABEL}), docker.networks.list(filters={"label": LABEL})


def _secrets(sandbox) -> list[str]:
    return [FAKE_NGC_KEY, *sandbox.credentials["reader"], *sandbox.credentials["admin"]]


def test_published_profiles_are_read_by_the_nim_from_the_inside(
    docker, mirrored, any_s3, smoke_published, reader, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("NGC_API_KEY", FAKE_NGC_KEY)  # on this host, but never given to the NIM
    caplog.set_level("INFO")
    scratch = tmp_path / "scratch"
    result = smoke_test(
        docker,
        mirrored,
        [VLLM, L40S_BF16],
        load_published(smoke_published),
        reader,
        scratch_dir=scratch,
        progress=LogReporter(),
    )
    frame = result.frame()
    assert result.ok, frame.to_string()
    assert frame[["pulled", "fetched", "identical"]].all().all()
    assert set(frame["name"]) == {"vllm-bf16-tp1-pp1", "tensorrt_llm-l40s-bf16-tp1-pp1-throughput"}
    assert (frame["files"] > 0).all() and (frame["bytes"] > 0).all()
    assert result.digest and result.digest.startswith("sha256:")
    assert result.network.startswith("isolated") and len(result.runs) == 1
    # the container's environment, as Docker reported it: no NGC key, the read-only key by name only
    assert not {"NGC_API_KEY", "NGC_CLI_API_KEY"} & set(result.environment)
    assert {"NIM_REPOSITORY_OVERRIDE", "AWS_ACCESS_KEY_ID", "AWS_CA_BUNDLE", "AWS_ENDPOINT_URL"} <= set(
        result.environment
    )
    assert all(f.status == "identical" for f in result.files) and len(result.files) == 8 + 11
    # nothing left behind: scratch cache, container, network
    assert result.scratch_removed and list(scratch.iterdir()) == []
    assert _leftovers(docker) == ([], [])
    shown = json.dumps(result.as_dict()) + frame.to_string() + caplog.text + result.summary()
    for secret in _secrets(any_s3):
        assert secret not in shown


@pytest.mark.parametrize(
    ("any_s3", "breakage", "cause", "fetched"),
    [
        ("moto", smoke_object_deleted, Cause.OBJECT_MISSING, False),
        ("rclone", smoke_object_deleted, Cause.OBJECT_MISSING, False),
        ("moto", smoke_object_one_byte_changed, Cause.BYTES_DIFFER, True),
        ("rclone", smoke_object_one_byte_changed, Cause.BYTES_DIFFER, True),
        ("moto", smoke_object_read_denied, Cause.ACCESS_DENIED, False),  # moto's IAM: rclone has no per-key policies
    ],
    ids=["deleted-moto", "deleted-rclone", "one-byte-changed-moto", "one-byte-changed-rclone", "read-denied-moto"],
    indirect=["any_s3"],
)
def test_one_broken_object_names_exactly_its_profile_and_cause(
    docker, mirrored, any_s3, smoke_published, reader, tmp_path, breakage, cause, fetched
):
    published = load_published(smoke_published)
    with breakage(any_s3, ENGINE_CONFIG_KEY):
        # the engine profile first, so that the vLLM profile is only reached profile by profile
        result = smoke_test(docker, mirrored, [L40S_BF16, VLLM], published, reader, scratch_dir=tmp_path)
    by_id = {p.profile_id: p for p in result.profiles}
    assert by_id[VLLM].ok, result.frame().to_string()
    broken = by_id[L40S_BF16]
    assert not broken.ok and broken.pulled and broken.fetched is fetched and not broken.identical
    assert broken.cause == cause
    assert "trtllm_engine/config.json" in broken.detail and ENGINE_CONFIG_KEY in broken.detail
    assert broken.fix
    assert [c.path for c in result.files if c.status != "identical"] == ["trtllm_engine/config.json"] or not fetched
    with pytest.raises(Exception, match=str(cause)) as raised:
        result.raise_for_failure()
    assert "tensorrt_llm-l40s-bf16" in str(raised.value) and "vllm-bf16-tp1-pp1 " not in str(raised.value)
    assert list(tmp_path.iterdir()) == [] and _leftovers(docker) == ([], [])


@MOTO_ONLY
def test_an_image_missing_from_the_registry_is_named_even_when_the_engine_has_it(
    docker, mirrored, standin_image, any_s3, smoke_published, reader, tmp_path
):
    absent = mirrored.rsplit(":", 1)[0] + ":0.0.0-never-pushed"
    docker.images.get(standin_image).tag(absent)  # the engine has it; the registry does not
    try:
        result = smoke_test(docker, absent, [VLLM], load_published(smoke_published), reader, scratch_dir=tmp_path)
    finally:
        docker.images.remove(absent)
    (profile,) = result.profiles
    assert not result.ok and not profile.pulled and not profile.fetched
    assert profile.cause == Cause.IMAGE_NOT_IN_REGISTRY and "not found" in profile.detail.lower()
    assert result.runs == [] and list(tmp_path.iterdir()) == []


def test_an_untrusted_endpoint_certificate_stops_every_profile_once(
    docker, mirrored, any_s3, smoke_published, tmp_path
):
    settings = s3_settings(any_s3, SMOKE_BUCKET, user="reader", ca_bundle=str(any_s3.certs.other_ca_bundle))
    result = smoke_test(
        docker,
        mirrored,
        [VLLM, L40S_BF16],
        load_published(smoke_published),
        settings,
        scratch_dir=tmp_path,
    )
    assert [p.cause for p in result.profiles] == [Cause.TLS_NOT_TRUSTED] * 2
    assert len(result.runs) == 1  # a shared cause is not repeated profile by profile


@MOTO_ONLY
def test_the_isolated_network_reaches_nothing_but_the_object_store(docker, mirrored, ngc_registry, reader):
    """The green smoke test shows the bucket is reachable; here the stand-in for nvcr.io on this host is not."""
    from nimrunbook.smoke.network import isolated_network

    host, port = ngc_registry.host.split(":")
    probe = ["sh", "-c", f"printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port}"]

    def reaches(**network) -> bool:
        container = docker.containers.create(mirrored, probe, **network)
        try:
            container.start()
            return container.wait(timeout=30)["StatusCode"] == 0
        finally:
            container.remove(force=True)

    assert reaches(network_mode="host")  # this host's network reaches the NGC stand-in on loopback ...
    with isolated_network(docker, reader, "probe") as net:
        assert not reaches(network_mode=net.mode, extra_hosts=net.extra_hosts)  # ... the smoke test's does not
        hosts = docker.containers.run(
            mirrored, ["cat", "/etc/hosts"], network_mode=net.mode, extra_hosts=net.extra_hosts, remove=True
        ).decode()
    gateway = net.extra_hosts[f"{SMOKE_BUCKET}.s3.example.test"]
    assert f"{gateway}\t{SMOKE_BUCKET}.s3.example.test" in hosts  # the bucket's name leads to the relay
    assert _leftovers(docker) == ([], [])


SIGNAL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from nimrunbook.engine import docker_client
    from nimrunbook.smoke import load_published, smoke_test
    from nimrunbook.store import S3Settings
    args = json.loads(sys.argv[1])
    settings = S3Settings(args["bucket"], endpoint_url=args["endpoint"], ca_bundle=args["ca"],
                          access_key_id=args["key"][0], secret_access_key=args["key"][1])
    smoke_test(docker_client(), args["image"], args["ids"], load_published(args["published"]), settings,
               scratch_dir=args["scratch"], environment={"NIM_STANDIN_SECONDS_PER_FILE": "1"})
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_download_leaves_no_container_network_or_scratch(
    docker, mirrored, any_s3, smoke_published, tmp_path, signum
):
    scratch = tmp_path / "scratch"
    arguments = {
        "bucket": SMOKE_BUCKET,
        "endpoint": any_s3.endpoint_url,
        "ca": str(any_s3.certs.ca_bundle),
        "key": list(any_s3.credentials["reader"]),
        "image": mirrored,
        "ids": [VLLM],
        "published": str(smoke_published),
        "scratch": str(scratch),
    }
    process = subprocess.Popen([sys.executable, "-c", SIGNAL_SCRIPT, json.dumps(arguments)], env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not any(c.status == "running" for c in _leftovers(docker)[0]):
            assert process.poll() is None and time.monotonic() < deadline, "the smoke test's container never ran"
            time.sleep(0.2)
        time.sleep(1.5)  # a file or two into the scratch cache
        assert any(scratch.rglob("blobs/*"))
        process.send_signal(signum)
        assert process.wait(timeout=60) != 0
    finally:
        if process.poll() is None:
            process.kill()
    assert _leftovers(docker) == ([], [])
    assert list(scratch.iterdir()) == []


def test_cli_passes_then_names_the_missing_image(
    docker, mirrored, any_s3, smoke_published, tmp_path, monkeypatch, capsys
):
    from nimrunbook.cli import main

    key_id, secret = any_s3.credentials["reader"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("NGC_API_KEY", FAKE_NGC_KEY)
    common = [
        "--expected",
        str(smoke_published),
        "--bucket",
        SMOKE_BUCKET,
        "--endpoint-url",
        any_s3.endpoint_url,
        "--ca-bundle",
        str(any_s3.certs.ca_bundle),
        "--scratch-dir",
        str(tmp_path),
    ]
    assert main(["smoke-test", mirrored, *common, "--network", "host"]) == 0  # profiles from the record
    out = capsys.readouterr()
    assert "Smoke test PASSED: 2 of 2 profiles" in out.out and "vllm-bf16-tp1-pp1" in out.out
    registry = mirrored.split("/", 1)[0]
    missing = f"{registry}/smoke/nim/meta/llama-3.2-1b-instruct:0.0.1"
    assert main(["smoke-test", missing, *common, "--profiles", VLLM]) == 1
    out = capsys.readouterr()
    assert "image not in the registry" in out.out and "image not in the registry" in out.err
    for value in (key_id, secret, FAKE_NGC_KEY):
        assert value not in out.out + out.err
    assert main(["smoke-test", "nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5", *common]) == 2
    assert "internal registry" in capsys.readouterr().err
    assert list(Path(tmp_path).iterdir()) == []


def test_a_named_aws_profile_reaches_the_nim_as_a_credentials_file(
    docker, mirrored, any_s3, smoke_published, tmp_path, monkeypatch
):
    """The NIM Operator's way: AWS_PROFILE and a credentials file, no key in the container's environment."""
    from nimrunbook.store import S3Settings

    key_id, secret = any_s3.credentials["reader"]
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[smoke-reader]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    settings = S3Settings(
        SMOKE_BUCKET, endpoint_url=any_s3.endpoint_url, ca_bundle=str(any_s3.certs.ca_bundle), profile="smoke-reader"
    )
    scratch = tmp_path / "scratch"
    result = smoke_test(docker, mirrored, [VLLM], load_published(smoke_published), settings, scratch_dir=scratch)
    assert result.ok, result.frame().to_string()
    assert result.credentials.startswith("profile smoke-reader")
    assert {"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE"} <= set(result.environment)
    assert "AWS_ACCESS_KEY_ID" not in result.environment and "AWS_SECRET_ACCESS_KEY" not in result.environment
    assert list(scratch.iterdir()) == []


def test_a_download_that_does_not_finish_in_time_is_stopped_once(
    docker, mirrored, any_s3, smoke_published, reader, tmp_path
):
    result = smoke_test(
        docker,
        mirrored,
        [VLLM],
        load_published(smoke_published),
        reader,
        scratch_dir=tmp_path,
        environment={"NIM_STANDIN_SECONDS_PER_FILE": "5"},
        timeout=2,
    )
    (profile,) = result.profiles
    assert profile.cause == Cause.TIMED_OUT and "did not finish within 2 s" in profile.detail
    assert len(result.runs) == 1 and result.runs[0].timed_out
    assert list(tmp_path.iterdir()) == [] and _leftovers(docker) == ([], [])


@MOTO_ONLY
def test_an_ngc_key_is_never_passed_even_when_asked(docker, mirrored, any_s3, smoke_published, reader, tmp_path):
    from nimrunbook.errors import InputError

    with pytest.raises(InputError, match="without an NGC key"):
        smoke_test(
            docker,
            mirrored,
            [VLLM],
            load_published(smoke_published),
            reader,
            scratch_dir=tmp_path,
            environment={"NGC_API_KEY": FAKE_NGC_KEY},
        )
    assert list(tmp_path.iterdir()) == [] and _leftovers(docker) == ([], [])


@MOTO_ONLY
def test_an_image_that_carries_an_ngc_key_is_refused_without_showing_it(
    docker, mirrored, any_s3, smoke_published, reader, tmp_path
):
    from nimrunbook.errors import DockerError

    keyed = mirrored.rsplit(":", 1)[0] + ":1.8.5-keyed"
    container = docker.containers.create(mirrored, ["true"])
    try:
        container.commit(
            repository=keyed.rsplit(":", 1)[0], tag="1.8.5-keyed", changes=[f"ENV NGC_API_KEY={FAKE_NGC_KEY}"]
        )
    finally:
        container.remove(force=True)
    try:
        for event in docker.api.push(keyed, stream=True, decode=True):
            assert "error" not in event, event
        with pytest.raises(DockerError, match="sets NGC_API_KEY in its own environment") as raised:
            smoke_test(docker, keyed, [VLLM], load_published(smoke_published), reader, scratch_dir=tmp_path)
        assert FAKE_NGC_KEY not in str(raised.value)
    finally:
        docker.images.remove(keyed, force=True)
    assert list(tmp_path.iterdir()) == [] and _leftovers(docker) == ([], [])


def test_a_scratch_cache_we_may_not_remove_is_removed_by_a_container(docker, mirrored, tmp_path, monkeypatch):
    """As a non-root user, what the container's UID 1000 wrote cannot be removed by us; the image's rm can."""
    from nimrunbook.smoke import run

    scratch = tmp_path / "scratch"
    (scratch / "ngc" / "hub" / "blobs").mkdir(parents=True)
    (scratch / "ngc" / "hub" / "blobs" / "abc").write_bytes(b"x" * 10)
    (scratch / ".hidden").write_text("x")
    real_rmtree, calls = run.shutil.rmtree, []

    def refuse_first(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 1:
            raise PermissionError(13, "Permission denied", str(path))
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(run.shutil, "rmtree", refuse_first)
    assert run._remove_scratch(docker, mirrored, scratch) is True
    assert not scratch.exists() and len(calls) == 2
