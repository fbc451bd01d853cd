"""A person's path through JupyterLab in a prepared run folder, mixed with `nimrunbook run` as the issue's user
did it: `nimrunbook init` prepares the folder from one params file; `nimrunbook lab` serves it; in JupyterLab 01
runs, the picker's LoRA filter narrows the list, a profile the rules skipped is ticked and one they chose is
unticked, the selection is confirmed and the notebook saved; 03 runs unattended (`nimrunbook run`, same folder,
same params file); 04 runs in JupyterLab again; `nimrunbook report` then reports every step however it ran.

Real JupyterLab server (started by `nimrunbook lab`), real kernels, the real Docker engine and stand-in NIM
image, S3 (moto) behind TLS, headless Chromium driven by Playwright (executable_path=/usr/bin/chromium, no
browser download)."""

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import FAKE_NGC_KEY

from nimrunbook.sandbox.ports import free_port, port_open, stop_process, wait_until

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR = "alice"
BUCKET = "nim-lab"


def _record(run: Path) -> dict:
    return json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {"steps": {}}


def _attempts(run: Path, step: str) -> list[dict]:
    return _record(run)["steps"].get(step, {}).get("attempts", [])


def _until(check, what: str, page, folder: Path, timeout: float = 180) -> None:
    """Wait for ``check()``; on a timeout keep a screenshot to look at, then fail."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            page.screenshot(path=str(folder / "failed.png"), full_page=True)
            raise AssertionError(f"no {what} within {timeout} s; see {folder / 'failed.png'} and {folder / 'lab.log'}")
        time.sleep(0.5)


@pytest.fixture
def prepared(tmp_path, ngc_image, s3, docker):
    """A run folder prepared by `nimrunbook init` from one params file, and `nimrunbook lab` serving it."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI")
        pytest.skip("chromium is not installed")
    pytest.importorskip("playwright")
    admin_id, admin_secret = s3.credentials["admin"]
    environment = {
        **os.environ,
        "NGC_API_KEY": FAKE_NGC_KEY,
        "AWS_ACCESS_KEY_ID": admin_id,
        "AWS_SECRET_ACCESS_KEY": admin_secret,
    }
    site = tmp_path / "site"
    site.mkdir()
    (site / "params.yaml").write_text(
        yaml.safe_dump(
            {
                "operator": OPERATOR,
                "change_id": "CHG-13",
                "images": [ngc_image],
                "gpus": "L40S, A10G",
                "lora": False,
                "cache_dir": "nim-cache",  # relative to this file: the same cache in JupyterLab and on the command line
                "network_mode": "none",
                "container_environment": {"NIM_STANDIN_WEIGHT_BYTES": "65536"},
                "download_size_gb": 0.01,  # tiny stand-in weights, not a real 1B model's estimate
                "s3_bucket": BUCKET,
                "s3_endpoint_url": s3.endpoint_url,
                "s3_ca_bundle": str(s3.certs.ca_bundle),
            }
        )
    )
    run = tmp_path / "run"
    cli = [sys.executable, "-m", "nimrunbook.cli"]
    subprocess.run([*cli, "init", str(run), "-f", str(site / "params.yaml")], check=True, env=environment)
    port, token = free_port(), secrets.token_hex(16)
    with open(tmp_path / "lab.log", "wb") as log:
        lab = subprocess.Popen(
            [*cli, "lab", str(run), "--no-browser", "--ip", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**environment, "JUPYTER_TOKEN": token},
        )
    try:
        wait_until(lambda: port_open(port), "JupyterLab", timeout=120)
        url = f"http://127.0.0.1:{port}/lab/tree/notebooks/{{}}?token={token}"
        yield {"url": url, "run": run, "tmp": tmp_path, "env": environment}
    finally:
        stop_process(lab)


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel" may be asked once
    try:
        accept.wait_for(timeout=10_000)
        accept.click()
    except Exception:  # noqa: BLE001 - no dialog this time
        pass
    page.wait_for_function("document.body.innerText.includes('| Idle')", timeout=120_000)


def _run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def _save(page, path: Path) -> None:
    before = path.stat().st_mtime
    page.locator(".jp-Notebook:visible").first.click(position={"x": 5, "y": 5})
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime == before and time.monotonic() < deadline:
        time.sleep(0.3)
    assert '"execution_count": 1' in path.read_text(), f"{path.name} was not saved after running"


