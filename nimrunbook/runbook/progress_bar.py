"""Progress as a person watching in JupyterLab sees it: an ipywidgets bar with a text line.

The library only knows :class:`nimrunbook.progress.Reporter`; the runbook turns
each notebook's ``progress`` parameter into one here (see :func:`reporter_for`).
"""

from __future__ import annotations

import time

from nimrunbook.errors import InputError
from nimrunbook.progress import SILENT, LogReporter, Reporter, Task

MODES = ("widget", "log", "none")


class WidgetTask(Task):
    """A bar and a summary line, redrawn at most five times a second.

    The bar is shown with a plain-text twin that ends as the final summary line: a saved notebook and its
    report (which drop widgets) say how the work ended, in one line.
    """

    def __init__(self, description: str = "", total: int | None = None, unit: str = "B") -> None:
        super().__init__(description, total, unit)
        import ipywidgets
        from IPython.display import display

        self._bar = ipywidgets.FloatProgress(min=0, max=float(total or 1), description="")
        self._label = ipywidgets.Label(self.summary())
        self._box = ipywidgets.HBox([self._bar, self._label])
        self._last_time = 0.0
        self._handle = display(self._bundle(), raw=True, display_id=True)

    def _bundle(self) -> dict:
        view = {"version_major": 2, "version_minor": 0, "model_id": self._box.model_id}
        return {"application/vnd.jupyter.widget-view+json": view, "text/plain": self.summary()}

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
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)


class WidgetReporter(Reporter):
    def task(self, description: str, total: int | None = None, unit: str = "B") -> WidgetTask:
        return WidgetTask(description, total, unit)


def reporter_for(mode: str) -> Reporter:
    """The reporter a notebook's ``progress`` parameter names: "widget" in JupyterLab, "log" under papermill."""
    if mode == "widget":
        return WidgetReporter()
    if mode == "log":
        return LogReporter()
    if mode == "none":
        return SILENT
    raise InputError(
        f"progress={mode!r} is not one of {', '.join(MODES)}.",
        hint='Use "widget" in JupyterLab and "log" under papermill (nimrunbook run sets it).',
    )
