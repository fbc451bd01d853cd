"""The confinement module on a real file system: names, links, devices, FIFOs, walks."""

import hashlib
import io
import os
import stat

import pytest

from nimrunbook.bundle.confine import BundleDir, check_name, name_problem, sha256_stream
from nimrunbook.errors import ConfinementError, InputError

UNSAFE = {
    "": "empty",
    "/etc/cron.d/x": "absolute",
    "../outside": "'..'",
    "profiles/../../outside": "'..'",
    "profiles//x": "empty or '.'",
    "./x": "empty or '.'",
    "profiles/.": "empty or '.'",
    "a\\..\\b": "backslash",
    "a\nb": "control character",
    "a\x7fb": "control character",
    "x" * 256: "longer than 255",
    "a/" * 40 + "b": "folders deep",
    "bad-\udcff": "UTF-8",
}


@pytest.mark.parametrize("name", list(UNSAFE), ids=lambda n: repr(n[:20]))
def test_unsafe_names_are_refused_with_the_reason(name):
    assert UNSAFE[name] in name_problem(name)
    with pytest.raises(ConfinementError) as caught:
        check_name(name)
    assert caught.value.status == "unsafe"


@pytest.mark.parametrize(
    "name", ["README.txt", "profiles/objects/nim%2Fmeta%2Fm%3Ahf%3Ffile%3Dconfig.json", "images/oci/index.json"]
)
def test_plain_relative_names_pass(name):
    assert name_problem(name) is None and check_name(name) == name


@pytest.fixture
def tree(tmp_path):
    """A bundle-like folder holding one of everything a hostile medium may hold, and a file outside it."""
    root, outside = tmp_path / "bundle", tmp_path / "outside"
    (root / "profiles/objects").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret\n")
    (root / "profiles/objects/file").write_bytes(b"payload\n")
    (root / "profiles/objects/link").symlink_to(outside / "secret")
    (root / "linked-dir").symlink_to(outside)
    os.mkfifo(root / "profiles/objects/fifo")
    os.mknod(root / "zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # what /dev/zero is: a device, never ending
    (root / "big").write_bytes(b"x" * 2048)
    return root, outside


def _status(root, name):
    with pytest.raises(ConfinementError) as caught, BundleDir(root) as bundle:
        bundle.open_fd(name)
    return caught.value.status, caught.value.message


def test_a_regular_file_is_read_through_its_descriptor(tree):
    root, _ = tree
    with BundleDir(root) as bundle, bundle.open("profiles/objects/file") as reader:
        assert reader.read() == b"payload\n"
    with BundleDir(root) as bundle:
        assert bundle.real_path("profiles/objects/file") == root.resolve() / "profiles/objects/file"


@pytest.mark.parametrize(
    ("name", "status", "words"),
    [
        ("profiles/objects/link", "unsafe", "symbolic link"),
        ("linked-dir/secret", "unsafe", "linked-dir is a symbolic link"),
        ("profiles/objects/fifo", "not a file", "FIFO"),
        ("zero", "not a file", "character device"),
        ("profiles", "not a file", "folder"),
        ("profiles/objects/absent", "missing", "not on the media"),
        ("big/inside", "missing", "not a folder"),
        ("../outside/secret", "unsafe", "'..'"),
        ("/etc/passwd", "unsafe", "absolute"),
    ],
)
def test_what_is_refused_and_why(tree, name, status, words):
    got, message = _status(tree[0], name)
    assert got == status and words in message


def test_read_refuses_a_file_larger_than_its_limit(tree):
    with BundleDir(tree[0]) as bundle:
        assert bundle.read("big", limit=4096) == b"x" * 2048
        with pytest.raises(ConfinementError, match="larger than 1024 bytes") as caught:
            bundle.read("big", limit=1024)
    assert caught.value.status == "too large"


def test_the_walk_names_links_and_special_files_without_following_them(tree):
    with BundleDir(tree[0]) as bundle:
        kinds = dict(bundle.walk())
    assert kinds == {
        "big": "file",
        "linked-dir": "symbolic link",
        "profiles": "folder",
        "profiles/objects": "folder",
        "profiles/objects/fifo": "FIFO",
        "profiles/objects/file": "file",
        "profiles/objects/link": "symbolic link",
        "zero": "character device",
    }


def test_the_root_must_be_a_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        BundleDir(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is not a folder"):
        BundleDir(tmp_path / "file")


def test_hashing_reads_at_most_one_byte_past_the_expected_size():
    data = b"y" * 100
    reader = io.BytesIO(data)
    digest, read = sha256_stream(reader, 10)
    assert read == 11 and digest == hashlib.sha256(data[:11]).hexdigest()
    assert sha256_stream(io.BytesIO(data), 100) == (hashlib.sha256(data).hexdigest(), 100)