def test_a_prepared_run_folder_through_jupyterlab_and_the_command_line(prepared):
    from playwright.sync_api import sync_playwright

    run, folder, environment = prepared["run"], prepared["tmp"], prepared["env"]
    cli = [sys.executable, "-m", "nimrunbook.cli"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})

        # 01 in JupyterLab: the notebook is prepared; Run All runs it with the params file's values
        _open(page, prepared["url"].format("01_plan_profiles.ipynb"))
        _run_all(page)
        _until(lambda: [a["status"] for a in _attempts(run, "01_plan_profiles")] == ["ok"], "01 done", page, folder)
        every = _record(run)["profiles"][next(iter(_record(run)["profiles"]))]
        loras = [e for e in every if "lora" in e["name"]]
        assert loras and all(e["rules"] == "skipped" for e in loras)  # lora: false in the params file

        page.locator(".widget-dropdown", has_text="LoRA").locator("select").select_option("yes")
        visible = page.locator(".widget-checkbox input[type=checkbox]:visible")
        _until(lambda: visible.count() == len(loras), "only the LoRA rows shown", page, folder, timeout=30)
        visible.first.check()  # a profile the rules skipped
        page.locator(".widget-dropdown", has_text="LoRA").locator("select").select_option("all")
        _until(lambda: visible.count() == len(every), "every row shown again", page, folder, timeout=30)
        visible.first.uncheck()  # the first row, vllm-bf16-tp1-pp1, chosen by the rules
        confirm = page.locator(".jp-CodeCell", has_text="confirm_selection").first
        confirm.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        _until(lambda: len(_attempts(run, "01_plan_profiles")) == 2, "the confirmed selection", page, folder)
        _until(lambda: _attempts(run, "01_plan_profiles")[-1]["status"] == "ok", "01 done again", page, folder)
        _save(page, run / "notebooks/01_plan_profiles.ipynb")
        page.screenshot(path=str(folder / "jupyterlab-picker.png"), full_page=False)

        # 03 unattended, in the same run folder, from the same params file (nimrunbook run reads it)
        downloaded = subprocess.run(
            [*cli, "run", "03_download_profiles", "--run-dir", str(run)],
            capture_output=True,
            text=True,
            env=environment,
        )
        assert downloaded.returncode == 0, downloaded.stdout[-3000:] + downloaded.stderr[-3000:]
        said = downloaded.stdout + downloaded.stderr
        assert f"parameters from {run / 'params.yaml'}" in said and "next: " in said
        assert "without encryption" not in said and "KeyboardInterrupt" not in said and "Input Notebook" not in said
        assert all(len(re.findall(r"\d\d:\d\d:\d\d", line)) <= 1 for line in said.splitlines())  # one timestamp

        # 04 in JupyterLab
        _open(page, prepared["url"].format("04_publish_profiles.ipynb"))
        _run_all(page)
        _until(lambda: [a["status"] for a in _attempts(run, "04_publish_profiles")] == ["ok"], "04 done", page, folder)
        _save(page, run / "notebooks/04_publish_profiles.ipynb")
        browser.close()

    reported = subprocess.run([*cli, "report", str(run)], capture_output=True, text=True, env=environment)
    assert reported.returncode == 0, reported.stderr
    for step in ("01_plan_profiles", "03_download_profiles", "04_publish_profiles"):
        assert (run / "reports" / f"{step}.html").exists(), f"{step} has no report"
    index = (run / "index.html").read_text()
    assert "00_preflight" in index and "not run" in index  # the steps not run are named too

    record = _record(run)
    selected = {e["id"]: e for e in record["selection"][next(iter(record["selection"]))]}
    candidates = {e["id"]: e for e in record["profiles"][next(iter(record["profiles"]))]}
    ticked = [e for e in candidates.values() if e["override"] and e["final"] == "selected"]
    unticked = [e for e in candidates.values() if e["override"] and e["final"] == "not selected"]
    assert len(ticked) == 1 and "lora" in ticked[0]["name"] and ticked[0]["rules"] == "skipped"
    assert len(unticked) == 1 and unticked[0]["name"] == "vllm-bf16-tp1-pp1" and unticked[0]["id"] not in selected
    for entry in (*ticked, *unticked):
        assert entry["override"]["by"] == OPERATOR and entry["override"]["via"] == "picker" and entry["override"]["at"]
    assert selected[ticked[0]["id"]]["reason"].startswith(f"ticked by {OPERATOR} at ")
    published = record["publish"]["images"]
    assert all(entry["failed"] == 0 for entry in published.values())

    report = (run / "reports/01_plan_profiles.html").read_text()
    header = report[report.index('class="nimrunbook-header"') :]
    for fact in ("01_plan_profiles: OK", OPERATOR, "CHG-13", "Parameters as used", "L40S, A10G", "attempt</th><td>2"):
        assert fact in header, fact
    assert "(continues attempt 1" in header
    assert "profiles selected" in report and "Final selection" in report
    lab_log = (folder / "lab.log").read_text()
    assert "without encryption" not in lab_log
