"""The stand-in NIM image: its S3 read path against the sandbox's real S3 servers (``any_s3``: moto behind nginx
TLS, rclone over TLS), its build.

The container runs on the host's network here (the smoke test's isolated network is tested in
tests/test_smoke.py), with the read-only user's key and no NGC key. A denied read needs moto's IAM (rclone has no
per-key policies).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import FAKE_NGC_KEY, L40S_BF16, SMOKE_BUCKET, VLLM, smoke_object_deleted, smoke_object_read_denied

from nimrunbook.hashing import sha256_file
from nimrunbook.standin import build
from nimrunbook.standin.catalog import PROFILES_1_8_5
from nimrunbook.store.process import load_processed

pytestmark = pytest.mark.docker


def _run(docker, image: str, command: list[str], environment: dict, cache: Path | None = None, ca=None):
    """(exit code, output) of a throwaway container on the host's network; the cache and CA mounted when given."""
    volumes = {str(cache): {"bind": "/opt/nim/.cache", "mode": "rw"}} if cache else {}
    if ca:
        volumes[str(ca)] = {"bind": "/etc/ca.pem", "mode": "ro"}
    container = docker.containers.create(image, command, environment=environment, volumes=volumes, network_mode="host")
    try:
        container.start()
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


def _reader_environment(s3, **overrides) -> dict:
    key_id, secret = s3.credentials["reader"]
    environment = {
        "NIM_REPOSITORY_OVERRIDE": f"s3://{SMOKE_BUCKET}/",
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3.endpoint_url,
        "AWS_CA_BUNDLE": "/etc/ca.pem",
    }
    return {**environment, **overrides}


@pytest.fixture
def cache(tmp_path) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir()
    directory.chmod(0o777)
    return directory


def _download(docker, image: str, s3, cache: Path, *ids: str, **environment) -> tuple[int, str]:
    """download-to-cache from the sandbox bucket with the read-only user's key and the sandbox CA mounted."""
    command = ["download-to-cache", "--profiles", *ids]
    return _run(docker, image, command, _reader_environment(s3, **environment), cache, s3.certs.ca_bundle)


def _cached(cache: Path) -> dict[str, Path]:
    """snapshot path -> blob, as NIM's hub cache links them."""
    hub = cache / "ngc" / "hub"
    return {str(p.relative_to(hub)): p.resolve() for p in hub.glob("*/snapshots/*/**/*") if p.is_symlink()}


def test_s3_read_path_fills_the_hub_cache_with_the_published_bytes(
    docker, standin_image, any_s3, smoke_published, cache
):
    code, output = _download(docker, standin_image, any_s3, cache, VLLM, L40S_BF16)
    assert code == 0, output
    assert "api.ngc.nvidia.com" not in output  # never the NGC path
    _, objects = load_processed(smoke_published)
    published = {o.uri: o.sha256 for o in objects}
    links = _cached(cache)
    wanted = {uri for p in PROFILES_1_8_5 if p.id in (VLLM, L40S_BF16) for _, uri in p.files()}
    assert len(links) == len(wanted)
    for uri in wanted:
        repo_tag, _, file = uri.removeprefix("ngc://").partition("?file=")
        repo, _, tag = repo_tag.partition(":")
        link = f"models--{repo.replace('/', '--')}/snapshots/{tag}/{file}"
        assert link in links, link
        blob = links[link]
        assert blob.parent.name == "blobs" and sha256_file(blob) == published[uri]
    # a second run finds everything in the cache and fetches nothing
    code, again = _download(docker, standin_image, any_s3, cache, VLLM)
    assert code == 0 and "found in cache" in again and "Downloaded filename" not in again, again


def test_s3_read_path_needs_no_ngc_key_and_ignores_one(docker, standin_image, any_s3, smoke_published, cache):
    code, output = _download(docker, standin_image, any_s3, cache, VLLM, NGC_API_KEY=FAKE_NGC_KEY)
    assert code == 0, output
    assert "nim_hub_s3" in output and "api.ngc.nvidia.com" not in output


