"""Malicious bundles, table-driven.

Each case is tried twice: as an attacker without the signing key makes it (the
signatures stripped; the inside verifies with --allow-unsigned) and as one who
holds the real key makes it (re-signed; the inside verifies with the public
key, and the signature passes). Either way the import must refuse it and name
the cause, and nothing outside the bundle may be read, written or uploaded:
inotify watches a canary folder next to the bundle that the attack aims at,
the bucket must stay empty, the registry must not get the image, and the
staging folder must be left empty. A device, a FIFO and /dev/zero must not hang
anything (each case runs under an alarm).
"""

import ctypes
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import VLLM, s3_settings

from nimrunbook.bundle import create, import_, signing, verify
from nimrunbook.errors import InputError, VerificationError
from nimrunbook.images import RegistryAccess
from nimrunbook.images.refs import ImageRef
from nimrunbook.images.skopeo import SkopeoBackend
from nimrunbook.store import make_client, plan_publish

MODES = ("unsigned", "re-signed")
SECRET = b"the canary: nothing may read, copy or upload this\n"


class Watch:
    """inotify on every folder under ``root``: any open, read, write, create or delete there is an event."""

    MASK = (
        0x1 | 0x2 | 0x4 | 0x8 | 0x20 | 0x80 | 0x100 | 0x200
    )  # access modify attrib close_write open moved_to create delete

    def __init__(self, root: Path) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        self.names = {}
        for folder in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
            watch = self.libc.inotify_add_watch(self.fd, bytes(folder), self.MASK)
            assert watch >= 0
            self.names[watch] = folder

    def events(self) -> list[str]:
        found = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                watch, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                found.append(f"{self.names.get(watch)}/{name} mask={mask:#x}")
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)


@contextmanager
def _deadline(seconds: int = 60):
    """Fail (not hang, not kill the test process) when something reads a FIFO, a device or /dev/zero."""

    def hung(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: something read a FIFO, a device or /dev/zero")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Bundle:
    """A copy of a real bundle, with the edits an attacker makes."""

    root: Path
    canary: Path

    def doc(self) -> dict:
        return json.loads((self.root / "bundle.json").read_text())

    def save(self, document: dict) -> None:
        (self.root / "bundle.json").write_text(json.dumps(document, indent=2))

    def sums(self) -> list[list[str]]:
        lines = (self.root / "SHA256SUMS").read_text().splitlines()
        return [line.split("  ", 1) if "  " in line else [line, None] for line in lines]  # garbage kept as is

    def write_sums(self, entries) -> None:
        (self.root / "SHA256SUMS").write_text("".join(f"{d}  {n}\n" if n else f"{d}\n" for d, n in entries))

    def add_file(self, name: str, data: bytes) -> None:
        """List ``name`` in SHA256SUMS and bundle.json's files, as the attacker's own sha256sum would."""
        self.write_sums([*self.sums(), [_sha(data), name]])
        document = self.doc()
        document["files"].append({"path": name, "size": len(data), "sha256": _sha(data)})
        self.save(document)

    def object(self, suffix: str, document: dict) -> dict:
        return next(o for o in document["objects"] if o["key"].endswith(suffix))

    def seal(self, mode: str, key: Path) -> None:
        """Recompute bundle.json's line in SHA256SUMS; then re-sign with the real key, or strip the signatures."""
        manifest = self.root / "bundle.json"
        if manifest.is_file() and not manifest.is_symlink():
            entries = [e for e in self.sums() if e[1] != "bundle.json"]
            self.write_sums([*entries, [_sha(manifest.read_bytes()), "bundle.json"]])
        for name in ("SHA256SUMS", "bundle.json"):
            if mode == "re-signed":
                signing.sign(self.root / name, key)
            else:
                (self.root / f"{name}.sig").unlink(missing_ok=True)


# -- the cases: (edit before sealing, edit after sealing, words the refusal must hold) ---------------------------


def part_climbs_out(b: Bundle) -> None:
    document = b.doc()
    part = b.object("model.safetensors", document)["parts"][1]
    part["path"] = "../canary/secret"
    b.save(document)
    b.add_file("../canary/secret", SECRET)


def part_is_absolute(b: Bundle) -> None:
    document = b.doc()
    b.object("model.safetensors", document)["parts"][0]["path"] = str(b.canary / "secret")
    b.save(document)
    b.add_file(str(b.canary / "secret"), SECRET)


def key_climbs_out(b: Bundle) -> None:  # the import used to join the parts to <staging>/<key>: a cron line
    document = b.doc()
    b.object("model.safetensors", document)["key"] = "../../canary/cron"
    b.save(document)


def key_is_absolute(b: Bundle) -> None:
    document = b.doc()
    b.object("model.safetensors", document)["key"] = str(b.canary / "cron")
    b.save(document)


def sums_line_climbs_out(b: Bundle) -> None:
    b.add_file("../canary/secret", SECRET)


def sums_line_is_absolute(b: Bundle) -> None:
    b.add_file(str(b.canary / "secret"), SECRET)


def sums_line_is_dev_zero(b: Bundle) -> None:
    b.add_file("/dev/zero", b"")


def object_leaves_the_bundle(b: Bundle) -> None:
    document = b.doc()
    config = b.object("config.json", document)
    old = config["path"]
    config.update(path="../canary/secret", size=len(SECRET), sha256=_sha(SECRET))
    document["files"] = [f for f in document["files"] if f["path"] != old]
    b.save(document)
    b.write_sums([e for e in b.sums() if e[1] != old])
    b.add_file("../canary/secret", SECRET)


def _object_path(b: Bundle, suffix: str) -> Path:
    return b.root / b.object(suffix, b.doc())["path"]


def file_is_a_link_out(b: Bundle) -> None:  # same bytes, so its sha256 matches
    target = _object_path(b, "config.json")
    shutil.copy(target, b.canary / "copy")
    target.unlink()
    target.symlink_to(b.canary / "copy")


def folder_is_a_link_out(b: Bundle) -> None:
    shutil.copytree(b.root / "profiles", b.canary / "profiles")
    shutil.rmtree(b.root / "profiles")
    (b.root / "profiles").symlink_to(b.canary / "profiles")


def verification_is_a_link_out(b: Bundle) -> None:
    shutil.rmtree(b.root / "verification", ignore_errors=True)
    (b.root / "verification").symlink_to(b.canary)


def file_is_dev_zero(b: Bundle) -> None:
    target = _object_path(b, "config.json")
    target.unlink()
    os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(1, 5))


