"""nimrunbook.nim against the real Docker engine, the stand-in NIM image and a real registry."""

import logging
import os
import subprocess
import threading
import time
import uuid

import pytest
from conftest import FAKE_NGC_KEY
from socket_proxy import UnixSocketProxy

from nimrunbook.containers import TOOL_LABEL
from nimrunbook.engine import docker_client
from nimrunbook.errors import (
    CacheNotWritableError,
    ContainerFailedError,
    DiskSpaceError,
    DockerError,
    ImageNotFoundError,
    RegistryAuthError,
    UnknownProfileError,
)
from nimrunbook.nim import cache_usage, download_profiles, list_profiles, prepare_cache_dir, pull_image, read_manifest
from nimrunbook.progress import LogReporter
from nimrunbook.sandbox.registry import LocalRegistry
from nimrunbook.standin import catalog

L40S_BF16 = "ac5071bbd91efcc71dc486fcd5210779570868b3b8328b4abf7a408a58b5e57c"
VLLM = "4f904d571fe60ff24695b5ee2aa42da58cb460787a968f1e8a09f5a7e862728d"
VLLM_LORA = "f749ba07aade1d9e1c36ca1b4d0b67949122bd825e8aa6a52909115888a34b95"
SMALL = {"NIM_STANDIN_WEIGHT_BYTES": "65536"}


def test_pull_from_a_registry_then_no_second_pull(docker, ngc_image, caplog):
    docker.images.remove(ngc_image)
    with caplog.at_level(logging.INFO):
        image_id = pull_image(docker, ngc_image, progress=LogReporter())
        assert pull_image(docker, ngc_image) == image_id
    assert "already present; not pulling" in caplog.text


def test_a_refreshing_pull_asks_the_registry_even_when_the_engine_has_the_image(docker, ngc_image, standin_image):
    absent = ngc_image.rsplit(":", 1)[0] + ":0.0.0-only-in-the-engine"
    docker.images.get(standin_image).tag(absent)  # the engine has it; the registry does not
    try:
        assert pull_image(docker, absent) == docker.images.get(standin_image).id
        with pytest.raises(ImageNotFoundError, match="not found"):
            pull_image(docker, absent, refresh=True)
    finally:
        docker.images.remove(absent)
    assert pull_image(docker, ngc_image, refresh=True) == docker.images.get(ngc_image).id


def test_pull_unknown_tag_and_unreachable_registry(docker, ngc_registry):
    with pytest.raises(ImageNotFoundError, match="not found"):
        pull_image(docker, f"{ngc_registry.host}/nim/meta/no-such-model:9.9")
    closed = LocalRegistry.temporary()  # never started: nothing listens on its port
    with pytest.raises(DockerError, match="cannot be reached"):
        pull_image(docker, f"{closed.host}/nim/meta/llama-3.2-1b-instruct:1.8.5")


def test_pull_refused_credentials(docker, standin_image, tmp_path):
    registry = LocalRegistry(root=tmp_path / "locked", username="engineer", password="right-password").start()
    try:
        with pytest.raises(RegistryAuthError) as info:
            pull_image(docker, f"{registry.host}/nim/meta/llama-3.2-1b-instruct:1.8.5")
        assert "docker login" in str(info.value)
    finally:
        registry.stop()


@pytest.mark.parametrize("listing_format", ["sectioned", "bare"])
def test_list_profiles_in_both_formats(docker, standin_image, listing_format):
    before = {c.id for c in docker.containers.list(all=True)}
    frame, raw = list_profiles(docker, standin_image, environment={"NIM_STANDIN_LISTING_FORMAT": listing_format})
    assert list(frame["id"]) == [p.id for p in catalog.PROFILES_1_8_5]
    assert list(frame["name"]) == [p.name for p in catalog.PROFILES_1_8_5]
    assert set(frame["section"]) == ({"incompatible"} if listing_format == "sectioned" else {"all"})
    assert "INFO" in raw
    assert {c.id for c in docker.containers.list(all=True)} <= before  # the throwaway container is gone


