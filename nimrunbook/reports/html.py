"""Self-contained HTML reports of executed notebooks, and an index page of a run.

Reports open from ``file://`` on a machine with no network: widget state is
dropped so every output shows its static fallback (the runbook always writes
HTML tables for what matters), and no script or style is loaded from a CDN.
Code is hidden by default; every text is passed through the secret redactor.

Each report opens with a header an auditor can sign, built from the run
record (not from the notebook, which a person may not have saved): step,
status, operator, when, host, versions, change id and every parameter as
used. Progress lines collapse to each task's last line. A step run in
JupyterLab counts once its notebook is saved in the run folder; the index
names every step that has no executed notebook.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from nimrunbook.errors import InputError
from nimrunbook.localdisk import write_text_atomic
from nimrunbook.redact import redact
from nimrunbook.runbook.display import RECORD_MIMETYPE
from nimrunbook.runbook.record import RUNNING, Attempt, Run, RunRecord, StepRecord

WIDGET_MIMETYPES = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json")
NOTEBOOKS, REPORTS = "notebooks", "reports"
# Scripts that would fetch from a CDN (mermaid, mathjax, widget managers) and empty script tags: a report
# must open from file:// with no network, and our outputs never need them.
_EXTERNAL_RE = re.compile(
    r"<script\b[^>]*>(?:(?!</script>).)*?https?://(?:(?!</script>).)*?</script>"
    r"|<script[^>]*\bsrc=[\"'](?:https?:)?//[^\"']*[\"'][^>]*>\s*</script>"
    r"|<script[^>]*\bsrc=[\"'][\"'][^>]*>\s*</script>"
    r"|<link[^>]+href=[\"']https?://[^\"']*[\"'][^>]*>",
    re.I | re.S,
)
_PROGRESS_RE = re.compile(r"^\d\d:\d\d:\d\d progress (?P<text>.*)$")
STYLE = (
    "<style>.nimrunbook-header{font-family:sans-serif;border:2px solid #444;padding:8px 12px;margin:8px 0}"
    ".nimrunbook-header table{border-collapse:collapse}.nimrunbook-header td,.nimrunbook-header th"
    "{border:1px solid #ccc;padding:2px 8px;text-align:left !important;vertical-align:top}"
    ".nimrunbook-header .warn{color:#b00;font-weight:bold}</style>"
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


def collapse_progress(text: str) -> str:
    """Each progress task's last line only (``HH:MM:SS progress <task>: <where it stands>``), where it was."""
    lines = text.splitlines(keepends=True)
    last: dict[str, int] = {}
    for index, line in enumerate(lines):
        match = _PROGRESS_RE.match(line.rstrip("\n"))
        if match:
            last[match.group("text").rsplit(": ", 1)[0]] = index
    keep = set(last.values())
    return "".join(line for i, line in enumerate(lines) if i in keep or not _PROGRESS_RE.match(line.rstrip("\n")))


def executed(notebook: nbformat.NotebookNode) -> bool:
    """Has any code cell of the notebook run (by papermill, or by a person who then saved it)?"""
    return any(c.cell_type == "code" and (c.get("execution_count") or c.get("outputs")) for c in notebook.cells)


def attempt_shown(notebook: nbformat.NotebookNode) -> int | None:
    """The attempt number the notebook's first cell displayed (None when it shows none)."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(RECORD_MIMETYPE)
            if isinstance(payload, dict) and payload.get("kind") == "attempt":
                return payload.get("attempt")
    return None


def _continued(step: StepRecord, number: int) -> Attempt:
    """The attempt a notebook's session ended in: ``number``, or the last one that continued it (cells re-run)."""
    attempt = step.attempt(number)
    for later in step.attempts:
        if later.continues == attempt.number:
            attempt = later
    return attempt


def _first_of(step: StepRecord, attempt: Attempt) -> Attempt:
    """The attempt a chain of continuing attempts (cells re-run in one session) began with."""
    while attempt.continues:
        try:
            attempt = step.attempt(attempt.continues)
        except KeyError:
            break
    return attempt


