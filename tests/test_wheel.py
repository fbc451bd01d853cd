"""The wheel is the product: built with `python -m build`, installed into a fresh virtual environment outside
the checkout, it has the CLI and the notebooks, and runs a notebook from a folder that `nimrunbook init` wrote.

The fresh venv gets the wheel by pip, and its dependencies from this test venv (a .pth line, and JUPYTER_PATH for
their data files such as nbconvert's templates), so that the test does not spend minutes resolving ~100 packages
from the index; `pip check` proves that the wheel's declared requirements are met there, and CI's demo run
installs the same requirements from scratch.
"""

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """One wheel per session, built as a release would build it (sdist first, then the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("nimrunbook-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv outside the checkout: the wheel installed by pip; dependencies seen from this test venv."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin/python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True
    ).stdout.strip()
    # A path line only: the test venv's own .pth files (its editable nimrunbook) are not processed from there.
    (Path(site) / "nimrunbook-test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    for step in (["install", "-q", "--no-deps", str(wheel)], ["check"]):
        result = subprocess.run([python, "-m", "pip", *step], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


def test_the_wheel_carries_every_package_the_notebooks_and_the_standin(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "nimrunbook").rglob("__init__.py")}
    assert {f"{package}/__init__.py" for package in packages} <= names
    notebooks = {f"nimrunbook/notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert len(notebooks) == 10 and notebooks <= names
    assert "nimrunbook/standin/bin/download-to-cache" in names
    assert not any(name.startswith(("tests/", "notebooks/")) for name in names)


def test_installed_wheel_runs_a_notebook_from_an_init_folder(installed, docker, tmp_path):
    env = {**os.environ, "PATH": f"{installed / 'bin'}:{os.environ['PATH']}"}  # DOCKER_HOST as the docker fixture's
    env["JUPYTER_PATH"] = str(Path(sys.prefix) / "share/jupyter")  # the dependencies' data files, see above
    env.pop("PYTHONPATH", None)
    which = "import nimrunbook; print(nimrunbook.__file__)"
    python = str(installed / "bin/python")
    imported = subprocess.run([python, "-c", which], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert imported.stdout.startswith(str(installed)), imported  # the wheel's nimrunbook, not the checkout's

    params = tmp_path / "site-params.yaml"
    params.write_text("images: []  # nothing to pull: this checks the engine, the disk and the tools\n")
    site = tmp_path / "site"
    init = subprocess.run(
        ["nimrunbook", "init", str(site), "-f", str(params)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert init.returncode == 0, init.stderr
    run = subprocess.run(
        ["nimrunbook", "run", "00_preflight", "-f", "params.yaml", "--run-dir", "runs/wheel"],
        capture_output=True,
        text=True,
        env=env,
        cwd=site,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    executed = json.loads((site / "runs/wheel/notebooks/00_preflight.ipynb").read_text())
    source = executed["metadata"]["papermill"]["input_path"]
    assert source.startswith(str(installed)) and "/site-packages/nimrunbook/notebooks/" in source
    assert (site / "runs/wheel/reports/00_preflight.html").exists()
    assert json.loads((site / "runs/wheel/run.json").read_text())["steps"]["00_preflight"]["status"] == "ok"