def test_read_manifest_without_starting_the_model(docker, standin_image):
    manifest, text = read_manifest(docker, standin_image)
    assert manifest.schema == "v2.0.0"
    assert text.startswith("schema_version")
    profile = manifest.profile(L40S_BF16)
    assert profile.gpu == "l40s" and profile.gpu_device == "26b9"
    assert (
        "trtllm_engine/rank0.engine",
        f"ngc://nim/meta/llama-3.2-1b-instruct:{catalog.PROFILES_1_8_5[2].engine_tag}?file=rank0.engine",
    ) in [(f.path, f.uri) for f in profile.files]


def test_read_manifest_of_an_image_that_is_not_nim(docker, standin_image):
    with pytest.raises(ImageNotFoundError):
        read_manifest(docker, "nimrunbook/no-such-image:0")


def _download(docker, image, ids, cache, **kwargs):
    return download_profiles(
        docker,
        image,
        ids,
        cache,
        ngc_api_key=FAKE_NGC_KEY,
        network_mode="none",
        environment={**SMALL, **kwargs.pop("environment", {})},
        progress=LogReporter(),
        **{"expected_bytes": 10**7, **kwargs},  # tiny stand-in weights, not a real 1B model's estimate
    )


def test_download_two_profiles_builds_the_hub_cache(docker, standin_image, tmp_path, caplog):
    cache = tmp_path / "cache"
    with caplog.at_level(logging.INFO):
        summary = _download(docker, standin_image, [VLLM, L40S_BF16], cache)
    model = cache / "ngc/hub/models--nim--meta--llama-3.2-1b-instruct"
    hf = model / "snapshots" / catalog.HF_TAG
    engine = model / "snapshots" / catalog.PROFILES_1_8_5[2].engine_tag
    assert sorted(p.name for p in hf.iterdir()) == sorted(catalog.HF_FILES)
    assert sorted(p.name for p in engine.iterdir()) == sorted(catalog.ENGINE_FILES)
    for link in [*hf.iterdir(), *engine.iterdir()]:
        assert link.is_symlink() and os.readlink(link).startswith("../../blobs/")
        assert link.resolve().is_file()
    assert (hf / "model.safetensors").stat().st_size == 65536
    # the tokenizer files both profiles need are stored once
    assert summary.files == len(catalog.HF_FILES) + len(catalog.ENGINE_FILES)
    assert (summary.files, summary.bytes) == cache_usage(cache)
    assert (model / "refs" / catalog.HF_TAG).read_text() == catalog.HF_TAG
    assert "Downloaded filename" in caplog.text
    assert "download 2 profiles" in caplog.text  # progress lines under papermill/terminal
    assert FAKE_NGC_KEY not in caplog.text and FAKE_NGC_KEY not in repr(summary.as_dict())


def _own_containers(docker, image: str, token: str) -> list:
    """This test's own tool containers (found by a token in their environment): the engine is shared, so
    never touch a container another test or engineer started."""
    return [
        container
        for container in docker.containers.list(all=True, filters={"ancestor": image, "label": TOOL_LABEL})
        if f"NIMRUNBOOK_TEST_RUN={token}" in (container.attrs["Config"]["Env"] or [])
    ]


def _slow_download_in_background(client, image, cache, token: str, seconds_per_file: str, files: int):
    """Start a download in a thread (a daemon: a hang must not hang the suite); return once it has written
    ``files`` files. Returns the thread and the list its exception lands in."""
    failure: list[BaseException] = []

    def download():
        try:
            environment = {"NIM_STANDIN_SECONDS_PER_FILE": seconds_per_file, "NIMRUNBOOK_TEST_RUN": token}
            _download(client, image, [VLLM, L40S_BF16], cache, environment=environment)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=download, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while cache_usage(cache)[0] < files and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cache_usage(cache)[0] >= files, failure  # the tool is running in its container
    return worker, failure


def test_interrupted_download_resumes_and_keeps_what_was_complete(docker, standin_image, tmp_path):
    cache, token = tmp_path / "cache", uuid.uuid4().hex
    worker, failure = _slow_download_in_background(docker, standin_image, cache, token, "0.4", files=3)
    for container in _own_containers(docker, standin_image, token):
        container.kill()
    worker.join(timeout=60)
    assert failure and isinstance(failure[0], ContainerFailedError)
    files_before, _ = cache_usage(cache)
    assert 3 <= files_before < len(catalog.HF_FILES) + len(catalog.ENGINE_FILES)
    blobs = cache / "ngc/hub/models--nim--meta--llama-3.2-1b-instruct/blobs"
    kept = {p.name: p.stat().st_ino for p in blobs.iterdir()}
    summary = _download(docker, standin_image, [VLLM, L40S_BF16], cache)
    assert summary.files == len(catalog.HF_FILES) + len(catalog.ENGINE_FILES)
    assert all(blobs.joinpath(name).stat().st_ino == inode for name, inode in kept.items())


