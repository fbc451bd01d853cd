"""Self-contained HTML reports of executed notebooks, and an index page of a run.

Reports open from ``file://`` on a machine with no network: widget state is
dropped so every output shows its static fallback (the runbook always writes
HTML tables for what matters), and no script or style is loaded from a CDN.
Code is hidden by default; every text is passed through the secret redactor.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from nimrunbook.localdisk import write_text_atomic
from nimrunbook.redact import redact
from nimrunbook.runbook.record import RunRecord

WIDGET_MIMETYPES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")
# Scripts that would fetch from a CDN (mermaid, mathjax, widget managers) and empty script tags: a report
# must open from file:// with no network, and our outputs never need them.
_EXTERNAL_RE = re.compile(
    r"<script\b[^>]*>(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>"
    r"|<script[^>]*\bsrc=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>\s*</script>"
    r"|<script[^>]*\bsrc=[\"'][\"'][^>]*>\s*</script>"
    r"|<link[^>]+href=[\"']https?://[^\"']*[\"'][^>]*>",
    re.I | re.S,
)


def _redact_node(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_node(v) for v in value]
    if isinstance(value, dict):
        return {k: _redact_node(v) for k, v in value.items()}
    return value


def static_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without widget state or widget outputs, with every output and source redacted."""
    clean = nbformat.from_dict(_redact_node(nbformat.reads(nbformat.writes(notebook), as_version=4)))
    clean.metadata.pop("widgets", None)
    for cell in clean.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data:
                for mimetype in WIDGET_MIMETYPES:
                    data.pop(mimetype, None)
                if not data:
                    data["text/plain"] = ""
    return clean


def export_html(notebook_path: str | Path, html_path: str | Path | None = None, *, show_code: bool = False) -> Path:
    """Write the report of one executed notebook; returns its path."""
    source = Path(notebook_path)
    target = Path(html_path) if html_path else source.with_suffix(".html")
    notebook = static_notebook(nbformat.read(source, as_version=4))
    exporter = HTMLExporter(
        template_name="lab", exclude_input=not show_code, exclude_input_prompt=not show_code, exclude_output_prompt=True
    )
    exporter.mathjax_url = ""
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": source.stem}})
    body = _EXTERNAL_RE.sub("", body)
    write_text_atomic(target, redact(body))
    return target


def build_index(run_dir: str | Path) -> Path:
    """``index.html``: every step of the run, its status and timing, with links to the reports."""
    root = Path(run_dir)
    record = RunRecord(root).read()
    steps = record.get("steps", {})
    rows = []
    for name, step in sorted(steps.items()):
        report = root / "reports" / f"{name}.html"
        link = (
            f'<a href="reports/{html.escape(report.name)}">{html.escape(name)}</a>'
            if report.exists()
            else html.escape(name)
        )
        status = step.get("status", "?")
        detail = html.escape(str(step.get("error", "")))
        rows.append(
            f"<tr class='{html.escape(status)}'><td>{link}</td><td>{html.escape(status)}</td>"
            f"<td>{html.escape(str(step.get('started', '')))}</td><td>{step.get('seconds', '')}</td><td>{detail}</td></tr>"
        )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>nimrunbook run {html.escape(root.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}
tr.ok td:nth-child(2){{color:#070}}tr.failed td:nth-child(2){{color:#b00;font-weight:bold}}</style></head>
<body><h1>nimrunbook run: {html.escape(root.name)}</h1>
<p>Run by {html.escape(str(record.get("user", "?")))} on {html.escape(str(record.get("host", "?")))};
created {html.escape(str(record.get("created", "?")))}; tools {html.escape(json.dumps(record.get("tools", {})))}.</p>
<table><tr><th>step</th><th>status</th><th>started</th><th>seconds</th><th>error</th></tr>
{"".join(rows)}
</table><p>The run record is <a href="run.json">run.json</a>.</p></body></html>
"""
    target = root / "index.html"
    target.write_text(redact(page))
    return target


def rebuild_reports(run_dir: str | Path, *, show_code: bool = False) -> list[Path]:
    """Re-export every executed notebook of the run, then the index."""
    root = Path(run_dir)
    (root / "reports").mkdir(parents=True, exist_ok=True)
    written = [
        export_html(nb, root / "reports" / f"{nb.stem}.html", show_code=show_code)
        for nb in sorted((root / "notebooks").glob("*.ipynb"))
    ]
    written.append(build_index(root))
    return written