def file_is_a_fifo(b: Bundle) -> None:
    target = _object_path(b, "config.json")
    target.unlink()
    os.mkfifo(target)


def object_not_in_sums(b: Bundle) -> None:
    document = b.doc()
    extra = dict(b.object("config.json", document))
    extra.update(
        key="nim%2Fmeta%2Fllama-3.2-1b-instruct%3Ahf-evil%3Ffile%3Dconfig.json",
        uri="ngc://nim/meta/llama-3.2-1b-instruct:hf-evil?file=config.json",
        path="profiles/objects/unlisted",
        sha256=_sha(b"{}"),
        size=2,
    )
    document["objects"].append(extra)
    b.save(document)
    (b.root / "profiles/objects/unlisted").write_bytes(b"{}")


def object_digest_is_not_its_files(b: Bundle) -> None:
    document = b.doc()
    b.object("config.json", document)["sha256"] = _sha(b"replaced weights")
    b.save(document)


def parts_longer_than_the_object(b: Bundle) -> None:
    document = b.doc()
    b.object("model.safetensors", document)["size"] -= 1000
    b.save(document)


def key_appears_twice(b: Bundle) -> None:
    document = b.doc()
    tokenizer, config = b.object("tokenizer.json", document), b.object("config.json", document)
    tokenizer.update(key=config["key"], uri=config["uri"])
    b.save(document)


def sums_is_a_link_out(b: Bundle) -> None:
    shutil.copy(b.root / "SHA256SUMS", b.canary / "SHA256SUMS")
    (b.root / "SHA256SUMS").unlink()
    (b.root / "SHA256SUMS").symlink_to(b.canary / "SHA256SUMS")


def manifest_is_a_link_out(b: Bundle) -> None:
    shutil.copy(b.root / "bundle.json", b.canary / "bundle.json")
    (b.root / "bundle.json").unlink()
    (b.root / "bundle.json").symlink_to(b.canary / "bundle.json")


def signature_is_a_fifo(b: Bundle) -> None:
    (b.root / "SHA256SUMS.sig").unlink(missing_ok=True)
    os.mkfifo(b.root / "SHA256SUMS.sig")


