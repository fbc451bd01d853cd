"""A notebook step's session: its parameters checked, its attempt in the run record, its lock, its output.

Every notebook's first code cell is ``step = runbook.start("<notebook>", globals())``.
That checks the parameters the kernel holds against the notebook's declared
types and required names (:mod:`nimrunbook.runbook.parameters`), however
they got there (papermill, a prepared run folder, a person's edit), then
begins a new attempt of the step in the run record, holding the run folder's
lock until the step ends: a second writer (another kernel, ``nimrunbook run``)
is refused with who holds it.

The attempt ends as ``ok`` in ``step.done()``, or as ``failed`` when a cell
raises (an IPython ``post_run_cell`` hook, so it works the same in
JupyterLab and under papermill). Its results stay inside the attempt until it
succeeds. Re-running cells after a successful end (a person changing the
picker's ticks and confirming again) begins an attempt that continues the
finished one; after a failure, cells refuse to record until the notebook is
run again from its first cell.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimrunbook.errors import InputError, NimRunbookError, cause_line
from nimrunbook.progress import Reporter
from nimrunbook.redact import RedactingFilter, redact
from nimrunbook.runbook import parameters as params
from nimrunbook.runbook.progress_bar import reporter_for
from nimrunbook.runbook.record import FAILED, OK, RUNNING, Attempt, RunRecord, attempt_fields

log = logging.getLogger("nimrunbook")
PROGRESS_LOGGER = "nimrunbook.progress"
_active: Step | None = None  # the step this kernel runs; one at a time


_OWN_TIME = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d")  # a relayed line (a container's log) that has one


class _LineFormatter(logging.Formatter):
    """One timestamp per line (a relayed line that carries its own keeps that one); progress lines marked so
    that reports can keep each task's last one."""

    def format(self, record: logging.LogRecord) -> str:
        kind = {PROGRESS_LOGGER: "progress"}.get(
            record.name, "" if record.levelno == logging.INFO else record.levelname
        )
        text = record.getMessage()
        stamp = "" if _OWN_TIME.search(text) else self.formatTime(record, "%H:%M:%S")
        return " ".join(part for part in (stamp, kind, text) if part)


