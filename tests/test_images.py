"""Mirroring images between two real registries (Debian's docker-registry), one of them over TLS,
with skopeo and with the real Docker engine."""

import json
import shutil

import pytest

from nimrunbook.errors import DockerError, ImageNotFoundError, InputError, RegistryAuthError, VerificationError
from nimrunbook.images import ImageRef, RegistryAccess, export, import_, mirror
from nimrunbook.images.ecr import prepare_ecr
from nimrunbook.images.skopeo import SkopeoBackend
from nimrunbook.sandbox.registry import LocalRegistry


def _access(ngc_registry, internal_registry, certs, **extra) -> RegistryAccess:
    return RegistryAccess(
        ca_bundles={internal_registry.host: str(certs.ca_bundle)}, insecure={ngc_registry.host}, **extra
    )


def _digest(access, ref: str) -> str | None:
    return SkopeoBackend(access).digest(ImageRef.parse(ref))


def test_destination_keeps_the_repository_path_and_tag():
    ref = ImageRef.parse("nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5")
    assert (
        str(ref.moved_to("registry.example.com:5000"))
        == "registry.example.com:5000/nim/meta/llama-3.2-1b-instruct:1.8.5"
    )
    assert (
        str(ref.moved_to("harbor.example.com/mirror"))
        == "harbor.example.com/mirror/nim/meta/llama-3.2-1b-instruct:1.8.5"
    )
    for bad in ("llama:1.0", "nvcr.io/nim/meta/llama", "not a ref"):
        with pytest.raises(InputError):
            ImageRef.parse(bad)


def test_mirror_with_skopeo_keeps_digests_and_a_rerun_skips(ngc_registry, internal_registry, certs, ngc_images):
    access = _access(ngc_registry, internal_registry, certs)
    first = mirror(ngc_images, internal_registry.host, access=access, backend="skopeo")
    assert [c.status for c in first] == ["copied", "copied"]
    for copy, source in zip(first, ngc_images, strict=True):
        assert copy.destination == source.replace(ngc_registry.host, internal_registry.host)
        assert copy.digest == _digest(access, source) == _digest(access, copy.destination)
    again = mirror(ngc_images, internal_registry.host, access=access, backend="skopeo")
    assert [c.status for c in again] == ["skipped", "skipped"]


def test_export_import_round_trip_with_identical_digests(ngc_registry, internal_registry, certs, ngc_images, tmp_path):
    access = _access(ngc_registry, internal_registry, certs)
    exported = export(ngc_images, tmp_path / "media", access=access, backend="skopeo")
    index = json.loads((tmp_path / "media/oci/index.json").read_text())
    assert sorted(m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]) == sorted(
        ngc_images
    )
    assert [e.status for e in export(ngc_images, tmp_path / "media", access=access, backend="skopeo")] == [
        "skipped"
    ] * 2
    inside = f"127.0.0.1:{internal_registry.port}/inside"  # a path prefix, as a Harbor project would be
    imported = import_(tmp_path / "media", inside, access=access)
    assert [i.digest for i in imported] == [e.digest for e in exported]
    assert [i.destination for i in imported] == [s.replace(ngc_registry.host, inside) for s in ngc_images]
    assert all(i.status == "skipped" for i in import_(tmp_path / "media", inside, access=access))


def _tree(folder):
    return {
        str(p.relative_to(folder)): (p.lstat().st_mtime_ns, p.lstat().st_size) for p in [folder, *folder.rglob("*")]
    }