def _cell(content: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/html": content, "text/plain": ""})]
    cell.metadata["tags"] = ["nimrunbook-report-header"]
    return cell


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs)


def report_header(run: Run, step_name: str, notebook: nbformat.NotebookNode) -> str:
    """The report's opening block: who ran which attempt of the step, when, where, with what, and how it ended."""
    step = run.step(step_name)
    if not step.attempts:
        return (
            f'{STYLE}<div class="nimrunbook-header"><h2>{html.escape(step_name)}</h2><p class="warn">'
            "The run record has no attempt of this step: this notebook did not run through the runbook.</p></div>"
        )
    shown = attempt_shown(notebook)
    try:
        attempt = _continued(step, shown) if shown else step.latest
    except KeyError:
        attempt = step.latest
    status = attempt.status.upper() if attempt.status != RUNNING else "NOT FINISHED"
    continued = f" (continues attempt {attempt.continues}: cells run again)" if attempt.continues else ""
    took = f", {attempt.seconds:.1f} s" if attempt.seconds is not None else ""
    first = _first_of(step, attempt)
    if first is not attempt:
        took += f"; the session began with attempt {first.number} at {first.started}"
    facts = [
        ("step", step_name),
        ("status", status + (f": {attempt.error}" if attempt.error else "")),
        ("attempt", f"{attempt.number} of {len(step.attempts)}{continued}"),
        ("operator", attempt.operator),
        ("when (UTC)", f"{attempt.started} to {attempt.finished or '(not finished)'}{took}"),
        ("host", attempt.host),
        ("nimrunbook", attempt.nimrunbook),
        ("runbook commit", attempt.runbook_commit or "not known (installed from a wheel)"),
        ("change / ticket", attempt.change_id or "none given"),
    ]
    warnings = []
    if attempt is not step.latest:
        latest = step.latest
        warnings.append(
            f"The run record's latest attempt of this step is {latest.number} ({latest.status}, started "
            f"{latest.started}); this notebook shows attempt {attempt.number}. Save the notebook after it runs "
            "(JupyterLab: File > Save) or run the step with `nimrunbook run`, then rebuild the reports."
        )
    parameters = _rows([(name, _value(value)) for name, value in attempt.parameters.items()])
    notes = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in warnings)
    return (
        f'{STYLE}<div class="nimrunbook-header"><h2>{html.escape(step_name)}: {html.escape(status)}</h2>{notes}'
        f"<table>{_rows(facts)}</table><h4>Parameters as used</h4><table>{parameters}</table></div>"
    )


def _value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def export_html(
    notebook_path: str | Path, html_path: str | Path | None = None, *, show_code: bool = False, run: Run | None = None
) -> Path:
    """Write the report of one executed notebook (with the record's header when ``run`` is given); returns its path."""
    source = Path(notebook_path)
    target = Path(html_path) if html_path else source.with_suffix(".html")
    notebook = static_notebook(nbformat.read(source, as_version=4))
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                output["text"] = collapse_progress(output.get("text", ""))
    if run is not None:
        notebook.cells.insert(0, _cell(report_header(run, source.stem, notebook)))
    exporter = HTMLExporter(
        template_name="lab", exclude_input=not show_code, exclude_input_prompt=not show_code, exclude_output_prompt=True
    )
    exporter.mathjax_url = ""
    body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": source.stem}})
    body = _EXTERNAL_RE.sub("", body)
    write_text_atomic(target, redact(body))
    return target


def _step_names(root: Path, run: Run) -> list[str]:
    from nimrunbook.reports.execute import templates

    names = {p.stem for p in templates()} | set(run.steps) | {p.stem for p in (root / NOTEBOOKS).glob("*.ipynb")}
    return sorted(names)


