"""Progress for long work, reported to whoever the caller chose: a bar, log lines, or nobody.

Model profiles are tens to hundreds of GB, so every long step reports
progress. *How* it is shown is not the library's business: the runbook (a
widget bar in JupyterLab, log lines under papermill) and the command line (log
lines) create a :class:`Reporter` and pass it down; library functions take it
as ``progress`` and default to :data:`SILENT`. No library code builds widgets.

The API, small on purpose::

    def publish(..., progress: Reporter = SILENT):
        with progress.task("upload 12 objects", total=total_bytes, unit="B") as task:
            task.advance(len(chunk))        # thread-safe: parallel workers share one task
            task.set(done, total)           # or say where it stands (total may become known late)

- ``Reporter.task(description, total=None, unit="B") -> Task``: one piece of
  work. ``total`` may be unknown (None). ``unit="B"`` shows bytes and a rate;
  any other unit (``"images"``) shows counts.
- ``Task``: a context manager; ``advance(n)``, ``set(done, total=None)``,
  ``close()`` (what ``__exit__`` calls), ``summary()`` for a one-line text.
- :data:`SILENT` (the base :class:`Reporter`): tasks that count but show nothing.
- :class:`LogReporter`: a log line every ``every_percent`` of the total, or
  every ``every_seconds`` when the total is unknown, and one at the end.

A reporter that shows something subclasses :class:`Task` (override
``_render``, called under the task's lock after every change, and ``_finish``)
and :class:`Reporter` (override ``task``); the runbook's widget bar is one.
Tasks are thread-safe the way s3transfer's subscribers need them to be.
"""

from __future__ import annotations

import logging
import threading
import time


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


class Task:
    """One piece of long work; this base shows nothing. ``total`` may be unknown (None)."""

    def __init__(self, description: str = "", total: int | None = None, unit: str = "B") -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = 0
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def advance(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            self._render()

    def set(self, done: int, total: int | None = None) -> None:
        with self._lock:
            self.done = done
            if total is not None:
                self.total = total
            self._render()

    def close(self) -> None:
        with self._lock:
            self._finish()

    def _render(self) -> None:  # overridden by tasks that show something
        pass

    def _finish(self) -> None:
        pass

    def _amount(self, value: int) -> str:
        return human_bytes(value) if self.unit == "B" else f"{value} {self.unit}"

    def summary(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        parts = [self._amount(self.done)]
        if self.total:
            parts = [f"{100 * self.done / self.total:.0f}%", f"{self._amount(self.done)} of {self._amount(self.total)}"]
        if self.unit == "B":
            parts.append(f"{human_bytes(self.done / elapsed)}/s")
        return f"{self.description}: " + ", ".join(parts)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class Reporter:
    """Makes a :class:`Task` for each piece of work; this base (:data:`SILENT`) shows nothing."""

    def task(self, description: str, total: int | None = None, unit: str = "B") -> Task:
        return Task(description, total, unit)


SILENT = Reporter()


class LogTask(Task):
    """A log line every ``every_percent`` of the total, or every ``every_seconds`` when it is unknown."""

    def __init__(
        self,
        description: str = "",
        total: int | None = None,
        unit: str = "B",
        *,
        logger: logging.Logger | None = None,
        every_percent: float = 10,
        every_seconds: float = 15,
    ) -> None:
        super().__init__(description, total, unit)
        self.logger = logger or logging.getLogger("nimrunbook.progress")
        self.every_percent = every_percent
        self.every_seconds = every_seconds
        self._last_percent = -1.0
        self._last_time = 0.0

    def _render(self) -> None:
        now = time.monotonic()
        if self.total:
            percent = min(100.0, 100 * self.done / self.total)
            reached_end = percent >= 100 > self._last_percent
            if percent - self._last_percent < self.every_percent and not reached_end:
                return
            self._last_percent = percent
        elif now - self._last_time < self.every_seconds:
            return
        self._last_time = now
        self.logger.info(self.summary())

    def _finish(self) -> None:
        self.logger.info(self.summary() + " (done)")


class LogReporter(Reporter):
    """Log lines, for papermill and the terminal (a widget is invisible there and in HTML reports)."""

    def __init__(
        self, logger: logging.Logger | None = None, *, every_percent: float = 10, every_seconds: float = 15
    ) -> None:
        self.logger = logger
        self.every_percent = every_percent
        self.every_seconds = every_seconds

    def task(self, description: str, total: int | None = None, unit: str = "B") -> LogTask:
        return LogTask(
            description,
            total,
            unit,
            logger=self.logger,
            every_percent=self.every_percent,
            every_seconds=self.every_seconds,
        )
