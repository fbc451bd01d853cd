"""The offline bundle: outside -> media folder -> inside, with the stand-in NIM image, the real
registries (one over TLS) and each S3 server of the sandbox (``any_s3``: moto behind nginx TLS, `rclone serve s3`)."""

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from conftest import L40S_BF16, VLLM, VLLM_LORA, empty_bucket, s3_settings

from nimrunbook.bundle import create, import_, importer, inventory, verify
from nimrunbook.bundle import parts as bundle_parts
from nimrunbook.errors import StorageError, VerificationError
from nimrunbook.images import RegistryAccess
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.skopeo import SkopeoBackend
from nimrunbook.store import make_client, plan_publish
from nimrunbook.store import verify as verify_bucket


def _keypair(directory, name="signer"):
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key, key.with_suffix(".pub")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    return _keypair(directory), _keypair(directory, "intruder")


@pytest.fixture(scope="module")
def access(ngc_registry, internal_registry, certs):
    return RegistryAccess(ca_bundles={internal_registry.host: str(certs.ca_bundle)}, insecure={ngc_registry.host})


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, ngc_images, standin_manifest, downloaded_cache, keys, access):
    media = tmp_path_factory.mktemp("media") / "nim-bundle"
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16, VLLM_LORA])
    result = create(
        media,
        images=ngc_images,
        plan=plan,
        profile_names={VLLM: "vllm-bf16-tp1-pp1"},
        sign_key=keys[0][0],
        inside={"bucket": "nim-bundle"},
        access=access,
        image_backend="skopeo",
    )
    assert result.signed and result.objects_written == len(plan.objects)
    return media