def test_import_reads_the_export_as_media(ngc_registry, internal_registry, certs, ngc_images, tmp_path):
    """The export is never written (it may be a read-only mount): skopeo's views go to the staging folder, and
    a name in the export that leads out of it is refused before anything is pushed."""
    access = _access(ngc_registry, internal_registry, certs)
    media, staging = tmp_path / "media", tmp_path / "staging"
    export(ngc_images[:1], media, access=access, backend="skopeo")
    before = _tree(media)
    (copied,) = import_(media, f"{internal_registry.host}/from-media", access=access, staging_dir=staging)
    assert copied.status == "copied" and _tree(media) == before and not list(staging.iterdir())
    with pytest.raises(InputError, match="lies inside the export"):
        import_(media, f"{internal_registry.host}/from-media", access=access, staging_dir=media / "staging")
    index = json.loads((media / "oci/index.json").read_text())
    manifest = json.loads((media / "oci/blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    layer = media / "oci/blobs/sha256" / manifest["layers"][0]["digest"][7:]
    shutil.copy(layer, tmp_path / "outside")
    layer.unlink()
    layer.symlink_to(tmp_path / "outside")
    hostile = f"{internal_registry.host}/hostile-export"
    with pytest.raises(VerificationError, match="symbolic link: refused"):
        import_(media, hostile, access=access, staging_dir=staging)
    assert _digest(access, str(ImageRef.parse(ngc_images[0]).moved_to(hostile))) is None
    (media / "images.json").write_text('{"backend": "skopeo", "images": [{"digest": "sha256:00"}]}')
    with pytest.raises(InputError, match="not an index written by"):
        import_(media, hostile, access=access, staging_dir=staging)


def test_docker_backend_mirror_and_archive_round_trip(
    docker, ngc_registry, internal_registry, certs, ngc_image, tmp_path
):
    access = _access(ngc_registry, internal_registry, certs)
    target = f"{internal_registry.host}/docker-backend"
    (copied,) = mirror([ngc_image], target, access=access, backend="docker", docker_client=docker)
    assert copied.backend == "docker" and copied.digest == _digest(access, ngc_image)
    (saved,) = export([ngc_image], tmp_path / "media", access=access, backend="docker", docker_client=docker)
    assert (tmp_path / "media/images.docker.tar").stat().st_size > 0 and saved.image_id.startswith("sha256:")
    docker.images.remove(ngc_image, force=True)
    (loaded,) = import_(
        tmp_path / "media",
        f"{internal_registry.host}/from-archive",
        access=access,
        docker_client=docker,
    )
    assert loaded.image_id == saved.image_id  # save/load keeps the image id; the manifest digest is re-made


def test_unauthorised_then_authorised(docker, standin_image, tmp_path, ngc_registry, internal_registry, certs):
    locked = LocalRegistry(root=tmp_path / "locked", username="mirror", password="s3cret-registry-pw").start()
    try:
        ref = f"{locked.host}/nim/meta/llama-3.2-1b-instruct:1.8.5"
        docker.api.login("mirror", "s3cret-registry-pw", registry=locked.host)
        docker.images.get(standin_image).tag(ref)
        for event in docker.api.push(
            ref, stream=True, decode=True, auth_config={"username": "mirror", "password": "s3cret-registry-pw"}
        ):
            assert "error" not in event
        access = RegistryAccess(
            insecure={locked.host},
            ca_bundles={internal_registry.host: str(certs.ca_bundle)},
            docker_config=str(tmp_path / "no-docker-config"),
        )
        with pytest.raises(RegistryAuthError) as info:
            mirror([ref], internal_registry.host + "/auth", access=access, backend="skopeo")
        assert "s3cret-registry-pw" not in str(info.value)
        access.login(locked.host, "mirror", "s3cret-registry-pw")
        (copied,) = mirror([ref], internal_registry.host + "/auth", access=access, backend="skopeo")
        assert copied.status == "copied"
    finally:
        locked.stop()


def test_unknown_tag_unreachable_registry_and_wrong_ca(ngc_registry, internal_registry, certs, ngc_image):
    access = _access(ngc_registry, internal_registry, certs)
    with pytest.raises(ImageNotFoundError):
        mirror(
            [f"{ngc_registry.host}/nim/meta/no-such-model:1.0"],
            internal_registry.host,
            access=access,
            backend="skopeo",
        )
    closed = LocalRegistry.temporary()
    with pytest.raises(DockerError, match="cannot be reached"):
        mirror(
            [ngc_image],
            closed.host,
            access=RegistryAccess(insecure={ngc_registry.host, closed.host}),
            backend="skopeo",
        )
    wrong = RegistryAccess(
        ca_bundles={internal_registry.host: str(certs.other_ca_bundle)}, insecure={ngc_registry.host}
    )
    with pytest.raises(DockerError) as info:
        mirror([ngc_image], internal_registry.host + "/wrong-ca", access=wrong, backend="skopeo")
    assert "TLS verification" in str(info.value) and "CA bundle" in str(info.value)


def test_ecr_repositories_are_created_and_the_token_logs_in(s3):
    import boto3

    key_id, secret = s3.credentials["ecr-admin"]
    ecr = boto3.client(
        "ecr",
        endpoint_url=f"http://127.0.0.1:{s3.moto_port}",
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )  # moto's ECR: no real ECR here
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    access = RegistryAccess()
    created = prepare_ecr(host, ["nim/meta/llama-3.2-1b-instruct", "nim/meta/llama-3.1-8b-instruct"], access, ecr)
    assert created == ["nim/meta/llama-3.1-8b-instruct", "nim/meta/llama-3.2-1b-instruct"]
    assert prepare_ecr(host, ["nim/meta/llama-3.2-1b-instruct"], access, ecr) == []
    assert access.credentials[host][0] == "AWS"


def test_cli_mirror(ngc_registry, internal_registry, certs, ngc_image):
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nimrunbook.cli",
            "images",
            "mirror",
            ngc_image,
            "--to",
            f"{internal_registry.host}/cli",
            "--registry-insecure",
            ngc_registry.host,
            "--registry-ca",
            f"{internal_registry.host}={certs.ca_bundle}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"{internal_registry.host}/cli/nim/meta/llama-3.2-1b-instruct:1.8.5" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "nimrunbook.cli", "images", "mirror", "llama:1", "--to", "x.example.com"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not a full image reference" in bad.stderr
