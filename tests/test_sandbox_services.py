"""Services stopped on every way out: the group, SIGTERM turned into an unwinding exit, and the kernel's
parent-death signal for a starter that is killed outright."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nimrunbook.sandbox.ports import launch, listening_ports, stop_process, wait_for_port
from nimrunbook.sandbox.registry import LocalRegistry
from nimrunbook.sandbox.services import ServiceGroup, Terminated, terminate_gracefully


class Broken:
    """A service whose start fails after its process is up, and whose stop may fail."""

    def __init__(self, tmp: Path, stop_fails: bool = False) -> None:
        self.process: subprocess.Popen | None = None
        self.tmp, self.stop_fails = tmp, stop_fails

    def start(self):
        self.process = launch(["sleep", "60"], self.tmp / "sleep.log")
        raise TimeoutError("did not come up")

    def stop(self) -> None:
        stop_process(self.process)
        if self.stop_fails:
            raise RuntimeError("will not stop")

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] if self.process and self.process.poll() is None else []

    @property
    def ports(self) -> list[int]:
        return []


def test_a_service_that_fails_to_start_is_stopped_with_the_rest(tmp_path):
    group = ServiceGroup(tmp_path / "services.json")
    registry = group.start(LocalRegistry(root=tmp_path / "registry"))
    broken = Broken(tmp_path, stop_fails=True)
    with pytest.raises(TimeoutError):
        group.start(broken)
    recorded = json.loads((tmp_path / "services.json").read_text())
    assert [s["service"] for s in recorded] == ["LocalRegistry", "Broken"] and recorded[1]["pids"]
    assert registry.port in listening_ports(registry.pids)
    group.stop()  # the broken one's failing stop does not keep the registry running
    assert registry.pids == [] and broken.pids == []
    assert json.loads((tmp_path / "services.json").read_text()) == []


def test_sigterm_unwinds_so_that_finally_runs():
    stopped = []
    with pytest.raises(Terminated) as caught, terminate_gracefully():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        finally:
            stopped.append(True)
    assert stopped and caught.value.code == 128 + signal.SIGTERM and caught.value.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


STARTER = """
import sys, time
from pathlib import Path
from nimrunbook.sandbox.ports import launch
child = launch(["sleep", "60"], Path(sys.argv[1]), detach=sys.argv[2] == "detach")
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("mode", ["bound", "detach"])
def test_a_service_dies_with_its_starter_unless_detached(tmp_path, mode):
    starter = subprocess.Popen(
        [sys.executable, "-c", STARTER, str(tmp_path / "child.log"), mode], stdout=subprocess.PIPE, text=True
    )
    child = int(starter.stdout.readline())
    starter.kill()  # SIGKILL: no handler, no finally, no atexit
    starter.wait()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline and mode == "bound":
        time.sleep(0.1)
    alive = os.path.exists(f"/proc/{child}") and "Z" not in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]
    try:
        assert alive == (mode == "detach")
    finally:
        if alive:
            os.kill(child, signal.SIGKILL)


def test_waiting_for_a_port_someone_else_holds_is_not_fooled(tmp_path):
    registry = LocalRegistry(root=tmp_path / "registry").start()
    try:
        impostor = launch(["sleep", "60"], tmp_path / "sleep.log")
        with pytest.raises(TimeoutError):
            wait_for_port(impostor, registry.port, "sleep", tmp_path / "sleep.log", timeout=1)
        stop_process(impostor)
    finally:
        registry.stop()
