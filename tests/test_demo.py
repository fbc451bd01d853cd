"""`nimrunbook demo` as a new user runs it: one command, both paths, reports at the end; and killed half-way,
it leaves no process and no listening port behind."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nimrunbook.sandbox.ports import listening_ports, port_open


def test_demo_runs_both_paths_and_cleans_up(docker, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nimrunbook.cli", "demo", "--dir", str(tmp_path / "demo"), "--weight-bytes", "65536"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Demo finished" in result.stdout and "06_verify_and_import_bundle (inside): ok" in result.stdout
    assert "09_smoke_test (inside): ok" in result.stdout  # the inside path ends with the NIM reading its profiles
    for run in ("run-outside", "run-inside"):
        record = json.loads((tmp_path / "demo" / run / "run.json").read_text())
        assert all(step["status"] == "ok" for step in record["steps"].values())
        assert (tmp_path / "demo" / run / "index.html").exists()
        # rclone has no per-key policies: the demo's read key can write, and the check says so (see READ_ONLY_NOTE)
        assert record["credentials"]["ok"] and any("WRITE" in w for w in record["credentials"]["warnings"])
    assert (tmp_path / "demo/index.html").exists()
    inside = json.loads((tmp_path / "demo/run-inside/run.json").read_text())
    smoke = inside["smoke_test"]
    assert smoke["ok"] and list(smoke["images"]) == [inside["mirror"]["images"][0]["source"]]
    (checked,) = smoke["images"].values()
    assert checked["digest"] and checked["bucket"] == "nim-demo-inside" and checked["profiles"]
    assert all(p["pulled"] and p["fetched"] and p["identical"] and not p["cause"] for p in checked["profiles"])
    assert checked["credentials"].startswith("profile reader") and "NGC_API_KEY" not in checked["environment"]
    report = (tmp_path / "demo/run-inside/reports/09_smoke_test.html").read_text()
    assert "Smoke test PASSED" in report and "identical" in report
    assert (tmp_path / "demo/aws-credentials").stat().st_mode & 0o777 == 0o600
    assert json.loads((tmp_path / "demo/services.json").read_text()) == []
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout.split()
    assert leftovers == []  # registries and the S3 servers were stopped


# -- killed half-way -------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _process_tree(root: int) -> set[int]:
    """``root`` and every process below it, by parent pid."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {root}, True
    while grew:
        below = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= below
        grew = bool(below)
    return {pid for pid in tree if _alive(pid)}


def _wait_for(check, what: str, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert process.poll() is None, f"the demo ended before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def _services_running(demo: Path) -> bool:
    try:
        return any(service["pids"] for service in json.loads((demo / "services.json").read_text()))
    except (OSError, ValueError):
        return False


@pytest.mark.parametrize(
    ("signum", "moment"),
    [
        (signal.SIGTERM, "start-up"),
        (signal.SIGTERM, "notebook"),
        (signal.SIGINT, "notebook"),
        (signal.SIGKILL, "notebook"),
    ],
    ids=[
        "sigterm-during-start-up",
        "sigterm-during-a-notebook",
        "sigint-during-a-notebook",
        "sigkill-during-a-notebook",
    ],
)
def test_a_killed_demo_leaves_nothing_running(docker, tmp_path, signum, moment):
    demo, log = tmp_path / "demo", tmp_path / "demo.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "nimrunbook.cli", "demo", "--dir", str(demo), "--weight-bytes", "4096"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the signal goes to the demo alone, not to a terminal's process group
        )
    try:
        if moment == "start-up":
            _wait_for(lambda: _services_running(demo), "a sandbox service", process, log)
        else:
            executed = demo / "run-outside/notebooks/01_plan_profiles.ipynb"
            _wait_for(executed.exists, "the second notebook", process, log)
        tree = _process_tree(process.pid)
        ports = listening_ports(tree)
        assert len(tree) > 1 and ports, "the demo should be running services by now"
        process.send_signal(signum)
        returncode = process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    said = log.read_text()
    if signum == signal.SIGKILL:  # no chance to clean up: the services go by the parent-death signal
        assert returncode == -signum
    else:
        assert returncode == 128 + signum, said[-3000:]
        assert "SIGTERM: stopping the sandbox's services" in said if signum == signal.SIGTERM else "interrupted" in said
    deadline = time.monotonic() + 30  # a Jupyter kernel notices its parent is gone within a few seconds
    while any(_alive(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:200] for pid in tree if _alive(pid)}
    assert left == {}, f"still running after {signal.Signals(signum).name} during {moment}: {left}"
    assert [port for port in sorted(ports) if port_open(port)] == []
