"""A notebook step's session: logging, its progress reporter, and its entry in the run record."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from nimrunbook.progress import Reporter
from nimrunbook.redact import RedactingFilter
from nimrunbook.runbook.progress_bar import reporter_for
from nimrunbook.runbook.record import RunRecord, public_parameters, secrets_in_environment


def _log_to_stdout() -> None:
    """INFO lines on stdout: visible in JupyterLab, captured by papermill, kept in the report."""
    root = logging.getLogger()
    if not any(getattr(h, "_nimrunbook", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handler.addFilter(RedactingFilter())
        handler._nimrunbook = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3", "docker", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@dataclass
class Step:
    """One notebook's run: ``start`` it in the first cell, ``done`` it in the last.

    ``progress`` is the reporter every long operation of the step is given.
    """

    name: str
    run_dir: Path
    progress: Reporter
    parameters: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def record(self) -> RunRecord:
        return RunRecord(self.run_dir)

    def facts(self) -> dict:
        """Everything earlier steps recorded."""
        return self.record.read()

    def save(self, **sections) -> dict:
        return self.record.update(**sections)

    def done(self, **results) -> None:
        """Mark the step complete in the run record, with its results and timing."""
        self.record.step(
            self.name,
            status="ok",
            finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seconds=round(time.monotonic() - self.started, 3),
            results=results,
        )


def start(name: str, run_dir: str | Path, progress: str = "widget", **parameters) -> Step:
    """Begin a step: log to stdout, record its (non-secret) parameters, return the session.

    ``progress`` is the notebook parameter: "widget", "log" or "none" (see :func:`reporter_for`).
    """
    reporter = reporter_for(progress)
    _log_to_stdout()
    step = Step(name, Path(run_dir).resolve(), reporter, parameters)
    step.record.step(
        name,
        status="started",
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        parameters=public_parameters(parameters),
        secrets_present=secrets_in_environment(),
    )
    logging.getLogger("nimrunbook").info("step %s: run directory %s", name, step.run_dir)
    return step
