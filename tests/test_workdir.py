"""`nimrunbook init` and `nimrunbook lab`: a run folder with params.yaml and every notebook prepared from it (not
executed), the params file checked like -p; the installed notebooks stay untouched templates; notebooks that have
run are never replaced."""

import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request

import nbformat
import pytest
import yaml

from nimrunbook.errors import InputError
from nimrunbook.reports.execute import templates
from nimrunbook.runbook import parameters as params
from nimrunbook.sandbox.ports import free_port, port_open, stop_process, wait_until
from nimrunbook.workdir import PARAMS_FILE, init_workdir


def _digests() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in templates()}


def _injected(path) -> str:
    notebook = nbformat.read(path, as_version=4)
    return next(c.source for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", []))


def test_init_prepares_the_notebooks_and_a_template_that_lists_every_parameter(tmp_path):
    before = _digests()
    run = tmp_path / "run"
    workdir = init_workdir(run)
    assert sorted(p.name for p in workdir.written) == sorted([*before, PARAMS_FILE])
    (run / "notebooks/01_plan_profiles.ipynb").write_text("{}")  # the user edits the copy ...
    assert _digests() == before  # ... and the template is untouched
    injected = _injected(run / "notebooks/00_preflight.ipynb")
    assert f'run_dir = "{run}"' in injected and 'progress = "widget"' in injected
    text = (run / PARAMS_FILE).read_text()
    assert yaml.safe_load(text) is None  # all commented out: the notebooks' defaults hold until a line is uncommented
    parameter_lines = [line[2:] for line in text.splitlines() if re.match(r"# [a-z_][a-z0-9_]*:", line)]
    values = yaml.safe_load("\n".join(parameter_lines))  # uncommented, the template is valid YAML
    for template in templates():
        for name in params.notebook_parameters(template):
            if name not in ("run_dir", "progress"):
                assert name in values, f"{name} of {template.stem} is missing from the template"
    assert values["gpus"] == "" and values["s3_insecure"] is False and values["registry_ca"] == {}
    assert "(02: 2; 04, 06: 8)" in text  # where notebooks' defaults differ, the template says so
    assert workdir.needs["01_plan_profiles"] == ["images", "gpus or nvidia_smi_file or node_labels_file or kubeconfig"]


def test_init_keeps_what_is_there_unless_forced_and_never_replaces_a_notebook_that_ran(tmp_path):
    init_workdir(tmp_path)
    (tmp_path / "notebooks/00_preflight.ipynb").write_text(
        nbformat.writes(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", execution_count=1)]))
    )
    (tmp_path / PARAMS_FILE).write_text("gpus: H100\n")
    again = init_workdir(tmp_path)
    assert (
        again.written == []
        and len(again.kept) == len(templates())
        and again.ran == [tmp_path / "notebooks/00_preflight.ipynb"]
    )
    forced = init_workdir(tmp_path, force=True)
    assert len(forced.written) == len(templates()) - 1  # every notebook that has not run; params.yaml kept
    assert 'gpus = "H100"' in _injected(tmp_path / "notebooks/01_plan_profiles.ipynb")  # from the folder's file
    assert "execution_count" in (tmp_path / "notebooks/00_preflight.ipynb").read_text()


def test_init_with_a_params_file(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    params_file = site / "params.yaml"
    params_file.write_text(
        "# our site\nimages: [nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5]\ngpus: L40S  # the cluster\n"
        "cache_dir: nim-cache\nlora: false\n"
    )
    run = tmp_path / "runs" / "one"
    workdir = init_workdir(run, params_file)
    copy = (run / PARAMS_FILE).read_text()
    assert "# our site" in copy and "# the cluster" in copy  # the file, comments kept ...
    assert yaml.safe_load(copy)["cache_dir"] == str(site / "nim-cache")  # ... its relative paths made absolute
    injected = _injected(run / "notebooks/01_plan_profiles.ipynb")
    assert 'gpus = "L40S"' in injected and "lora = False" in injected and "images = [" in injected
    assert f'cache_dir = "{site / "nim-cache"}"' in _injected(run / "notebooks/03_download_profiles.ipynb")
    assert "gpus" not in _injected(run / "notebooks/02_mirror_images.ipynb")  # each notebook takes its own
    assert "01_plan_profiles" not in workdir.needs and workdir.needs["02_mirror_images"] == ["internal_registry"]
    assert init_workdir(run, run / PARAMS_FILE).written == []  # its own file: kept
    other = tmp_path / "other.yaml"
    other.write_text("gpus: A10G\n")
    with pytest.raises(InputError, match="differs"):
        init_workdir(run, other)
    with pytest.raises(InputError, match="Cannot read"):
        init_workdir(tmp_path / "new", tmp_path / "missing.yaml")
    other.write_text("gpu: A10G\nlora: maybe\n")
    with pytest.raises(InputError) as refused:
        init_workdir(tmp_path / "new", other)
    assert "did you mean 'gpus'" in str(refused.value) and "lora must be true or false" in str(refused.value)
    assert not (tmp_path / "new").exists()  # nothing written before the params file was checked


def test_lab_serves_the_run_folder_and_says_when_it_allows_root(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    log = tmp_path / "lab.log"
    with open(log, "wb") as output:
        lab = subprocess.Popen(
            [sys.executable, "-m", "nimrunbook.cli", "lab", "--run-dir", str(tmp_path / "run"), "--no-browser"]
            + ["--port", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "JUPYTER_TOKEN": token},
        )
    try:
        wait_until(lambda: port_open(port), "JupyterLab", timeout=120)
        url = f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            names = sorted(item["name"] for item in json.load(answer)["content"])
        assert names == sorted(p.name for p in templates())
    finally:
        stop_process(lab)
    said = log.read_text()
    if os.geteuid() == 0:
        assert "starts with --allow-root" in said
    assert "JupyterLab on" in said and "Input Notebook" not in said
