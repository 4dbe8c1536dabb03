"""Side-by-side panel for ``km.compare`` / ``%swift compare``: one row per prompt, one column per model."""

from __future__ import annotations

import html
from typing import Any

_STYLE = (
    "<style>.km-compare{border-collapse:collapse;font-size:13px;width:100%}"
    ".km-compare th,.km-compare td{border:1px solid var(--jp-border-color2,#ddd);padding:6px 8px;"
    "vertical-align:top;text-align:left;white-space:pre-wrap;word-break:break-word}"
    ".km-compare th{background:var(--jp-layout-color2,#f3f3f3)}"
    ".km-compare td.km-same{color:var(--jp-ui-font-color2,#777)}</style>"
)


def render_html(frame: Any) -> str:
    """HTML table of a compare DataFrame; a reply equal to the first model's is greyed out."""
    columns = list(frame.columns)
    sources = frame.attrs.get("sources", {})
    head = "".join(f"<th title='{html.escape(str(sources.get(c, c)))}'>{html.escape(str(c))}</th>" for c in columns)
    body = []
    for prompt, row in frame.iterrows():
        first = row[columns[0]] if columns else None
        cells = "".join(
            f"<td class='{'km-same' if i and row[c] == first else ''}'>{html.escape(str(row[c]))}</td>"
            for i, c in enumerate(columns)
        )
        body.append(f"<tr><th>{html.escape(str(prompt))}</th>{cells}</tr>")
    return f"{_STYLE}<table class='km-compare'><tr><th>prompt</th>{head}</tr>{''.join(body)}</table>"


def show(frame: Any) -> Any:
    """The panel shown by ``%swift compare`` (an ``ipywidgets.HTML`` holding the table)."""
    import ipywidgets as widgets

    panel = widgets.HTML(value=render_html(frame))
    panel.add_class("km-compare-panel")
    return panel