def manifest_is_not_utf8(b: Bundle) -> None:
    (b.root / "bundle.json").write_bytes(b'{"format": "\xff\xfe"}')


def manifest_is_not_json(b: Bundle) -> None:
    (b.root / "bundle.json").write_text("{" * 100_000)  # deeper than the JSON parser's recursion


def sums_has_garbage(b: Bundle) -> None:
    (b.root / "SHA256SUMS").write_text((b.root / "SHA256SUMS").read_text() + "rm -rf / # not a checksum line\n")


CASES = {
    "a part climbs out with ..": (part_climbs_out, None, "names '../canary/secret', which is not a safe path"),
    "a part is an absolute path": (part_is_absolute, None, "which is not a safe path: it is an absolute path"),
    "an object key climbs out": (key_climbs_out, None, "key that is not the flat, percent-encoded NIM key"),
    "an object key is absolute": (key_is_absolute, None, "key that is not the flat, percent-encoded NIM key"),
    "SHA256SUMS names ../": (sums_line_climbs_out, None, "SHA256SUMS line .* not a safe path: it climbs out"),
    "SHA256SUMS names an absolute path": (sums_line_is_absolute, None, "SHA256SUMS line .* it is an absolute path"),
    "SHA256SUMS names /dev/zero": (sums_line_is_dev_zero, None, "'/dev/zero', which is not a safe path"),
    "an object's path leaves the bundle": (object_leaves_the_bundle, None, "'../canary/secret', which is not a safe"),
    "a listed file is a link out": (file_is_a_link_out, None, r"config.json is a symbolic link: refused"),
    "a folder is a link out": (folder_is_a_link_out, None, "profiles is a symbolic link: refused"),
    "verification/ is a link out": (verification_is_a_link_out, None, "verification: unsafe a symbolic link"),
    "a listed file is /dev/zero": (file_is_dev_zero, None, "is a character device, not a regular file"),
    "a listed file is a FIFO": (file_is_a_fifo, None, "is a FIFO, not a regular file"),
    "an object is not in SHA256SUMS": (object_not_in_sums, None, "profiles/objects/unlisted is not in SHA256SUMS"),
    "an object's sha256 is not its file's": (
        object_digest_is_not_its_files,
        None,
        "in bundle.json but .* in SHA256SUMS",
    ),
    "parts longer than their object": (parts_longer_than_the_object, None, "has parts of 262144 bytes in all"),
    "an object key twice": (key_appears_twice, None, "appears twice"),
    "SHA256SUMS is a link out": (None, sums_is_a_link_out, "SHA256SUMS is a symbolic link"),
    "bundle.json is a link out": (None, manifest_is_a_link_out, "bundle.json is a symbolic link"),
    "a signature is a FIFO": (None, signature_is_a_fifo, "SHA256SUMS.sig(: unsafe a| is a) FIFO"),
    "bundle.json is not UTF-8": (manifest_is_not_utf8, None, "bundle.json is not UTF-8 text"),
    "bundle.json nests beyond the parser": (manifest_is_not_json, None, "bundle.json is not JSON"),
    "SHA256SUMS has a garbage line": (sums_has_garbage, None, r"SHA256SUMS line \d+ is not '<sha256>  <path>'"),
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    key = directory / "signer"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "signer", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub")


@pytest.fixture(scope="module")
def profiles_bundle(tmp_path_factory, standin_manifest, downloaded_cache, keys):
    """A real signed bundle of one profile, its weights split in three parts."""
    media = tmp_path_factory.mktemp("media") / "nim-bundle"
    create(
        media,
        plan=plan_publish(standin_manifest, downloaded_cache, [VLLM]),
        part_size=100_000,
        sign_key=keys[0],
    )
    return media


@pytest.fixture(scope="module")
def bucket(s3):
    s3.create_bucket("nim-hostile")
    return s3_settings(s3, bucket="nim-hostile", path_style=True)


@pytest.fixture
def attack(tmp_path, keys, bucket):
    """Copy a bundle, let the case edit it, seal it in the mode, then import it while the canary is watched."""

    def run(source: Path, mode: str, before, after, **import_options):
        (tmp_path / "canary").mkdir()
        (tmp_path / "canary/secret").write_bytes(SECRET)
        b = Bundle(tmp_path / "bundle", tmp_path / "canary")
        shutil.copytree(source, b.root, symlinks=True)
        if before:
            before(b)
        b.seal(mode, keys[0])
        if after:
            after(b)
        staging = tmp_path / "staging"
        staging.mkdir()
        watch = Watch(b.canary)
        try:
            with _deadline(), pytest.raises(VerificationError) as refused:
                import_(
                    b.root,
                    settings=bucket,
                    public_key=keys[1] if mode == "re-signed" else None,
                    allow_unsigned=mode == "unsigned",
                    staging_dir=staging,
                    **{"registry": None, **import_options},
                )
        finally:
            events = watch.events()
            watch.close()
        assert events == [], f"the canary was touched: {events}"
        assert make_client(bucket).list_objects_v2(Bucket=bucket.bucket).get("KeyCount", 0) == 0
        assert not list(staging.iterdir()), "the staging folder was left with files"
        return b, refused.value

    return run


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_a_malicious_bundle_is_refused_and_nothing_outside_it_is_touched(case, mode, attack, profiles_bundle):
    before, after, words = CASES[case]
    b, error = attack(profiles_bundle, mode, before, after)
    assert re.search(words, str(error)), str(error)
    if mode == "re-signed":  # the real key vouched for it: confinement, not the signature, refused it
        assert "does not verify with" not in str(error)
    if case == "verification/ is a link out":
        assert not list(b.canary.glob("verification-*"))
    else:
        records = sorted((b.root / "verification").glob("*.json"))
        assert records and all(json.loads(r.read_text())["ok"] is False for r in records)


def test_a_failed_signature_stops_before_any_listed_file_is_opened(attack, profiles_bundle, keys, tmp_path):
    def replace_and_point_at_a_fifo(b: Bundle) -> None:
        os.mkfifo(b.root / "profiles/objects/pipe")
        b.add_file("profiles/objects/pipe", b"")

    (tmp_path / "objects-watch").mkdir()
    b = Bundle(tmp_path / "copy", tmp_path / "objects-watch")
    shutil.copytree(profiles_bundle, b.root)
    replace_and_point_at_a_fifo(b)  # changed after signing: the signature no longer verifies
    watch = Watch(b.root / "profiles")
    with _deadline():
        report = verify(b.root, public_key=keys[1], record_dir=tmp_path / "records")
    assert report.signature == "failed" and not report.checks and "no listed file was opened" in report.notes[0]
    assert watch.events() == []


def _replace_an_object_recompute_and_strip(source: Path, target: Path) -> Bundle:
    b = Bundle(target, target.parent / "canary")
    shutil.copytree(source, b.root)
    b.canary.mkdir()
    document = b.doc()
    config = b.object("config.json", document)
    data = b'{"replaced": "by an attacker"}'
    (b.root / config["path"]).write_bytes(data)
    for entry in (config, next(f for f in document["files"] if f["path"] == config["path"])):
        entry.update(size=len(data), sha256=_sha(data))
    b.save(document)
    b.write_sums([[_sha(data), n] if n == config["path"] else [d, n] for d, n in b.sums()])
    b.seal("unsigned", Path("unused"))
    return b


def test_a_bundle_whose_signatures_were_stripped_is_refused_without_allow_unsigned(profiles_bundle, keys, tmp_path):
    b = _replace_an_object_recompute_and_strip(profiles_bundle, tmp_path / "bundle")
    watch = Watch(b.root)
    with pytest.raises(InputError, match="No public key was given .* so it is refused.*--allow-unsigned"):
        verify(b.root)
    assert watch.events() == []  # refused before the bundle was opened
    with pytest.raises(VerificationError, match=r"SHA256SUMS.sig is missing: the bundle is not signed"):
        verify(b.root, public_key=keys[1]).raise_for_failure()
    with pytest.raises(InputError, match="lies inside the bundle"):
        shutil.copy(keys[1], b.root / "signer.pub")
        verify(b.root, public_key=b.root / "signer.pub")


def test_allow_unsigned_says_unsigned_in_the_report_the_record_and_the_cli(profiles_bundle, tmp_path):
    b = _replace_an_object_recompute_and_strip(profiles_bundle, tmp_path / "bundle")
    report = verify(b.root, allow_unsigned=True, record_dir=tmp_path / "records")
    assert report.ok and report.unsigned
    assert report.signature.startswith("UNSIGNED: the bundle says it is signed, but no public key was given")
    assert report.table().startswith("Bundle verification: PASSED, UNSIGNED")
    record = json.loads(Path(report.record_json).read_text())
    assert record["unsigned"] is True and record["signature"].startswith("UNSIGNED")
    assert Path(report.record_text).read_text().startswith("Bundle verification: PASSED, UNSIGNED")
    cli = subprocess.run(
        [sys.executable, "-m", "nimrunbook.cli", "bundle", "verify", str(b.root), "--allow-unsigned"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0 and "PASSED, UNSIGNED" in cli.stdout and "UNSIGNED" in cli.stderr
    again = verify(b.root, allow_unsigned=True, record_dir=tmp_path / "records")
    assert again.record_json != report.record_json  # records never overwrite each other


# -- images: the OCI layout's names -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_bundle(tmp_path_factory, ngc_images, ngc_registry, internal_registry, certs, keys):
    access = RegistryAccess(ca_bundles={internal_registry.host: str(certs.ca_bundle)}, insecure={ngc_registry.host})
    media = tmp_path_factory.mktemp("image-media") / "nim-bundle"
    create(media, images=ngc_images[:1], sign_key=keys[0], access=access, image_backend="skopeo")
    return media, access


def _index(b: Bundle) -> dict:
    return json.loads((b.root / "images/oci/index.json").read_text())


def _rewrite(b: Bundle, name: str, data: bytes) -> None:
    """Replace a listed file and its lines, as the attacker's sha256sum would."""
    (b.root / name).write_bytes(data)
    b.write_sums([[_sha(data), n] if n == name else [d, n] for d, n in b.sums()])
    document = b.doc()
    for entry in document["files"]:
        if entry["path"] == name:
            entry.update(size=len(data), sha256=_sha(data))
    b.save(document)


def index_digest_climbs_out(b: Bundle) -> None:
    index = _index(b)
    index["manifests"][0]["digest"] = "sha256:../../../../canary/secret"
    _rewrite(b, "images/oci/index.json", json.dumps(index).encode())
    document = b.doc()
    document["images"][0]["digest"] = "sha256:../../../../canary/secret"
    b.save(document)


def layer_digest_climbs_out(b: Bundle) -> None:
    index = _index(b)
    old = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((b.root / "images/oci/blobs/sha256" / old).read_text())
    manifest["layers"][0]["digest"] = "sha256:../../../../../canary/secret"
    data = json.dumps(manifest).encode()
    new = _sha(data)
    (b.root / "images/oci/blobs/sha256" / new).write_bytes(data)
    b.add_file(f"images/oci/blobs/sha256/{new}", data)
    index["manifests"][0]["digest"] = f"sha256:{new}"
    _rewrite(b, "images/oci/index.json", json.dumps(index).encode())
    document = b.doc()
    document["images"][0]["digest"] = f"sha256:{new}"
    b.save(document)


def blob_is_a_link_out(b: Bundle) -> None:
    layers = json.loads((b.root / "images/oci/blobs/sha256" / _index(b)["manifests"][0]["digest"][7:]).read_text())
    blob = b.root / "images/oci/blobs/sha256" / layers["layers"][0]["digest"][7:]
    shutil.copy(blob, b.canary / "layer")
    blob.unlink()
    blob.symlink_to(b.canary / "layer")


def image_index_not_in_sums(b: Bundle) -> None:
    b.write_sums([e for e in b.sums() if e[1] != "images/images.json"])
    document = b.doc()
    document["files"] = [f for f in document["files"] if f["path"] != "images/images.json"]
    b.save(document)


IMAGE_CASES = {
    "the layout index names a digest that climbs out": (index_digest_climbs_out, "is not a sha256 digest"),
    "a manifest names a layer that climbs out": (layer_digest_climbs_out, "is not a sha256 digest"),
    "a blob is a link out": (blob_is_a_link_out, "is a symbolic link: refused"),
    "the image index is not in SHA256SUMS": (image_index_not_in_sums, "does not list the image index"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_a_malicious_image_layout_is_refused(case, mode, attack, image_bundle, internal_registry, ngc_images):
    media, access = image_bundle
    edit, words = IMAGE_CASES[case]
    registry = f"{internal_registry.host}/hostile-{len(case)}-{mode}"
    _, error = attack(media, mode, edit, None, registry=registry, access=access)
    assert re.search(words, str(error)), str(error)
    assert SkopeoBackend(access).digest(ImageRef.parse(ngc_images[0]).moved_to(registry)) is None
