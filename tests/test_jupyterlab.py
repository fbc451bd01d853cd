"""A person's path through JupyterLab: run the planning notebook, untick a profile in the picker, see
the selected ids and the run record change. Real JupyterLab server, real kernel, headless Chromium
driven by Playwright (executable_path=/usr/bin/chromium, no browser download)."""

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import papermill
import pytest

from nimrunbook.reports.execute import find_notebook
from nimrunbook.sandbox.ports import free_port, port_open, wait_until

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


@pytest.fixture
def lab(tmp_path, ngc_image):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("chromium missing in CI")
        pytest.skip("chromium is not installed")
    pytest.importorskip("playwright")
    root = tmp_path / "lab"
    root.mkdir()
    run_dir = tmp_path / "run"
    papermill.execute_notebook(
        str(find_notebook("01_plan_profiles")),
        str(root / "01_plan_profiles.ipynb"),
        prepare_only=True,
        parameters={
            "run_dir": str(run_dir),
            "progress": "widget",
            "images": [ngc_image],
            "gpus": "L40S, A10G",
            "lora": False,
        },
    )
    port, token = free_port(), secrets.token_hex(16)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--allow-root",
            f"--ServerApp.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        stdout=open(tmp_path / "lab.log", "wb"),  # noqa: SIM115 - the server outlives this call; closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: port_open(port), "JupyterLab", timeout=90)
        yield f"http://127.0.0.1:{port}/lab/tree/01_plan_profiles.ipynb?token={token}", run_dir, tmp_path
    finally:
        server.terminate()
        server.wait(timeout=30)


def _selection(run_dir: Path) -> list[str]:
    record = json.loads((run_dir / "run.json").read_text())
    return [entry["id"] for entries in record.get("selection", {}).values() for entry in entries]


def test_untick_a_profile_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    url, run_dir, tmp_path = lab
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.wait_for_selector(".jp-Notebook", timeout=90_000)
        accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel" may be asked once
        try:
            accept.wait_for(timeout=10_000)
            accept.click()
        except Exception:  # noqa: BLE001 - no dialog this time
            pass
        page.wait_for_function("document.body.innerText.includes('| Idle')", timeout=90_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        boxes = page.locator(".widget-checkbox input[type=checkbox]")
        try:
            boxes.first.wait_for(timeout=120_000)
        except Exception:  # noqa: BLE001 - any failure here: keep a screenshot, then fail
            page.screenshot(path=str(tmp_path / "failed.png"), full_page=True)
            raise AssertionError(f"no picker; see {tmp_path / 'failed.png'} and {tmp_path / 'lab.log'}") from None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (run_dir / "run.json").exists() or not _selection(run_dir):
            time.sleep(0.5)
        before = _selection(run_dir)
        assert len(before) == 5
        ids = page.locator(".widget-textarea textarea")
        assert before[0] in ids.input_value()
        boxes.first.uncheck()  # the first row: vllm-bf16-tp1-pp1, ticked by the rules
        page.wait_for_function(
            "id => !document.querySelector('.widget-textarea textarea').value.includes(id)", arg=before[0]
        )
        assert "4 profiles selected" in page.locator(".widget-html", has_text="profiles selected").first.inner_text()
        confirm = page.locator(".jp-CodeCell", has_text="confirm_selection").first
        confirm.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_selection(run_dir)) != 4:
            time.sleep(0.5)
        assert _selection(run_dir) == before[1:]
        page.locator(".widget-checkbox").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "jupyterlab-picker.png"), full_page=False)
        browser.close()
    assert (tmp_path / "jupyterlab-picker.png").stat().st_size > 10_000
