"""The launcher's "Runs" tab: ``km.runs()`` as rows, each with its dashboard, Resume (a stopped or failed
run with a checkpoint) and Stop (a run still going in this kernel)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..errors import SwiftError
from .launcher_i18n import word


def live_run(output_dir: str) -> Any:
    """The run of this kernel training in ``output_dir`` (None when none is)."""
    from ..jobs import live_jobs

    target = Path(output_dir).resolve()
    return next((job for job in live_jobs("run") if Path(job.output_dir).resolve() == target), None)


def run_at(output_dir: str) -> Any:
    """The run in ``output_dir``: this kernel's live object when there is one; else from its folder, watched
    live from here when it still trains in its own process (``km.attach``)."""
    from ..train.api import attach

    return attach(output_dir)


class RunsPanel(W.VBox):
    """``km.runs()`` with a dashboard, Resume and Stop for each run."""

    def __init__(self, language: str = "en") -> None:
        self.language = language
        self.table = W.VBox()
        self.output = W.Output()
        self.message = W.HTML()
        refresh = W.Button(description=word("refresh", language), icon="refresh")
        refresh.on_click(lambda _b: self.refresh())
        super().__init__([refresh, self.table, self.message, self.output])
        self.add_class("km-launcher-runs")
        self.refresh()

    def refresh(self) -> None:
        """Read the workspace's runs again and redraw the rows."""
        from ..train.api import runs

        frame = runs()
        if frame.empty:
            self.table.children = [W.HTML(f"<i>{word('no_runs', self.language)}</i>")]
            return
        self.table.children = [self._row(record) for record in frame.to_dict(orient="records")]

    def _row(self, record: dict[str, Any]) -> W.Widget:
        folder = str(record["output_dir"])
        live = live_run(folder) is not None or str(record["status"]).startswith(("running", "queued"))
        loss = (
            f"{record['loss']:.4f}"
            if isinstance(record.get("loss"), float) and record["loss"] == record["loss"]
            else "-"
        )
        text = (
            f"<code>{html.escape(str(record['run_id']))}</code> {html.escape(str(record['kind']))} · "
            f"<b class='km-run-status'>{html.escape(str(record['status']))}</b> · {html.escape(str(record['model']))}"
            f" · step {record['step']} · loss {loss}"
        )
        buttons = [self._button("attach", lambda: self.attach(folder))]
        if record["status"] in ("stopped", "failed") and not live:
            buttons.append(self._button("resume", lambda: self.resume(folder)))
        if live:
            buttons.append(self._button("stop", lambda: self.stop(folder)))
        row = W.HBox([W.HTML(text, layout=W.Layout(width="640px")), *buttons])
        row.add_class("km-runs-row")
        return row

    def _button(self, key: str, action: Any) -> W.Button:
        button = W.Button(description=word(key, self.language), layout=W.Layout(width="auto"))
        button.add_class(f"km-run-{key}")
        button.on_click(lambda _b: self._do(action))
        return button

    def _do(self, action: Any) -> None:
        try:
            action()
        except SwiftError as exc:
            self.message.value = f"<span style='color:#c62828'>{html.escape(str(exc))}</span>"

    def attach(self, folder: str) -> Any:
        """Show the run's dashboard (live for a run of this kernel, replayed otherwise)."""
        return self._show(run_at(folder))

    def resume(self, folder: str) -> Any:
        """Continue a stopped or failed run from its last checkpoint and show its dashboard."""
        run = run_at(folder)
        run.resume()
        self.refresh()
        return self._show(run)

    def stop(self, folder: str) -> None:
        """Ask a run to stop at the next step (with a checkpoint), whichever kernel started it."""
        run_at(folder).stop()
        self.refresh()

    def _show(self, run: Any) -> Any:
        from IPython.display import display

        from .dashboard import show

        board = show(run)
        self.output.clear_output()
        with self.output:
            display(board)
        return board
