"""Nothing with a secret in it outlives a run: a download and a mirror killed (SIGTERM, SIGKILL) as a user or a
scheduler kills them, through the real command line, with the real Docker engine and the real skopeo."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import FAKE_NGC_KEY, VLLM

from nimrunbook import leftovers
from nimrunbook.errors import NimRunbookError
from nimrunbook.leftovers import OWNER_LABEL, TOOL_LABEL, Owner, private_dir, secret_file, sweep_stale_files

SLOW_TAG = "nimrunbook-standin-slow:leftovers"


def _cli(args: list[str], private: Path, **popen) -> subprocess.Popen:
    environment = {**os.environ, "NGC_API_KEY": FAKE_NGC_KEY, leftovers.PRIVATE_DIR_VARIABLE: str(private)}
    return subprocess.Popen(
        [sys.executable, "-m", "nimrunbook.cli", *args],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the test can reap what a SIGKILL orphans
        **popen,
    )


def _wait_for(condition, what: str, process: subprocess.Popen, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if process.poll() is not None:
            raise AssertionError(f"the command ended before {what}: {process.communicate()}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no {what} within {seconds} s: {process.communicate()}")


def _assert_one_paragraph(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if not line[:4].isdigit()]  # log lines start with the year
    assert lines and all(line.strip() for line in lines), stderr
    assert "Traceback" not in stderr and FAKE_NGC_KEY not in stderr, stderr


# -- secret files --------------------------------------------------------------------------------


def test_a_secret_file_is_private_and_gone_afterwards(tmp_path, monkeypatch):
    monkeypatch.setenv(leftovers.PRIVATE_DIR_VARIABLE, str(tmp_path / "private"))
    with secret_file("auth", b'{"auths": {}}', ".json") as name:
        assert Path(name).parent == private_dir() == tmp_path / "private"
        assert (Path(name).stat().st_mode & 0o777, private_dir().stat().st_mode & 0o777) == (0o600, 0o700)
        assert Path(name).read_bytes() == b'{"auths": {}}'
    assert not Path(name).exists()


def test_only_files_of_dead_runs_are_swept(tmp_path):
    me = Owner.me()
    mine = tmp_path / f"auth-{me.pid}-{me.started}-aaaa.json"
    dead = tmp_path / f"auth-{2**22 + 1}-12345-bbbb.json"  # above pid_max's default: never running
    reused = tmp_path / f"auth-{me.pid}-1-cccc.json"  # our pid, another start: an earlier process
    other = tmp_path / "notes.txt"
    for path in (mine, dead, reused, other):
        path.write_text("x")
    assert sorted(sweep_stale_files(tmp_path)) == sorted([dead, reused])
    assert mine.exists() and other.exists()


def test_a_private_folder_that_is_not_ours_is_refused(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setenv(leftovers.PRIVATE_DIR_VARIABLE, str(tmp_path / "link"))
    with pytest.raises(NimRunbookError, match="is not a folder of this user"):
        private_dir()


# -- a killed download ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_image(docker, standin_image) -> str:
    """The stand-in, writing one file every 30 s: a download that is still running when the test kills it."""
    dockerfile = f"FROM {standin_image}\nENV NIM_STANDIN_SECONDS_PER_FILE=30 NIM_STANDIN_WEIGHT_BYTES=4096\n"
    docker.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=SLOW_TAG, rm=True)
    yield SLOW_TAG
    with contextlib.suppress(Exception):  # still used by a container another test left: not ours to force
        docker.images.remove(SLOW_TAG)


def _containers_of(docker, pid: int) -> list:
    """The containers the command with ``pid`` started (the engine is shared: never look at others')."""
    return [
        c
        for c in docker.containers.list(all=True, filters={"label": OWNER_LABEL})
        if (Owner.from_mark(c.labels[OWNER_LABEL]) or Owner("", "", 0, "")).pid == pid
    ]


def _start_download(slow_image: str, cache: Path, private: Path, docker) -> tuple[subprocess.Popen, list]:
    args = ["nim", "download", slow_image, "--profiles", VLLM, "--cache", str(cache), "--network", "none"]
    args += ["--size-gb", "0.001"]  # the stand-in's weights are tiny; the estimate is for a real 1B model
    process = _cli(args, private)

    def running() -> list:
        return [
            c
            for c in _containers_of(docker, process.pid)
            if c.labels.get(TOOL_LABEL) == "download-to-cache" and c.status == "running"
        ]

    return process, _wait_for(running, "a running download container", process)


def test_a_terminated_download_removes_its_container(docker, slow_image, tmp_path):
    process, containers = _start_download(slow_image, tmp_path / "cache", tmp_path / "private", docker)
    assert any("NGC_API_KEY=" + FAKE_NGC_KEY in (c.attrs["Config"]["Env"] or []) for c in containers)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "nimrunbook: interrupted (SIGTERM)" in err
    _assert_one_paragraph(err)
    assert _containers_of(docker, process.pid) == []


def test_a_killed_download_leaves_a_container_the_next_run_removes(docker, slow_image, standin_image, tmp_path):
    process, _ = _start_download(slow_image, tmp_path / "cache", tmp_path / "private", docker)
    process.kill()
    process.wait(timeout=30)
    left = _containers_of(docker, process.pid)
    assert left, "SIGKILL runs no cleanup: the container is still there"
    try:
        listing = _cli(["nim", "list-profiles", standin_image], tmp_path / "private")
        out, err = listing.communicate(timeout=120)
        assert listing.returncode == 0, err
        assert f"removed container {left[0].short_id}" in err and f"(pid {process.pid})" in err, err
        assert _containers_of(docker, process.pid) == []
    finally:
        for container in _containers_of(docker, process.pid):
            container.remove(force=True)


# -- a killed mirror -----------------------------------------------------------------------------


class BlackHole:
    """A "registry" on loopback that accepts connections and never answers: skopeo waits on it for ever."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


@pytest.fixture
def black_hole():
    hole = BlackHole()
    yield hole
    hole.close()


def _mirror(port: int, private: Path) -> subprocess.Popen:
    host = f"127.0.0.1:{port}"
    return _cli(
        ["images", "mirror", f"{host}/nim/meta/x:1.0", "--to", "127.0.0.1:9", "--backend", "skopeo"]
        + ["--registry-insecure", host, "--registry-insecure", "127.0.0.1:9"],
        private,
    )


def _skopeo_of(port: int) -> list[int]:
    """skopeo processes talking to the black hole (by their command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if (
                entry.name.isdigit()
                and entry.joinpath("comm").read_text().strip() == "skopeo"
                and f"127.0.0.1:{port}/" in entry.joinpath("cmdline").read_bytes().decode()
            ):
                found.append(int(entry.name))
    return found


def _auth_files(private: Path) -> list[Path]:
    return sorted(private.glob("auth-*")) if private.exists() else []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stopped_mirror_removes_its_auth_file_and_stops_skopeo(signum, black_hole, tmp_path):
    private = tmp_path / "private"
    process = _mirror(black_hole.port, private)
    _wait_for(lambda: _auth_files(private) and _skopeo_of(black_hole.port), "skopeo with its auth file", process)
    process.send_signal(signum)  # to the command alone, as `kill` does: not to skopeo beside it
    out, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert f"nimrunbook: interrupted ({signum.name})" in err
    _assert_one_paragraph(err)
    assert _auth_files(private) == []
    assert _wait_gone(black_hole.port), "skopeo outlived the command"


def _wait_gone(port: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _skopeo_of(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _skopeo_of(port)


def test_a_killed_mirror_leaves_an_auth_file_the_next_run_removes(black_hole, tmp_path):
    private = tmp_path / "private"
    process = _mirror(black_hole.port, private)
    _wait_for(lambda: _auth_files(private) and _skopeo_of(black_hole.port), "skopeo with its auth file", process)
    process.kill()
    process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the orphaned skopeo, which SIGKILL did not reach
    left = _auth_files(private)
    assert len(left) == 1 and left[0].stat().st_mode & 0o777 == 0o600
    refused = socket.create_server(("127.0.0.1", 0))
    port = refused.getsockname()[1]
    refused.close()  # nothing listens there now: the next mirror fails fast
    again = _mirror(port, private)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 1, err
    assert f"removed {left[0]}, a credentials file an earlier nimrunbook run (pid {process.pid})" in err, err
    assert _auth_files(private) == []