def _copy(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def test_bundle_layout_checksums_and_readme(bundle, keys):
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=bundle, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    document = json.loads((bundle / "bundle.json").read_text())
    assert (document["format"], document["version"]) == ("nimrunbook.bundle", 1)
    assert len(document["images"]) == 2 and all(i["digest"].startswith("sha256:") for i in document["images"])
    assert {"key", "size", "sha256", "profiles"} <= set(document["objects"][0])
    assert (
        document["inside"]["bucket"] == "nim-bundle" and document["host"] and document["tool"].startswith("nimrunbook")
    )
    readme = (bundle / "README.txt").read_text()
    assert "ssh-keygen -Y verify" in readme and "sha256sum -c SHA256SUMS" in readme
    assert not list(bundle.rglob("*.gz")) and not list(bundle.rglob("*.incomplete"))
    # the exact command the README prints verifies by hand
    shutil.copy(keys[0][1], bundle / "signer.pub")
    try:
        command = next(
            line.strip() for line in readme.splitlines() if "ssh-keygen -Y verify" in line and "SHA256SUMS" in line
        )
        assert subprocess.run(command, shell=True, cwd=bundle, capture_output=True).returncode == 0
    finally:
        (bundle / "signer.pub").unlink()
        (bundle / "allowed_signers").unlink(missing_ok=True)


def test_verify_passes_and_writes_a_record(bundle, keys, tmp_path):
    report = verify(bundle, public_key=keys[0][1], record_dir=tmp_path)
    assert report.ok and report.signature == "verified", report.table()
    record = json.loads(Path(report.record_json).read_text())
    assert record["ok"] is True and record["bundle_id"] == report.bundle_id and record["user"]
    assert "PASSED" in Path(report.record_text).read_text()


def _problem(report) -> dict[str, str]:
    return {c.path: c.status for c in report.checks if c.status != "ok"}


def test_each_fault_is_detected_and_named(bundle, keys, tmp_path):
    document = json.loads((bundle / "bundle.json").read_text())
    weights = next(o["path"] for o in document["objects"] if o["key"].endswith("model.safetensors"))
    small = next(o["path"] for o in document["objects"] if o["key"].endswith("config.json"))
    copy = _copy(bundle, tmp_path)
    data = bytearray((copy / weights).read_bytes())
    data[4096] ^= 0x01
    (copy / weights).write_bytes(bytes(data))
    (copy / small).write_bytes((copy / small).read_bytes()[:5])
    (copy / "profiles/objects/stray.bin").write_bytes(b"x")
    report = verify(copy, public_key=keys[0][1], record_dir=tmp_path / "r1")
    assert not report.ok
    assert _problem(report) == {weights: "corrupt", small: "truncated", "profiles/objects/stray.bin": "extra"}
    with pytest.raises(VerificationError, match="corrupt"):
        report.raise_for_failure()


def test_wrong_signature_and_tampered_manifest(bundle, keys, tmp_path):
    wrong_key = verify(bundle, public_key=keys[1][1], record_dir=tmp_path / "r")
    assert wrong_key.signature == "failed" and not wrong_key.ok
    copy = _copy(bundle, tmp_path)
    document = json.loads((copy / "bundle.json").read_text())
    document["inside"]["bucket"] = "attacker-bucket"
    (copy / "bundle.json").write_text(json.dumps(document))
    naive = verify(copy, allow_unsigned=True, record_dir=tmp_path / "r2")
    assert _problem(naive) == {"bundle.json": "corrupt"}
    # a careful attacker also rewrites SHA256SUMS: only the signature catches it
    sums = (copy / "SHA256SUMS").read_text().splitlines()
    import hashlib

    sums[-1] = f"{hashlib.sha256((copy / 'bundle.json').read_bytes()).hexdigest()}  bundle.json"
    (copy / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    careful = verify(copy, public_key=keys[0][1], record_dir=tmp_path / "r3")
    assert careful.signature == "failed" and not careful.ok
    unchecked = verify(copy, allow_unsigned=True, record_dir=tmp_path / "r4")
    assert unchecked.unsigned and unchecked.signature.startswith("UNSIGNED: the bundle says it is signed")


def test_round_trip_into_the_inside_registry_and_bucket(bundle, keys, any_s3, internal_registry, access, tmp_path):
    empty_bucket(any_s3, "nim-bundle")
    settings = s3_settings(any_s3, bucket="nim-bundle")
    document = json.loads((bundle / "bundle.json").read_text())
    inside = f"{internal_registry.host}/airgap"
    # an interrupted import left some objects behind: the import resumes without re-sending them
    client = make_client(settings)
    first = document["objects"][0]
    client.upload_file(
        str(bundle / first["path"]), "nim-bundle", first["key"], ExtraArgs={"Metadata": {"sha256": first["sha256"]}}
    )
    result = import_(
        bundle,
        registry=inside,
        settings=settings,
        access=access,
        public_key=keys[0][1],
        record_dir=tmp_path,
    )
    assert result.upload.counts() == {"uploaded": len(document["objects"]) - 1, "skipped": 1, "failed": 0}
    assert (result.bucket_check["status"] == "ok").all()
    skopeo = SkopeoBackend(access)
    for image in document["images"]:
        target = ImageRef.parse(image["source"]).moved_to(inside)
        assert skopeo.digest(target) == image["digest"]  # the digest approved outside runs inside
    again = import_(
        bundle,
        registry=inside,
        settings=settings,
        access=access,
        public_key=keys[0][1],
        record_dir=tmp_path,
    )
    assert again.upload.counts()["uploaded"] == 0 and all(i.status == "skipped" for i in again.images)


def test_docker_backend_bundle_round_trip(docker, ngc_image, access, internal_registry, keys, tmp_path):
    """A host without skopeo: the images travel as one docker save archive, loaded inside only after it verified,
    each image checked by its id."""
    media = tmp_path / "docker-bundle"
    create(media, images=[ngc_image], sign_key=keys[0][0], access=access, image_backend="docker", docker_client=docker)
    docker.images.remove(ngc_image, force=True)
    result = import_(
        media,
        registry=f"{internal_registry.host}/docker-bundle",
        settings=None,
        access=access,
        public_key=keys[0][1],
        record_dir=tmp_path / "records",
    )
    (image,) = result.images
    (recorded,) = json.loads((media / "bundle.json").read_text())["images"]
    assert (image.backend, image.status, image.image_id) == ("docker", "copied", recorded["image_id"])


def test_import_refuses_a_failed_bundle(bundle, keys, any_s3, tmp_path):
    copy = _copy(bundle, tmp_path)
    next((copy / "profiles/objects").iterdir()).unlink()
    with pytest.raises(VerificationError, match="missing"):
        import_(
            copy,
            registry=None,
            settings=s3_settings(any_s3, bucket="nim-bundle"),
            public_key=keys[0][1],
            record_dir=tmp_path,
        )


def _flip_keeping_mtime(path: Path, offset: int) -> None:
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def test_import_catches_bit_rot_before_and_after_verification(bundle, keys, any_s3, tmp_path, monkeypatch):
    """Rot found by verification stops the import; a file that changes after verification (between verify and
    upload: played here by changing it just before the upload starts) is refused by the upload, which hashes every
    byte it sends against the digest verification computed. Nothing of it reaches the bucket either way."""
    empty_bucket(any_s3, "nim-bundle")
    settings = s3_settings(any_s3, bucket="nim-bundle")
    document = json.loads((bundle / "bundle.json").read_text())
    weights = next(o for o in document["objects"] if o["key"].endswith("model.safetensors"))
    before_verification = _copy(bundle, tmp_path / "a")
    _flip_keeping_mtime(before_verification / weights["path"], 4096)
    with pytest.raises(VerificationError, match="corrupt"):
        import_(before_verification, registry=None, settings=settings, public_key=keys[0][1], record_dir=tmp_path)
    after_verification = _copy(bundle, tmp_path / "b")
    real_publish = importer.publish

    def publish_after_a_change(objects, *args, **kwargs):
        _flip_keeping_mtime(after_verification / weights["path"], 4096)
        return real_publish(objects, *args, **kwargs)

    monkeypatch.setattr(importer, "publish", publish_after_a_change)
    with pytest.raises(StorageError, match="hash to sha256") as info:
        import_(after_verification, registry=None, settings=settings, public_key=keys[0][1], record_dir=tmp_path)
    assert weights["key"] in str(info.value)
    client = make_client(settings)
    assert weights["key"] not in {o["Key"] for o in client.list_objects_v2(Bucket="nim-bundle").get("Contents", [])}


def test_incremental_bundle_carries_only_what_is_missing(
    bundle, keys, any_s3, internal_registry, access, standin_manifest, downloaded_cache, ngc_images, tmp_path
):
    settings = s3_settings(any_s3, bucket="nim-bundle")
    import_(
        bundle,
        registry=f"{internal_registry.host}/airgap",
        settings=settings,
        access=access,
        public_key=keys[0][1],
        record_dir=tmp_path,
    )
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16, VLLM_LORA])
    engine_only = [o.key for o in plan.objects if VLLM not in o.profiles]
    client = make_client(settings)
    for key in engine_only:
        client.delete_object(Bucket="nim-bundle", Key=key)
    have = inventory(
        settings, registry=f"{internal_registry.host}/airgap", images=ngc_images, access=access, backend="skopeo"
    )
    assert len(have["images"]) == 2 and set(engine_only).isdisjoint(have["objects"])
    delta = create(
        tmp_path / "delta",
        images=ngc_images,
        plan=plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16, VLLM_LORA]),
        have=have,
        access=access,
        image_backend="skopeo",
    )
    document = json.loads((tmp_path / "delta/bundle.json").read_text())
    assert sorted(o["key"] for o in document["objects"]) == sorted(engine_only)
    assert sorted(delta.left_out["images"]) == sorted(ngc_images) and document["images"] == []
    assert len(delta.left_out["objects"]) == len(plan.objects) - len(engine_only)
    assert verify(tmp_path / "delta", allow_unsigned=True).ok