ENGINE_CONFIG = next(
    uri for p in PROFILES_1_8_5 if p.id == L40S_BF16 for path, uri in p.files() if "engine/config" in path
)


@pytest.mark.parametrize(
    ("any_s3", "breakage", "words"),
    [
        ("moto", smoke_object_deleted, "NoSuchKey"),
        ("rclone", smoke_object_deleted, "NoSuchKey"),
        ("moto", smoke_object_read_denied, "AccessDenied"),  # moto's IAM: rclone has no per-key policies
    ],
    ids=["missing-moto", "missing-rclone", "denied-moto"],
    indirect=["any_s3"],
)
def test_a_missing_or_denied_object_fails_naming_the_file(
    docker, standin_image, any_s3, smoke_published, cache, breakage, words
):
    key = quote(ENGINE_CONFIG.removeprefix("ngc://"), safe="")
    with breakage(any_s3, key):
        code, output = _download(docker, standin_image, any_s3, cache, L40S_BF16)
    assert code != 0
    failure = [line for line in output.splitlines() if "ERROR" in line]
    assert len(failure) == 1 and words in failure[0] and key in failure[0] and ENGINE_CONFIG in failure[0], output


def test_an_untrusted_certificate_fails_as_tls(docker, standin_image, any_s3, smoke_published, cache):
    code, output = _download(docker, standin_image, any_s3, cache, VLLM, AWS_CA_BUNDLE="")  # the image's CAs only
    assert code != 0 and "TLS" in output and "x509" in output


def test_an_unsupported_override_is_refused(docker, standin_image, cache):
    code, output = _run(
        docker,
        standin_image,
        ["download-to-cache", "--profiles", VLLM],
        {"NIM_REPOSITORY_OVERRIDE": "jfrog://artifactory/nim"},
        cache,
    )
    assert code == 1 and "Unsupported repository override" in output


def test_object_keys_are_percent_encoded_like_python(docker, standin_image):
    uris = [uri for p in PROFILES_1_8_5 for _, uri in p.files()] + ["ngc://o/t/m:v1.0+x~y?file=dir/a b(ü).json"]
    script = ". /usr/local/bin/nim-standin-common; " + "; ".join(f"object_key '{u}'" for u in uris)
    code, output = _run(docker, standin_image, ["sh", "-c", script], {})
    assert code == 0
    assert output.splitlines() == [quote(u.removeprefix("ngc://"), safe="") for u in uris]


def test_build_is_content_addressed_and_rclone_static(docker, standin_image):
    image = docker.images.get(standin_image)
    digest = image.labels[build.CONTEXT_LABEL]
    assert len(digest) == 64
    assert build.build_standin_image(docker, "1.8.5", pinned=True) == standin_image
    assert standin_image.endswith(f":1.8.5-{digest[:12]}")
    assert docker.images.get(standin_image).id == image.id  # not built again
    assert build.is_static_elf(build.find_rclone())
    assert not build.is_static_elf(Path("/usr/bin/python3").resolve())  # dynamically linked: has an interpreter


def test_an_image_built_from_the_standin_never_takes_its_tags(docker, standin_image):
    """A derived image inherits the context label; build_standin_image must still find the stand-in itself."""
    import io

    original = docker.images.get(standin_image).id
    derived, _ = docker.images.build(
        fileobj=io.BytesIO(f"FROM {standin_image}\nENV NIM_STANDIN_SECONDS_PER_FILE=1\n".encode()),
        tag="nimrunbook/standin-derived:test",
        rm=True,
    )
    try:
        assert derived.labels[build.CONTEXT_LABEL] == docker.images.get(standin_image).labels[build.CONTEXT_LABEL]
        assert build.build_standin_image(docker, "1.8.5", pinned=True) == standin_image
        assert docker.images.get(standin_image).id == original
        assert docker.images.get(standin_image.rsplit("-", 1)[0]).id == original  # repository:1.8.5 too
    finally:
        docker.images.remove("nimrunbook/standin-derived:test", force=True)
