"""Progress for long work: a bar when a person watches, log lines when nobody does.

Model profiles are tens to hundreds of GB, so every long step reports
progress. tqdm.auto's widget is invisible in papermill's output and in HTML
reports, so the caller chooses explicitly: ``"widget"`` in JupyterLab,
``"log"`` under papermill and in the terminal, ``"none"`` in tests. Reporters
are thread-safe: parallel uploads advance one shared reporter (the way
s3transfer's subscribers do).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

ProgressMode = Literal["widget", "log", "none"]


def human_bytes(value: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


class Progress:
    """A silent reporter; the base of the others. ``total`` may be unknown (None)."""

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

    def _render(self) -> None:  # overridden by reporters that show something
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

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class LogProgress(Progress):
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


class WidgetProgress(Progress):
    """An ipywidgets bar with a text line, for a person watching in JupyterLab."""

    def __init__(self, description: str = "", total: int | None = None, unit: str = "B") -> None:
        super().__init__(description, total, unit)
        import ipywidgets
        from IPython.display import display

        self._bar = ipywidgets.FloatProgress(min=0, max=float(total or 1), description="")
        self._label = ipywidgets.Label(self.summary())
        self._last_time = 0.0
        display(ipywidgets.HBox([self._bar, self._label]))

    def _render(self) -> None:
        now = time.monotonic()
        if now - self._last_time < 0.2:
            return
        self._last_time = now
        self._bar.max = float(self.total or max(self.done, 1))
        self._bar.value = float(self.done)
        self._label.value = self.summary()

    def _finish(self) -> None:
        self._last_time = 0.0
        self._render()
        self._bar.bar_style = "success"


def make_progress(mode: ProgressMode, description: str, total: int | None = None, unit: str = "B") -> Progress:
    """The reporter for ``mode``; see the module docstring for which to choose."""
    if mode == "widget":
        return WidgetProgress(description, total, unit)
    if mode == "log":
        return LogProgress(description, total, unit)
    return Progress(description, total, unit)
