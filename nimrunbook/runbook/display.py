"""What a notebook shows: plain HTML tables and JSON records that read without any widget JavaScript.

Every output that matters to an auditor is static HTML (and text), so the
executed notebook and its HTML report hold it even where widgets cannot run.
Records also carry a JSON copy in their own mimetype, for tools.
"""

from __future__ import annotations

import html
import json

import pandas as pd

from nimrunbook.redact import redact

RECORD_MIMETYPE = "application/vnd.nimrunbook.record+json"


def _display(bundle: dict) -> None:
    from IPython.display import display

    display(bundle, raw=True)


TABLE_STYLE = (
    "<style>.nimrunbook-table td, .nimrunbook-table th {text-align: left !important; padding: 2px 8px}</style>"
)


def table_html(frame: pd.DataFrame, title: str | None = None) -> str:
    heading = f"<h4>{html.escape(title)}</h4>" if title else ""
    return (
        TABLE_STYLE + heading + frame.to_html(index=False, escape=True, border=0, classes="nimrunbook-table", na_rep="")
    )


def show_table(frame: pd.DataFrame, title: str | None = None) -> None:
    """A table as HTML (and plain text), secrets redacted."""
    _display({"text/html": redact(table_html(frame, title)), "text/plain": redact(frame.to_string(index=False))})


def show_record(
    kind: str, data: dict, frame: pd.DataFrame | None = None, title: str | None = None, *, compact: bool = False
) -> None:
    """A record: an HTML table a person reads plus the JSON in :data:`RECORD_MIMETYPE`.

    ``compact``: the title alone, as one quiet line (the JSON is still there for tools and reports).
    """
    payload = json.loads(redact(json.dumps({"kind": kind, **data}, default=str)))
    if compact:
        body = f'<div style="color: #555">{html.escape(title or kind)}</div>'
        plain = title or kind
    elif frame is not None:
        body, plain = table_html(frame, title), frame.to_string(index=False)
    else:
        body = f"<pre>{html.escape(json.dumps(payload, indent=2))}</pre>"
        plain = json.dumps(payload, indent=2)
    _display(
        {
            "text/html": f'<div class="nimrunbook-record" data-kind="{html.escape(kind)}">{redact(body)}</div>',
            "text/plain": redact(plain),
            RECORD_MIMETYPE: payload,
        }
    )


def show_text(text: str, title: str | None = None) -> None:
    heading = f"<h4>{html.escape(title)}</h4>" if title else ""
    body = f'<pre style="font-family: monospace; white-space: pre-wrap">{html.escape(redact(text))}</pre>'
    _display({"text/html": heading + body, "text/plain": redact(text)})
