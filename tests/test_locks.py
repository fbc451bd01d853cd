"""Exclusive locks between real processes: refused with who holds them, gone when the holder dies."""

import re
import signal
import subprocess
import sys

import pytest

from nimrunbook.errors import LockedError
from nimrunbook.locks import file_lock, folder_lock

HOLDER = """
import sys, time
from nimrunbook.locks import file_lock, folder_lock
lock = folder_lock if sys.argv[1] == "folder" else file_lock
with lock(sys.argv[2], "writing"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder():
    """Start another process holding a lock; it is killed (SIGKILL) at the end."""
    started = []

    def start(kind: str, target) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, kind, str(target)], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "held"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_second_writer_of_a_folder_is_refused_with_the_holders_pid_and_start(holder, tmp_path):
    process = holder("folder", tmp_path)
    with pytest.raises(LockedError) as caught, folder_lock(tmp_path, "writing a bundle into"):
        pass
    message = str(caught.value)
    assert f"Another nimrunbook process (pid {process.pid}, started at 20" in message
    assert f"is writing a bundle into {tmp_path}." in message and f"kill {process.pid}" in message
    assert re.search(r"started at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", message)
    assert "\n" not in message and not list(tmp_path.iterdir())  # one paragraph; nothing left in the folder


def test_the_lock_goes_with_its_holder_even_on_sigkill(holder, tmp_path):
    process = holder("folder", tmp_path)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with folder_lock(tmp_path, "writing"):
        pass


def test_a_file_is_locked_through_a_lock_file_beside_it(holder, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("a: 1\n")
    process = holder("file", values)
    assert (tmp_path / "values.yaml.lock").exists()
    with (
        pytest.raises(LockedError, match=f"pid {process.pid}.*is merging into {values}"),
        file_lock(values, "merging into"),
    ):
        pass
    with folder_lock(tmp_path, "writing"):  # the folder is another lock
        pass


def test_locks_are_reentrant_within_a_process_and_released_after(tmp_path):
    with folder_lock(tmp_path, "writing"), folder_lock(tmp_path, "writing"):
        pass
    probe = subprocess.run(
        [sys.executable, "-c", HOLDER.replace("time.sleep(600)", "pass"), "folder", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0 and "held" in probe.stdout