def test_split_parts_for_fat32_style_media(standin_manifest, downloaded_cache, any_s3, tmp_path):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    result = create(tmp_path / "split", plan=plan, part_size=100_000)
    weights = next(o for o in plan.objects if o.key.endswith("model.safetensors"))
    parts = sorted((tmp_path / "split/profiles/objects").glob(weights.key + ".part*"))
    assert [p.stat().st_size for p in parts] == [100_000, 100_000, 62_144]
    assert not (tmp_path / "split/profiles/objects" / weights.key).exists() and result.objects_written == len(
        plan.objects
    )
    check = subprocess.run(
        ["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path / "split", capture_output=True, text=True
    )
    assert check.returncode == 0
    copy = tmp_path / "split-missing"
    shutil.copytree(tmp_path / "split", copy)
    parts_of_copy = sorted((copy / "profiles/objects").glob(weights.key + ".part*"))
    parts_of_copy[1].unlink()
    assert _problem(verify(copy, allow_unsigned=True, record_dir=tmp_path / "r")) == {
        f"profiles/objects/{parts_of_copy[1].name}": "missing"
    }
    empty_bucket(any_s3, "nim-split")
    settings = s3_settings(any_s3, bucket="nim-split")
    import_(
        tmp_path / "split",
        registry=None,
        settings=settings,
        allow_unsigned=True,
        record_dir=tmp_path / "r",
    )
    table = verify_bucket(plan.objects, settings, deep=True)
    assert (table["status"] == "ok").all()
    assert bundle_parts.FAT32_PART_SIZE == 4 * 1024**3 - 1


def test_interrupted_create_resumes_without_rewriting(standin_manifest, downloaded_cache, tmp_path, monkeypatch):
    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16])
    real_write, calls = bundle_parts.write_file, []

    lock = threading.Lock()

    def pulled_drive(*args, **kwargs):  # fault injection: the drive is pulled after four files were begun
        with lock:
            if len(calls) == 4:
                raise OSError(5, "Input/output error")
            calls.append(args[2])
        return real_write(*args, **kwargs)

    create_module = __import__("sys").modules["nimrunbook.bundle.create"]
    monkeypatch.setattr(create_module, "write_file", pulled_drive)
    with pytest.raises(OSError):
        create(tmp_path / "b", plan=plan)
    inodes = {p.name: p.stat().st_ino for p in (tmp_path / "b/profiles/objects").iterdir()}
    # files are written several at once: the other file under way when the drive went is stopped, not kept
    assert len(inodes) in (3, 4) and not list((tmp_path / "b").rglob("*.incomplete"))
    monkeypatch.setattr(create_module, "write_file", real_write)
    resumed = create(tmp_path / "b", plan=plan_publish(standin_manifest, downloaded_cache, [VLLM, L40S_BF16]))
    assert (resumed.objects_written, resumed.objects_skipped) == (len(plan.objects) - len(inodes), len(inodes))
    assert all((tmp_path / "b/profiles/objects" / name).stat().st_ino == inode for name, inode in inodes.items())
    assert verify(tmp_path / "b", allow_unsigned=True).ok


