"""``nimrunbook run``: execute a runbook notebook unattended with papermill, then write its report.

The executed copy is saved after every cell, so a crash still leaves a
partial record; a failure names the failing cell, marks the step failed in the
run record, and still produces the report (with papermill's error cell at the
top). Progress is set to log lines, since no one watches widgets here.
"""

from __future__ import annotations

import errno
import importlib.resources
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
import yaml

from nimrunbook.errors import DiskSpaceError, InputError, NimRunbookError
from nimrunbook.redact import redact
from nimrunbook.reports.html import build_index, export_html, static_notebook
from nimrunbook.runbook.record import RunRecord
from nimrunbook.userfiles import read_notebook, read_yaml

log = logging.getLogger(__name__)


def notebook_dir() -> Path:
    """The runbook's notebooks as installed: package data of ``nimrunbook`` (in a checkout, a link to notebooks/).

    These are templates: they are read, never run or edited in place (``nimrunbook init`` copies them).
    """
    return Path(str(importlib.resources.files("nimrunbook") / "notebooks"))


def templates() -> list[Path]:
    return sorted(notebook_dir().glob("*.ipynb"))


def find_notebook(name: str) -> Path:
    """A notebook by path, or by name (``01_plan_profiles``) among the runbook's notebooks."""
    path = Path(name)
    if path.exists():
        read_notebook(path)  # a file named .ipynb that is not a notebook is refused here, in one paragraph
        return path
    for candidate in (notebook_dir() / name, notebook_dir() / f"{name}.ipynb"):
        if candidate.exists():
            return candidate
    known = ", ".join(p.stem for p in templates())
    raise InputError(f"No notebook {name!r}.", hint=f"Give a path, or one of: {known}.")


@dataclass
class ExecutionResult:
    notebook: Path
    executed: Path
    report: Path
    ok: bool
    seconds: float
    error: str | None = None


def _scrub(executed: Path) -> None:
    """Mask secrets in the executed notebook itself (outputs and injected parameters)."""
    notebook = nbformat.read(executed, as_version=4)
    widgets = notebook.metadata.get("widgets")
    clean = static_notebook(notebook)
    if widgets:
        clean.metadata["widgets"] = widgets
    nbformat.write(clean, executed)


def load_parameters(files: list[str] | None, pairs: list[tuple[str, str]] | None) -> dict:
    parameters: dict = {}
    for file in files or []:
        parameters.update(
            read_yaml(file, "parameter file", hint="Write one parameter a line: `name: value` (see params.yaml).")
        )
    for name, value in pairs or []:
        parameters[name] = yaml.safe_load(value) if value else value
    return parameters


def run_notebook(
    notebook: str | Path,
    run_dir: str | Path,
    parameters: dict | None = None,
    *,
    strict: bool = True,
    show_code: bool = False,
    kernel_name: str = "python3",
    cwd: str | Path | None = None,
) -> ExecutionResult:
    """Execute ``notebook`` into ``<run_dir>/notebooks`` and report into ``<run_dir>/reports``.

    ``strict``: a parameter the notebook does not have is an error (else it is passed over).
    """
    source = find_notebook(str(notebook))
    root = Path(run_dir).resolve()
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    executed = root / "notebooks" / source.name
    known = papermill.inspect_notebook(str(source))
    values = {**(parameters or {}), "run_dir": str(root), "progress": "log"}
    unknown = sorted(set(values) - set(known))
    if not strict:  # one parameter file for a whole run: each notebook takes what it knows
        values = {name: value for name, value in values.items() if name in known}
    elif unknown:
        raise InputError(
            f"{source.stem} has no parameter {', '.join(unknown)}.",
            hint=f"Its parameters: {', '.join(known)} (see `papermill --help-notebook {source}`).",
        )
    started = time.monotonic()
    error = None
    try:
        # The kernel's log lines (stdout/stderr streams) go to this terminal as they come; tables stay in the report.
        papermill.execute_notebook(
            str(source),
            str(executed),
            parameters=values,
            kernel_name=kernel_name,
            log_output=False,
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            request_save_on_cell_execute=True,
            progress_bar=False,
            cwd=str(cwd or Path.cwd()),
        )
    except papermill.PapermillExecutionError as exc:
        error = redact(f"cell {exc.exec_count} raised {exc.ename}: {exc.evalue}")
    except OSError as exc:  # the run folder cannot be written (a full disk): there is no notebook to report from
        raise _unwritable(root, exc) from exc
    except Exception as exc:  # noqa: BLE001 - a kernel that died, a notebook that cannot be read
        error = redact(f"{type(exc).__name__}: {exc}")
    seconds = round(time.monotonic() - started, 3)
    if executed.exists():
        _scrub(executed)
    record = RunRecord(root)
    if error:
        record.step(source.stem, status="failed", error=error, seconds=seconds)
    elif record.read().get("steps", {}).get(source.stem, {}).get("status") != "ok":
        record.step(source.stem, status="ok", seconds=seconds)
    report = (
        export_html(executed, root / "reports" / f"{source.stem}.html", show_code=show_code)
        if executed.exists()
        else root / "index.html"
    )
    build_index(root)
    return ExecutionResult(source, executed, report, error is None, seconds, error)


def _unwritable(root: Path, exc: OSError) -> NimRunbookError:
    what = f"The executed notebook could not be written into the run folder {root}: {exc.strerror or exc}."
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskSpaceError(what, hint="Free space there or give a --run-dir on a larger disk, then run again.")
    return NimRunbookError(what, hint="Check that the run folder can be written, then run again.")


def raise_for_failure(result: ExecutionResult) -> None:
    if not result.ok:
        raise NimRunbookError(
            f"{result.notebook.stem} failed: {result.error}",
            hint=f"The executed notebook {result.executed} shows the failing cell at the top, and the report is "
            f"{result.report}. Fix the cause and run the same command again: finished work is kept.",
        )