def step_notes(root: Path, run: Run) -> dict[str, str]:
    """Per step, what the index says besides its status: a missing or stale executed notebook."""
    notes = {}
    for name in _step_names(root, run):
        step = run.step(name)
        path = root / NOTEBOOKS / f"{name}.ipynb"
        notebook = nbformat.read(path, as_version=4) if path.exists() else None
        if step.attempts and (notebook is None or not executed(notebook)):
            notes[name] = (
                f"no executed notebook: {step.latest.status} in the record, but {NOTEBOOKS}/{name}.ipynb "
                + ("is missing" if notebook is None else "has not been saved after running")
                + " (JupyterLab: File > Save; or `nimrunbook run`)"
            )
        elif not step.attempts and notebook is not None and executed(notebook):
            notes[name] = "executed, but the run record has no attempt of it"
    return notes


def build_index(run_dir: str | Path) -> Path:
    """``index.html``: every step of the runbook, its status, attempts and timing, links to the reports, and the
    steps without an executed notebook named."""
    root = Path(run_dir)
    run = RunRecord(root).read()
    notes = step_notes(root, run)
    rows = []
    for name in _step_names(root, run):
        step = run.step(name)
        latest = step.latest
        report = root / REPORTS / f"{name}.html"
        link = f'<a href="{REPORTS}/{html.escape(report.name)}">{html.escape(name)}</a>' if report.exists() else name
        status = "not finished" if step.status == RUNNING else step.status
        cells = [
            link,
            html.escape(status),
            str(len(step.attempts)),
            html.escape(latest.operator if latest else ""),
            html.escape(latest.started if latest else ""),
            f"{latest.seconds:.1f}" if latest and latest.seconds is not None else "",
            html.escape(notes.get(name, "") or (latest.error or "" if latest else "")),
        ]
        rows.append(f"<tr class='{html.escape(status.replace(' ', '-'))}'>" + "".join(f"<td>{c}</td>" for c in cells))
    tools = _rows(sorted(run.tools.items()))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>nimrunbook run {html.escape(root.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}tr.ok td:nth-child(2){{color:#070}}
tr.failed td:nth-child(2),tr.not-finished td:nth-child(2){{color:#b00;font-weight:bold}}</style></head>
<body><h1>nimrunbook run: {html.escape(root.name)}</h1>
<p>Record created {html.escape(run.created or "?")}, last changed {html.escape(run.updated or "?")} (UTC).</p>
<table><tr><th>step</th><th>status</th><th>attempts</th><th>operator</th><th>started (UTC)</th><th>seconds</th><th>notes</th></tr>
{"".join(rows)}
</table>
<h3>Tool versions (when the record was created)</h3><table>{tools}</table>
<p>The run record is <a href="run.json">run.json</a>: every attempt of every step, with its parameters.</p></body></html>
"""
    target = root / "index.html"
    write_text_atomic(target, redact(page))
    return target


def rebuild_reports(run_dir: str | Path, *, show_code: bool = False) -> list[Path]:
    """Re-export every executed notebook of the run (however it ran), then the index.

    A folder that holds no run (no record and no executed notebook) is an error, not an empty index.
    """
    root = Path(run_dir)
    record = RunRecord(root)
    notebooks = sorted((root / NOTEBOOKS).glob("*.ipynb")) if root.is_dir() else []
    run = record.read()
    ran = [nb for nb in notebooks if executed(nbformat.read(nb, as_version=4))]
    if not record.exists() and not ran:
        where = "does not exist" if not root.exists() else "holds no nimrunbook run (no run.json, no executed notebook)"
        raise InputError(
            f"{root} {where}.",
            hint="Give the run folder that `nimrunbook run --run-dir` or `nimrunbook init` made (it holds run.json).",
        )
    (root / REPORTS).mkdir(parents=True, exist_ok=True)
    written = [export_html(nb, root / REPORTS / f"{nb.stem}.html", show_code=show_code, run=run) for nb in ran]
    written.append(build_index(root))
    return written