def test_cli_create_verify(standin_manifest, downloaded_cache, tmp_path, keys):
    import sys

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(__import__("nimrunbook.standin.catalog", fromlist=["x"]).manifest_yaml("1.8.5"))

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "nimrunbook.cli", "bundle", *a], capture_output=True, text=True, timeout=300
        )  # noqa: E731

    made = run(
        "create",
        str(tmp_path / "b"),
        "--cache",
        str(downloaded_cache),
        "--manifest",
        str(manifest),
        "--profiles",
        VLLM,
        "--sign-key",
        str(keys[0][0]),
        "--wheelhouse",
        "no",  # tests/test_bundle_wheelhouse.py makes one (it needs the package index)
    )
    assert made.returncode == 0, made.stderr
    checked = run("verify", str(tmp_path / "b"), "--public-key", str(keys[0][1]))
    assert checked.returncode == 0 and "PASSED" in checked.stdout and "signature: verified" in checked.stdout
    (tmp_path / "b/README.txt").write_text("changed")
    failed = run("verify", str(tmp_path / "b"), "--public-key", str(keys[0][1]))
    assert failed.returncode == 1 and "FAILED" in failed.stdout


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare(1) and root, to mount read-only")
def test_import_from_a_read_only_mount(
    ngc_images, standin_manifest, downloaded_cache, keys, access, s3, internal_registry, certs, tmp_path
):
    """The media mounted read-only (a bind mount remounted ro, in a private mount namespace): the import joins
    split files and builds image views in --staging-dir, writes nothing on the media, and succeeds."""
    import os
    import sys

    plan = plan_publish(standin_manifest, downloaded_cache, [VLLM])
    media = tmp_path / "media"
    create(
        media,
        images=ngc_images[:1],
        plan=plan,
        part_size=100_000,
        sign_key=keys[0][0],
        access=access,
        image_backend="skopeo",
    )
    before = _tree(media)
    readonly, staging = tmp_path / "usb", tmp_path / "staging"
    readonly.mkdir()
    s3.create_bucket("nim-readonly")
    key_id, secret = s3.credentials["admin"]
    inside = f"{internal_registry.host}/readonly"
    options = {
        "--public-key": keys[0][1],
        "--registry": inside,
        "--registry-ca": f"{internal_registry.host}={certs.ca_bundle}",
        "--bucket": "nim-readonly",
        "--endpoint-url": s3.endpoint_url,
        "--ca-bundle": s3.certs.ca_bundle,
        "--record-dir": tmp_path / "records",
    }
    command = [sys.executable, "-m", "nimrunbook.cli", "bundle", "import", str(readonly), "--path-style"]
    command += [str(part) for pair in options.items() for part in pair]
    (tmp_path / "tiny").mkdir()
    script = (
        f"mount --bind {media} {readonly} && mount -o remount,bind,ro {readonly} && "
        f"mount -t tmpfs -o size=1m tmpfs {tmp_path / 'tiny'} && "
        f'! touch {readonly}/probe 2>/dev/null && exec "$@"'
    )
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret}

    def run(staging_dir: Path) -> subprocess.CompletedProcess:
        arguments = [*command, "--staging-dir", str(staging_dir)]
        return subprocess.run(
            ["unshare", "-m", "sh", "-c", script, "sh", *arguments],
            capture_output=True,
            text=True,
            timeout=600,
            env=environment,
        )

    cramped = run(tmp_path / "tiny")  # a 1 MiB staging folder: refused before an image is pushed or a byte sent
    assert cramped.returncode == 1 and "Traceback" not in cramped.stderr, cramped.stderr
    assert (
        "nimrunbook: error: Joining the split files of the bundle needs 262.1 KB free in the staging" in cramped.stderr
    )
    bucket = s3_settings(s3, bucket="nim-readonly", path_style=True)
    assert make_client(bucket).list_objects_v2(Bucket="nim-readonly")["KeyCount"] == 0
    result = run(staging)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Bundle verification: PASSED" in result.stdout and "Traceback" not in result.stderr
    assert _tree(media) == before  # not a byte, not a folder written on the media
    assert not list(staging.iterdir())  # the joined files are gone
    table = verify_bucket(plan.objects, bucket, deep=True)
    assert (table["status"] == "ok").all()
    image = json.loads((media / "bundle.json").read_text())["images"][0]
    assert SkopeoBackend(access).digest(ImageRef.parse(image["source"]).moved_to(inside)) == image["digest"]
