"""The teacher's panel (``%swift teacher``): users, adapters with Unload, training slots with Stop, memory."""

from __future__ import annotations

import html
from typing import Any

_STYLE = (
    "<style>.km-class{border-collapse:collapse;font-size:13px;margin:4px 0}"
    ".km-class th,.km-class td{border:1px solid var(--jp-border-color2,#ddd);padding:3px 8px;text-align:left}"
    ".km-class th{background:var(--jp-layout-color2,#f3f3f3)}</style>"
)
USER_COLUMNS = (("user", "user"), ("requests_last_min", "requests / min"), ("tokens_last_min", "tokens / min"),
                ("waiting", "waiting"), ("inside", "generating"), ("most_ahead", "most served ahead"))  # fmt: skip


def users_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in USER_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(key, '')))}</td>" for key, _ in USER_COLUMNS) + "</tr>"
        for row in rows
    )
    return f"{_STYLE}<table class='km-class'><tr>{head}</tr>{body or '<tr><td>no requests yet</td></tr>'}</table>"


def _row(text: str, button: Any | None = None) -> Any:
    import ipywidgets as widgets

    label = widgets.HTML(value=html.escape(text))
    return widgets.HBox([label, button] if button is not None else [label])


def show(view: Any) -> Any:
    """A panel over a :class:`~kernel_magics.classroom.teacher.ClassView`; Refresh asks the service again."""
    import ipywidgets as widgets

    panel = widgets.VBox()
    panel.add_class("km-classroom-panel")
    note = widgets.HTML()

    def act(action: Any, *args: Any) -> None:
        try:
            action(*args)
            view.refresh()
            note.value = ""
        except Exception as exc:  # noqa: BLE001 - the service's one line, shown in the panel
            note.value = f"<span style='color:#b00'>{html.escape(str(exc))}</span>"
        draw()

    def button(text: str, action: Any, *args: Any) -> Any:
        widget = widgets.Button(description=text, layout=widgets.Layout(width="auto"))
        widget.on_click(lambda _: act(action, *args))
        return widget

    def draw() -> None:
        data, slots = view.data, view.data.get("slots", {})
        memory = data.get("memory", {})
        head = widgets.HTML(value=f"<b>{html.escape(str(data.get('model')))}</b> on {html.escape(str(data.get('backend')))}"
                                  f" &middot; memory {html.escape(str(memory.get('rss_mb')))} MiB RSS"
                                  + "".join(f" &middot; cuda:{d['device']} {d['allocated_mb']} MiB" for d in memory.get("cuda", [])))  # fmt: skip
        refresh = button("Refresh", lambda: None)
        rows = [
            widgets.HBox([head, refresh]),
            widgets.HTML(value=users_table(view.users())),
            widgets.HTML(value="<b>Adapters</b>"),
        ]
        rows += [_row(model, button("Unload", view.unload, model)) for model in view.adapters()] or [
            _row("none published")
        ]
        rows.append(widgets.HTML(value=f"<b>Training slots</b> ({slots.get('slots', 0)})"))
        rows += [_row(f"{s['user']} · {s['label']} · {s['message']} · {_figures(s)}", button("Stop", view.stop_run, s["lease_id"]))
                 for s in slots.get("held", [])]  # fmt: skip
        rows += [_row(f"{s['user']} · {s['label']} · {s['message']}") for s in slots.get("queued", [])]
        panel.children = [*rows, note]

    draw()
    return panel


def _figures(lease: dict[str, Any]) -> str:
    figures = lease.get("figures") or {}
    return ", ".join(f"{k} {v}" for k, v in figures.items()) or "no figures yet"
