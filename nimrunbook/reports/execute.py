"""``nimrunbook run``: execute a runbook notebook unattended with papermill, then write its report.

The parameters are checked against the notebook's declaration before a
kernel starts (:mod:`nimrunbook.runbook.parameters`). The executed copy goes
to ``<run_dir>/notebooks`` (where a prepared run folder keeps the notebooks a
person runs in JupyterLab, so reports see every step however it ran) and is
saved after every cell, so a crash still leaves a partial record. The kernel
records its own attempt in the run record (:mod:`nimrunbook.runbook.session`);
what the kernel could not record (it died, or failed before its first cell)
is recorded here. A failure still produces the report (with papermill's
error cell at the top). Progress is set to log lines, since no one watches
widgets here. The kernel talks over IPC sockets in a private folder, not TCP.
"""

from __future__ import annotations

import errno
import importlib.resources
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
from jupyter_client.manager import AsyncKernelManager

from nimrunbook.errors import DiskSpaceError, InputError, NimRunbookError
from nimrunbook.redact import redact
from nimrunbook.reports.html import (
    NOTEBOOKS,
    REPORTS,
    attempt_shown,
    build_index,
    executed,
    export_html,
    static_notebook,
)
from nimrunbook.runbook import parameters as params
from nimrunbook.runbook.record import FAILED, OK, RUNNING, RunRecord, attempt_fields
from nimrunbook.userfiles import read_notebook

log = logging.getLogger(__name__)


def notebook_dir() -> Path:
    """The runbook's notebooks as installed: package data of ``nimrunbook`` (in a checkout, a link to notebooks/).

    These are templates: they are read, never run or edited in place (``nimrunbook init`` prepares copies).
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


def next_step(notebook: str | Path) -> str | None:
    """What the notebook's closing cell says to do next (``**Next:** ...``), as one line."""
    cells = params.read_notebook(notebook).cells
    last = cells[-1] if cells else None
    if last is None or last.cell_type != "markdown" or not last.source.startswith("**Next:**"):
        return None
    return " ".join(last.source.removeprefix("**Next:**").split())


@dataclass
class ExecutionResult:
    notebook: Path
    executed: Path
    report: Path
    ok: bool
    seconds: float
    error: str | None = None


def _scrub(executed_path: Path) -> None:
    """Mask secrets in the executed notebook itself (outputs and injected parameters)."""
    notebook = nbformat.read(executed_path, as_version=4)
    widgets = notebook.metadata.get("widgets")
    clean = static_notebook(notebook)
    if widgets:
        clean.metadata["widgets"] = widgets
    nbformat.write(clean, executed_path)


def notebook_values(source: Path, from_files: dict, given: dict) -> dict:
    """The values one notebook gets: the params files' names it has, then ``-p`` (which must all be its own),
    checked (names, types, required ones) before anything runs."""
    declared = params.notebook_parameters(source)
    values = {name: value for name, value in from_files.items() if name in declared}
    problems = []
    for name, value in given.items():
        if name in declared:
            values[name] = value
            continue
        near = params.nearest(name, list(declared))
        owners = [t.stem for t in templates() if name in params.notebook_parameters(t)]
        problem = f"-p {name}: {source.stem} has no parameter {name!r}" + (f"; did you mean {near!r}?" if near else "")
        if owners:
            problem += (
                f" ({name} belongs to {', '.join(owners)}: run that notebook with it, or put it in a params file)"
            )
        problems.append(problem)
    checked = {**values, "run_dir": "(the run folder)", "progress": "log"}
    problems += params.check_values(source.stem, declared, checked, where=source.stem)
    params.raise_problems(
        problems,
        hint=f"Its parameters: {', '.join(n for n in declared if n not in params.PER_RUN)} "
        f"(see `papermill --help-notebook {source}`).",
    )
    return values


class IpcKernelManager(AsyncKernelManager):
    """A kernel that talks over IPC sockets in a private folder: no TCP port, no plain-text network traffic (and
    no kernel warning about it). nbclient creates, shuts down and cleans it up; the folder goes with it."""

    def __init__(self, **kwargs) -> None:
        self._folder = tempfile.mkdtemp(prefix="nimrunbook-kernel-")
        super().__init__(transport="ipc", ip=f"{self._folder}/kernel", **kwargs)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart)
        if not restart:
            shutil.rmtree(self._folder, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources


def _keep_earlier(executed_path: Path) -> None:
    """An executed notebook about to be replaced by a new run of its step goes to ``notebooks/earlier/``."""
    if not executed_path.exists():
        return
    try:
        notebook = nbformat.read(executed_path, as_version=4)
    except (OSError, ValueError):
        return
    if not executed(notebook):
        return  # a prepared notebook: nothing of a run to keep
    earlier = executed_path.parent / "earlier"
    earlier.mkdir(exist_ok=True)
    shown = attempt_shown(notebook)
    executed_path.replace(earlier / f"{executed_path.stem}.attempt-{shown or 'unknown'}.ipynb")


def _record_outcome(record: RunRecord, step: str, before: int, values: dict, error: str | None) -> None:
    """What the kernel could not record itself: a run that failed before the step began, a kernel that died
    mid-step, or a notebook that ended without marking its step done."""
    with record.lock():
        attempts = record.read().step(step).attempts
        mine = [a for a in attempts if a.number > before]
        if mine and mine[-1].status != RUNNING:
            return
        if mine:
            why = error or "the notebook ended without recording the step as done (step.done())"
            record.finish(step, mine[-1].number, FAILED, error=f"the kernel stopped before the step finished: {why}")
            return
        fields = attempt_fields(values, str(values.get("operator") or ""), str(values.get("change_id") or ""))
        attempt = record.begin(step, fields)
        record.finish(step, attempt.number, FAILED if error else OK, error=error)


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

    ``strict``: a parameter the notebook does not have is an error (else it is passed over: one set of
    parameters for a whole run, each notebook taking its own). Types and required parameters are always checked.
    """
    source = find_notebook(str(notebook))
    root = Path(run_dir).resolve()
    given = dict(parameters or {})
    values = notebook_values(source, {} if strict else given, given if strict else {})
    record = RunRecord(root)
    with record.lock():  # refused at once if another writer holds the run folder, or if it is an older record
        before = len(record.writable().step(source.stem).attempts)
    (root / NOTEBOOKS).mkdir(parents=True, exist_ok=True)
    (root / REPORTS).mkdir(parents=True, exist_ok=True)
    executed_path = root / NOTEBOOKS / source.name
    _keep_earlier(executed_path)
    started = time.monotonic()
    error = None
    logging.getLogger("papermill").setLevel(logging.WARNING)  # its own lines say nothing ours do not
    print(f"{time.strftime('%H:%M:%S')} {source.stem}: running, into {executed_path}", flush=True)
    try:
        # The kernel's log lines (stdout/stderr streams) go to this terminal as they come; tables stay in the report.
        papermill.execute_notebook(
            str(source),
            str(executed_path),
            parameters={**values, "run_dir": str(root), "progress": "log"},
            kernel_name=kernel_name,
            kernel_manager_class=IpcKernelManager,
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
    if executed_path.exists():
        _scrub(executed_path)
    _record_outcome(record, source.stem, before, values, error)
    report = (
        export_html(executed_path, root / REPORTS / f"{source.stem}.html", show_code=show_code, run=record.read())
        if executed_path.exists()
        else root / "index.html"
    )
    build_index(root)
    return ExecutionResult(source, executed_path, report, error is None, seconds, error)


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
