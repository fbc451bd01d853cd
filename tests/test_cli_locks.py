"""A second writer of what a command writes is refused at once, naming the first, before it does any work:
the processed profiles folder, the NIM cache a download fills, the export folder of images. The first writer
is another real process holding the same lock the command takes (a real `profiles process` is over too fast
to be caught in the middle)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import FAKE_NGC_KEY, VLLM

from nimrunbook.cli import main
from nimrunbook.nim import read_manifest

HOLDER = """
import sys, time
from nimrunbook.locks import folder_lock
with folder_lock(sys.argv[1], "writing"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def first_writer():
    """Another process writing into a folder (holding its lock); killed at the end."""
    started: list[subprocess.Popen] = []

    def start(folder) -> subprocess.Popen:
        folder.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def _refused(argv: list[str], holder: subprocess.Popen, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("nimrunbook: error: Another nimrunbook process (pid ") and f"pid {holder.pid}," in err, err
    assert "Traceback" not in err
    return err


def test_two_processings_into_one_folder(first_writer, docker, standin_image, downloaded_cache, tmp_path, capsys):
    manifest = tmp_path / "model_manifest.yaml"
    manifest.write_text(read_manifest(docker, standin_image)[1])
    destination = tmp_path / "processed"
    holder = first_writer(destination)
    argv = ["profiles", "process", "--manifest", str(manifest), "--cache", str(downloaded_cache)]
    err = _refused([*argv, "--profiles", VLLM, "--dest-dir", str(destination)], holder, capsys)
    assert f"is processing profiles into {destination}" in err
    assert not (destination / "objects").exists(), "the second writer wrote before it was refused"


def test_two_downloads_into_one_cache(first_writer, docker, standin_image, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NGC_API_KEY", FAKE_NGC_KEY)
    cache = tmp_path / "cache"
    holder = first_writer(cache)
    err = _refused(["nim", "download", standin_image, "--profiles", VLLM, "--cache", str(cache)], holder, capsys)
    assert "downloading profiles into" in err and FAKE_NGC_KEY not in err
    assert list(cache.iterdir()) == [], "the second download wrote before it was refused"


def test_two_exports_into_one_folder(first_writer, tmp_path, capsys):
    folder = tmp_path / "export"
    holder = first_writer(folder)
    err = _refused(["images", "export", "registry.example/nim/x:1.0", "--dir", str(folder)], holder, capsys)
    assert "exporting images into" in err
    assert list(folder.iterdir()) == []
