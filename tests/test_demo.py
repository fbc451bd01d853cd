"""`nimrunbook demo` as a new user runs it: one command, both paths, reports at the end."""

import json
import subprocess
import sys


def test_demo_runs_both_paths_and_cleans_up(docker, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nimrunbook.cli", "demo", "--dir", str(tmp_path / "demo"), "--weight-bytes", "65536"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Demo finished" in result.stdout and "06_verify_and_import_bundle (inside): ok" in result.stdout
    for run in ("run-outside", "run-inside"):
        record = json.loads((tmp_path / "demo" / run / "run.json").read_text())
        assert all(step["status"] == "ok" for step in record["steps"].values())
        assert (tmp_path / "demo" / run / "index.html").exists()
    assert (tmp_path / "demo/index.html").exists()
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True).stdout.split()
    assert leftovers == []  # registries, moto and nginx were stopped