def test_a_dying_engine_ends_the_download_with_an_error_not_a_hang(docker, standin_image, tmp_path):
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip(f"the engine at {host} is not on a unix socket")
    cache, token = tmp_path / "cache", uuid.uuid4().hex
    with UnixSocketProxy(host.removeprefix("unix://")) as proxy:
        through_proxy = docker_client(proxy.url)
        worker, failure = _slow_download_in_background(through_proxy, standin_image, cache, token, "1", files=1)
        proxy.cut()  # the engine "dies" mid-run
        worker.join(timeout=60)
    left_behind = _own_containers(docker, standin_image, token)
    for container in left_behind:
        container.remove(force=True)
    assert not worker.is_alive(), "the download kept waiting for an engine that is gone"
    assert failure and isinstance(failure[0], DockerError), failure
    assert "stopped answering" in str(failure[0]) and f"docker rm -f {left_behind[0].id[:12]}" in str(failure[0])
    assert failure[0].__cause__ is not None  # the cause is kept, for the details line


def test_free_space_is_checked_without_being_told_the_size(docker, standin_image, tmp_path):
    small = tmp_path / "small-disk"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        with pytest.raises(DiskSpaceError) as info:
            _download(docker, standin_image, [VLLM], small / "cache", expected_bytes=None)  # estimated
        assert "estimate of 2.0 GB" in str(info.value) and "1B parameters x 2 bytes" in str(info.value)
        assert cache_usage(small / "cache") == (0, 0)  # refused before the container started
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_unknown_profile_id(docker, standin_image, tmp_path):
    with pytest.raises(UnknownProfileError, match="deadbeef"):
        _download(docker, standin_image, ["deadbeef" * 8], tmp_path / "cache")
    manifest, _ = read_manifest(docker, standin_image)
    with pytest.raises(UnknownProfileError, match="does not offer"):
        _download(docker, standin_image, [VLLM, "feedface" * 8], tmp_path / "cache", manifest=manifest)


def test_missing_key_is_refused_before_starting(docker, standin_image, tmp_path, monkeypatch):
    monkeypatch.delenv("NGC_API_KEY", raising=False)
    monkeypatch.delenv("NGC_CLI_API_KEY", raising=False)
    with pytest.raises(RegistryAuthError, match="NGC_API_KEY is not set"):
        download_profiles(docker, standin_image, [VLLM], tmp_path / "cache", network_mode="none")


def test_container_failure_names_its_last_lines_without_the_key(docker, standin_image, tmp_path):
    with pytest.raises(ContainerFailedError) as info:
        _download(
            docker, standin_image, [VLLM], tmp_path / "cache", environment={"NIM_STANDIN_WEIGHT_BYTES": "not-a-number"}
        )
    assert "exited with code" in str(info.value)
    assert FAKE_NGC_KEY not in str(info.value)


def test_cache_permissions_fixed_when_ours_else_explained(tmp_path, monkeypatch):
    ours = tmp_path / "ours"
    ours.mkdir(mode=0o755)
    prepare_cache_dir(ours)  # we are root here: the directory is given to UID 1000
    assert ours.stat().st_uid == 1000
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # act as an unprivileged user who does not own it
    with pytest.raises(CacheNotWritableError) as info:
        prepare_cache_dir(theirs)
    assert f"chown -R 1000:1000 {theirs}" in str(info.value)


def test_disk_space_is_checked_against_the_expected_size(docker, standin_image, tmp_path):
    with pytest.raises(DiskSpaceError, match="needs"):
        _download(docker, standin_image, [VLLM], tmp_path / "cache", expected_bytes=10**18)


def test_unreachable_engine_says_how_to_start_one():
    with pytest.raises(DockerError) as info:
        docker_client("unix:///tmp/nimrunbook-no-engine-here.sock")
    assert "DOCKER_HOST" in str(info.value) and "dockerd" in str(info.value)


