"""`nimrunbook init` and `nimrunbook lab`: a working folder of notebook copies and a commented params.yaml;
the installed notebooks stay untouched templates."""

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request

import papermill
import pytest
import yaml

from nimrunbook.errors import InputError
from nimrunbook.reports.execute import templates
from nimrunbook.sandbox.ports import free_port, port_open, stop_process, wait_until
from nimrunbook.workdir import PARAMS_FILE, init_workdir, params_template


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in templates()}


def test_init_writes_copies_and_a_template_that_lists_every_parameter(tmp_path):
    before = _digests()
    workdir = init_workdir(tmp_path / "site")
    assert sorted(p.name for p in workdir.written) == sorted([*before, PARAMS_FILE])
    (tmp_path / "site/01_plan_profiles.ipynb").write_text("{}")  # the user edits the copy ...
    assert _digests() == before  # ... and the template is untouched
    text = (tmp_path / "site" / PARAMS_FILE).read_text()
    assert yaml.safe_load(text) is None  # all commented out: the notebooks' defaults hold until a line is uncommented
    parameter_lines = [line[2:] for line in text.splitlines() if re.match(r"# [a-z_][a-z0-9_]*:", line)]
    values = yaml.safe_load("\n".join(parameter_lines))  # uncommented, the template is valid YAML
    for template in templates():
        for name in papermill.inspect_notebook(str(template)):
            if name not in ("run_dir", "progress"):
                assert name in values, f"{name} of {template.stem} is missing from the template"
    assert values["gpus"] == "L40S, A10G" and values["s3_insecure"] is False and values["registry_ca"] == {}
    assert "(02: 2; 04, 06: 8)" in text  # where notebooks' defaults differ, the template says so


def test_init_keeps_what_is_there_unless_forced(tmp_path):
    init_workdir(tmp_path)
    (tmp_path / "00_preflight.ipynb").write_text("my work")
    (tmp_path / PARAMS_FILE).write_text("gpus: H100\n")
    again = init_workdir(tmp_path)
    assert again.written == [] and (tmp_path / "00_preflight.ipynb").read_text() == "my work"
    forced = init_workdir(tmp_path, force=True)
    assert len(forced.written) == len(templates()) + 1
    assert (tmp_path / PARAMS_FILE).read_text() == params_template()


def test_init_with_a_params_file(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("images: []\ngpus: L40S\nbogus_name: 1\n")
    workdir = init_workdir(tmp_path / "site", params)
    assert (tmp_path / "site" / PARAMS_FILE).read_text() == params.read_text()
    assert workdir.unknown_parameters == ["bogus_name"]
    assert init_workdir(tmp_path / "site", tmp_path / "site" / PARAMS_FILE).written == []  # its own file: kept
    other = tmp_path / "other.yaml"
    other.write_text("gpus: A10G\n")
    with pytest.raises(InputError, match="differs"):
        init_workdir(tmp_path / "site", other)
    with pytest.raises(InputError, match="Cannot read"):
        init_workdir(tmp_path / "new", tmp_path / "missing.yaml")
    assert not (tmp_path / "new").exists()  # nothing written before the params file was read


def test_lab_serves_the_folder_and_says_when_it_allows_root(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "lab.log"
    with open(log, "wb") as output:
        lab = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nimrunbook.cli",
                "lab",
                str(tmp_path / "site"),
                "--no-browser",
                "--port",
                str(port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "JUPYTER_TOKEN": token},
        )
    try:
        wait_until(lambda: port_open(port), "JupyterLab", timeout=120)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents?token={token}", timeout=30) as answer:
            names = sorted(item["name"] for item in json.load(answer)["content"])
        assert names == sorted([*(p.name for p in templates()), PARAMS_FILE])
    finally:
        stop_process(lab)
    said = log.read_text()
    if os.geteuid() == 0:
        assert "starts with --allow-root" in said
    assert "JupyterLab on" in said and "Input Notebook" not in said