def _log_to_stdout() -> None:
    """INFO lines on stdout: visible in JupyterLab, relayed by ``nimrunbook run``, kept in the report."""
    root = logging.getLogger()
    if not any(getattr(h, "_nimrunbook", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_LineFormatter())
        handler.addFilter(RedactingFilter())
        handler._nimrunbook = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "docker", "kubernetes", "papermill"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def error_text(error: BaseException | str) -> str:
    """An error as the record keeps it: our message and hint; for anything else its type too; and its cause."""
    if isinstance(error, str):
        return redact(error)
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C or the kernel's stop button)"
    text = str(error) if isinstance(error, NimRunbookError) else f"{type(error).__name__}: {error}"
    cause = cause_line(error)
    return redact(text + (f" (details: {cause})" if cause else ""))


@dataclass
class Step:
    """One notebook's run. ``progress`` is the reporter every long operation of the step is given."""

    name: str
    run_dir: Path
    progress: Reporter
    parameters: dict = field(default_factory=dict)
    operator: str = ""
    change_id: str = ""
    attempt: Attempt | None = None
    status: str = RUNNING
    _hold: ExitStack = field(default_factory=ExitStack, repr=False)

    @property
    def record(self) -> RunRecord:
        return RunRecord(self.run_dir)

    @property
    def number(self) -> int:
        return self.attempt.number if self.attempt else 0

    def _begin(self, continues: Attempt | None = None) -> None:
        self._hold.enter_context(self.record.lock())
        try:
            fields = attempt_fields(self.parameters, self.operator, self.change_id)
            self.attempt = self.record.begin(self.name, fields, continues=continues)
        except BaseException:
            self._hold.close()
            raise
        self.status = RUNNING

    def _end(self, status: str, error: BaseException | str | None = None, summary: dict | None = None) -> Attempt:
        try:
            text = error_text(error) if error is not None else None
            self.attempt = self.record.finish(self.name, self.number, status, error=text, summary=summary)
        finally:
            self.status = status
            self._hold.close()  # the run folder is free for the next writer
        return self.attempt

    def _writable(self) -> None:
        """Running: go on. Finished well: cells re-run, so a new attempt continues that one. Failed: refuse."""
        if self.status == RUNNING:
            return
        if self.status == OK:
            finished = self.attempt
            self._begin(continues=finished)
            log.info(
                "%s: cells run again after attempt %s; attempt %s continues it", self.name, finished.number, self.number
            )
            return
        raise InputError(
            f"Attempt {self.number} of {self.name} failed ({self.attempt.error if self.attempt else 'see above'}); "
            "what it found is not the run's, so nothing more is recorded in it.",
            hint="Run the notebook again from its first code cell (Run > Run All Cells): a new attempt starts.",
        )

    def facts(self) -> dict:
        """What the run's steps found: each section from the latest successful attempt, this attempt's on top."""
        run = self.record.read()
        current = run.step(self.name)
        mine = next((a for a in current.attempts if a.number == self.number), None)
        return run.facts(current=(self.name, mine) if mine is not None and mine.status == RUNNING else None)

    def save(self, **sections) -> None:
        """Record sections of facts in this attempt (each replaced whole)."""
        self._writable()
        self.record.save(self.name, self.number, sections)

    def done(self, **summary) -> None:
        """The step succeeded: its results become the run's."""
        self._writable()
        attempt = self._end(OK, summary=summary)
        log.info("%s: ok (attempt %s, %.1f s)", self.name, attempt.number, attempt.seconds or 0)

    def fail(self, error: BaseException | str) -> None:
        """The step failed: the attempt keeps what it found, the run does not take it."""
        if self.status == RUNNING:
            attempt = self._end(FAILED, error)
            log.warning("%s: attempt %s failed (the error is above, and in the run record)", self.name, attempt.number)


def _after_cell(result) -> None:
    """IPython's post_run_cell: a cell that raised fails the running step (JupyterLab and papermill alike)."""
    error = result.error_in_exec or result.error_before_exec
    if error is not None and _active is not None and _active.status == RUNNING:
        try:
            _active.fail(error)
        except Exception as failure:  # noqa: BLE001 - a hook must not raise; say what could not be recorded
            log.warning("%s: the failure could not be recorded in the run record: %s", _active.name, failure)


def _hook_cells() -> None:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the kernel
        return
    shell = get_ipython()
    if shell is None:
        return
    if _after_cell not in shell.events.callbacks["post_run_cell"]:
        shell.events.register("post_run_cell", _after_cell)


def begin(
    name: str,
    run_dir: str | Path,
    progress: str = "none",
    parameters: Mapping[str, Any] | None = None,
    *,
    operator: str = "",
    change_id: str = "",
) -> Step:
    """A new attempt of step ``name`` in ``run_dir`` (see the module docstring); :func:`start` for notebooks."""
    global _active
    reporter = reporter_for(progress)
    _log_to_stdout()
    if _active is not None and _active.status == RUNNING:
        _active.fail("not finished: the notebook's first cell was run again")
    step = Step(name, Path(run_dir).resolve(), reporter, dict(parameters or {}), operator, change_id)
    step._begin()
    _active = step
    _hook_cells()
    _show_header(step)
    return step


def _template(name: str) -> Path | None:
    from nimrunbook.reports.execute import notebook_dir

    path = notebook_dir() / f"{name}.ipynb"
    return path if path.exists() else None


def start(name: str, namespace: Mapping[str, Any]) -> Step:
    """The first code cell of every notebook: ``step = runbook.start("01_plan_profiles", globals())``.

    Checks the kernel's parameter values against the notebook's declaration (the installed notebook of that
    name; else the kernel's own annotations), records the attempt with every parameter as used, and returns
    the step. A parameter problem is recorded as a failed attempt and raised, naming each problem.
    """
    template = _template(name)
    declared = params.notebook_parameters(template) if template else params.annotations_of(namespace)
    values = params.kernel_values(declared, namespace)
    problems = [f"{n} is not set: run the parameters cell" for n in declared if n not in namespace]
    problems += params.check_values(name, declared, values, where=f"{name}'s parameters")
    run_dir = values.get("run_dir")
    if not isinstance(run_dir, str) or not run_dir:
        params.raise_problems(problems or ["run_dir is empty"], hint="Set run_dir in the parameters cell.")
    recorded = params.absolute_paths(values, Path.cwd())
    operator, change_id = str(values.get("operator") or ""), str(values.get("change_id") or "")
    progress = values.get("progress") if values.get("progress") in ("widget", "log", "none") else "none"
    step = begin(name, run_dir, progress, recorded, operator=operator, change_id=change_id)
    if problems:
        error = InputError(
            "The parameters are not right:\n" + "\n".join(f"  {p}" for p in problems),
            hint="Set them in the parameters cell (or in the run folder's params.yaml, then prepare it again with "
            "`nimrunbook init RUN_DIR --force`), then run the notebook from the top.",
            problems=problems,
        )
        step.fail(error)
        raise error
    return step


def _show_header(step: Step) -> None:
    """A line saying which attempt this is, with its JSON in the record mimetype (reports match it to the record)."""
    from nimrunbook.runbook.display import show_record

    attempt = step.attempt
    show_record(
        "attempt",
        {"step": step.name, "attempt": attempt.number, "run_dir": str(step.run_dir)},
        title=f"{step.name}: attempt {attempt.number} by {attempt.operator} on {attempt.host}, run folder "
        f"{step.run_dir}" + (f", change {attempt.change_id}" if attempt.change_id else ""),
        compact=True,
    )
    logging.getLogger("nimrunbook").debug("step %s attempt %s (pid %s)", step.name, attempt.number, os.getpid())