def test_gpus_are_requested_only_when_asked(docker, standin_image):
    # No GPU here: asking for one must fail clearly, not silently run without it, and leave nothing behind.
    before = {c.id for c in docker.containers.list(all=True)}
    with pytest.raises(DockerError):
        list_profiles(docker, standin_image, gpus=True)
    assert {c.id for c in docker.containers.list(all=True)} <= before


def test_nvcr_login_uses_oauthtoken_and_the_key_other_registries_the_docker_config(monkeypatch):
    from nimrunbook.images import RegistryAccess, ngc_api_key
    from nimrunbook.images.failures import registry_of

    monkeypatch.delenv("NGC_API_KEY", raising=False)
    monkeypatch.setenv("NGC_CLI_API_KEY", FAKE_NGC_KEY)  # the one lookup reads both names
    assert ngc_api_key() == FAKE_NGC_KEY and ngc_api_key("nvapi-explicit-0123456789") == "nvapi-explicit-0123456789"
    access = RegistryAccess.from_environment()
    assert access.docker_auth("nvcr.io") == {"username": "$oauthtoken", "password": FAKE_NGC_KEY}
    assert access.docker_auth("registry.example.com") is None  # the Docker config's credentials
    assert registry_of("ubuntu:22.04") == "docker.io" and registry_of("127.0.0.1:5000/a/b:1") == "127.0.0.1:5000"


def test_cli_nim_commands(docker, standin_image, tmp_path, monkeypatch):
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "nimrunbook.cli", "nim", *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "NGC_API_KEY": FAKE_NGC_KEY, "NIM_STANDIN_WEIGHT_BYTES": "1024"},
        )

    listing = run("list-profiles", standin_image)
    assert listing.returncode == 0 and "tensorrt_llm-l40s-bf16-tp1-pp1-throughput" in listing.stdout
    manifest = run("manifest", standin_image)
    assert manifest.returncode == 0 and manifest.stdout.startswith("schema_version")
    downloaded = run(
        "download",
        standin_image,
        "--profiles",
        VLLM,
        "--cache",
        str(tmp_path / "cache"),
        "--network",
        "none",
        "--size-gb",
        "0.001",  # the stand-in's weights are tiny; the estimate is for a real 1B model
    )
    assert downloaded.returncode == 0, downloaded.stderr
    assert FAKE_NGC_KEY not in downloaded.stdout + downloaded.stderr
    unknown = run(
        "download", standin_image, "--profiles", "0" * 64, "--cache", str(tmp_path / "cache"), "--network", "none"
    )
    assert unknown.returncode == 2 and "does not offer" in unknown.stderr and "Traceback" not in unknown.stderr


def test_cli_full_disk_is_a_message_not_a_traceback(tmp_path, monkeypatch, capsys):
    import errno

    from nimrunbook import cli
    from nimrunbook.cli import runs

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "objects/x"))

    monkeypatch.setattr(runs, "rebuild_reports", full)  # fault injection: the disk fills up mid-command
    assert cli.main(["report", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "No space left on device" in message and "run the same command again" in message


def test_download_failures_are_read_from_nim_error_lines_not_from_any_digits(tmp_path):
    from nimrunbook.nim import _classify_failure

    profile = "4011" + "0" * 60  # an id (or a hash, a size) holding "401" says nothing about authentication
    info = f"2025-06-01T10:00:00.000000Z  INFO nim_hub_ngc::api::tokio: Downloading profile {profile}"
    broken = "ERROR 2025-06-01 10:00:01.00 download.py:88] Failed to create the workspace"
    failure = _classify_failure(1, f"{info}\n{broken}", "img", [profile], tmp_path)
    assert type(failure) is ContainerFailedError
    refused = (  # reqwest's wording of an HTTP 401, in NIM's Rust log line shape
        "2025-06-01T10:00:01.000000Z  ERROR nim_hub_ngc::api::tokio: HTTP status client error (401 Unauthorized) "
        "for url (https://api.ngc.nvidia.com/v2/org/nim/team/meta/models/llama-3.2-1b-instruct/hf/files)"
    )
    assert isinstance(_classify_failure(1, f"{info}\n{refused}", "img", [profile], tmp_path), RegistryAuthError)
