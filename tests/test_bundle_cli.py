"""Bad input to the bundle commands: one paragraph and exit 2 (what was given is wrong) or exit 1 (the bundle
failed a check), never a traceback."""

import shutil
import subprocess
import sys

import pytest
from conftest import VLLM

from nimrunbook.bundle import create
from nimrunbook.cli import main
from nimrunbook.store import plan_publish


@pytest.fixture(scope="module")
def media(tmp_path_factory, standin_manifest, downloaded_cache):
    folder = tmp_path_factory.mktemp("cli-media") / "nim-bundle"
    create(folder, plan=plan_publish(standin_manifest, downloaded_cache, [VLLM]))
    return folder


def _bundle_with(media, tmp_path, name: str, data: bytes):
    copy = tmp_path / "bundle"
    shutil.copytree(media, copy)
    (copy / name).write_bytes(data)
    return copy


def _setup(case: str, media, tmp_path) -> list[str]:
    """The arguments of one case, after making the files it needs."""
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00garbage")
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    shutil.copy(media / "README.txt", tmp_path / "readme")
    damaged = {
        "bundle.json not UTF-8": ("bundle.json", b"\xff\xfe{"),
        "bundle.json not JSON": ("bundle.json", b"{'images': ["),
        "SHA256SUMS garbage": ("SHA256SUMS", b"garbage\n\x00\n"),
        "SHA256SUMS not UTF-8": ("SHA256SUMS", b"\xff" * 70),
    }
    if case in damaged:
        _bundle_with(media, tmp_path, *damaged[case])
    verify = ["verify", "--allow-unsigned", "--record-dir", str(tmp_path / "records")]
    return {
        "no such folder": [*verify, str(tmp_path / "absent")],
        "a file, not a folder": [*verify, str(tmp_path / "file")],
        "a folder that is no bundle": [*verify, str(tmp_path / "empty")],
        "no public key": ["verify", str(media)],
        "a public key that is not text": ["verify", str(media), "--public-key", str(tmp_path / "binary")],
        "a public key that is not one": ["verify", str(media), "--public-key", str(tmp_path / "readme")],
        "bundle.json not UTF-8": [*verify, str(tmp_path / "bundle")],
        "bundle.json not JSON": [*verify, str(tmp_path / "bundle")],
        "SHA256SUMS garbage": [*verify, str(tmp_path / "bundle")],
        "SHA256SUMS not UTF-8": [*verify, str(tmp_path / "bundle")],
        "import --workers 0": ["import", str(media), "--allow-unsigned", "--workers", "0"],
        "import staging inside the bundle": [
            "import",
            str(media),
            "--allow-unsigned",
            "--bucket",
            "nim-x",
            "--endpoint-url",
            "https://s3.example.test",
            "--staging-dir",
            str(media / "profiles"),
            "--record-dir",
            str(tmp_path / "records"),
        ],
        "create --part-size -5": ["create", str(tmp_path / "new"), "--part-size", "-5"],
        "create --have not JSON": ["create", str(tmp_path / "new"), "--have", str(tmp_path / "binary")],
        "create --have not an inventory": ["create", str(tmp_path / "new"), "--have", str(tmp_path / "readme")],
        "create into a file": ["create", str(tmp_path / "file")],
    }[case]


CASES = {
    "no such folder": (2, "does not exist"),
    "a file, not a folder": (2, "it is a file, not a folder"),
    "a folder that is no bundle": (2, "has no SHA256SUMS: it is not a nimrunbook bundle"),
    "no public key": (2, "No public key was given"),
    "a public key that is not text": (2, "Cannot read the public key"),
    "a public key that is not one": (2, "is not an OpenSSH public key"),
    "bundle.json not UTF-8": (1, "bundle.json is not UTF-8 text"),
    "bundle.json not JSON": (1, "bundle.json is not JSON"),
    "SHA256SUMS garbage": (1, "SHA256SUMS line 1 is not '<sha256>  <path>'"),
    "SHA256SUMS not UTF-8": (1, "SHA256SUMS is not UTF-8 text"),
    "import --workers 0": (2, "0 is not 1 or more"),
    "import staging inside the bundle": (2, "lies inside the bundle"),
    "create --part-size -5": (2, "-5 is not 1 or more"),
    "create --have not JSON": (2, "it is a binary file, not text"),
    "create --have not an inventory": (2, "is not an inventory written by `nimrunbook bundle inventory`"),
    "create into a file": (2, "it is a file, not a folder"),
}


def _run(arguments: list[str], capsys) -> tuple[int, str, str]:
    """The command line in this process (a subprocess costs seconds of imports per case); a traceback would fail
    the test as an exception."""
    try:
        code = main(["bundle", *arguments])
    except SystemExit as exit:  # argparse
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_ends_in_one_paragraph(case, media, tmp_path, capsys):
    code, words = CASES[case]
    returned, out, err = _run(_setup(case, media, tmp_path), capsys)
    assert returned == code, out + err
    assert words in out + err
    if code == 2:  # one paragraph, on one line
        assert len([line for line in err.splitlines() if "error:" in line]) == 1
    else:
        assert "Bundle verification: FAILED" in out


def test_a_process_ends_without_a_traceback(media, tmp_path):
    copy = _bundle_with(media, tmp_path, "bundle.json", b"\xff\xfe{")
    result = subprocess.run(
        [sys.executable, "-m", "nimrunbook.cli", "bundle", "verify", str(copy), "--allow-unsigned"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr and "FAILED" in result.stdout
