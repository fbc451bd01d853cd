"""The README's promises, and the notebooks' hygiene (they are reviewed as code)."""

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_readme_opens_with_the_demo_and_test_commands_and_ci_runs_both():
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert "scripts/test" in ci and any(line.endswith("&& scripts/demo)") for line in ci)  # the demo: a fresh clone
    assert readme.index("## Install from a wheel") < readme.index("## The problem")


def test_notebook_reference_in_the_readme_is_current():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts/readme_notebooks.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_expected_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [
        "00_preflight",
        "01_plan_profiles",
        "02_mirror_images",
        "03_download_profiles",
        "04_publish_profiles",
        "05_create_bundle",
        "06_verify_and_import_bundle",
        "07_configure_datarobot",
        "08_update_nim_tags",
        "09_smoke_test",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_clean_and_parameterised(path):
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    parameters = papermill.inspect_notebook(str(path))
    assert {"run_dir", "progress"} <= set(parameters)
    for name, spec in parameters.items():
        assert spec["inferred_type_name"] != "None" and spec["help"], (
            f"{name}: annotate its type and add a help comment"
        )
    for cell in code[1:]:
        assert len(cell.source.splitlines()) <= 6, "keep cells thin: call nimrunbook.runbook"
    assert notebook.cells[0].cell_type == "markdown" and "Before you go on" in notebook.cells[0].source
