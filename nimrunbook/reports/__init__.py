"""Executing notebooks unattended (papermill) and turning them into self-contained HTML audit reports."""

from nimrunbook.reports.execute import ExecutionResult, find_notebook, run_notebook
from nimrunbook.reports.html import build_index, export_html, rebuild_reports

__all__ = ["ExecutionResult", "build_index", "export_html", "find_notebook", "rebuild_reports", "run_notebook"]
