"""The benchmark harness runs end to end on a tiny payload and writes its report.

A smoke test only: it times nothing and asserts no speed (benchmarks/run measures; tests never do).
The S3 section is left out: its clients (awscli, rclone) are installed by benchmarks/run, not by the tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.docker
def test_harness_runs_end_to_end_and_reports_every_section(docker, tmp_path):
    output = tmp_path / "benchmarks.md"
    command = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "--size-gb",
        "0.004",
        "--files",
        "50",
        "--only",
        "process,bundle,files,images,mirror",
        "--workdir",
        str(tmp_path / "work"),
        "--output",
        str(output),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = output.read_text()
    assert "This is a development run" in report  # a tiny payload is never mistaken for the report of record
    for heading in (
        "## Targets (issue 16)",
        "## This machine's limits",
        "### Process the cache into the NIM layout, cold",
        "### Bundle the profiles onto the media and verify them",
        "### Plan and process a profile of many small files",
        "### Image: export onto the media, import into the registry inside",
        "### Image: registry to registry (the network path)",
    ):
        assert heading in report
    assert "failed:" not in report
    assert report.count("| not measured |") == 1  # publish only: its S3 clients are left out here
    assert not (tmp_path / "work").exists()  # scratch removed
    assert not docker.images.list(name="nimrunbook/bench-image")  # and the test image, whatever names it got
