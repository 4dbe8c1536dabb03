"""JupyterLab in Chromium: the quickstart lab runs top to bottom on the tiny model."""

from __future__ import annotations

from pathlib import Path

from jlab import copy_notebook, open_notebook, run_all_cells, screenshot

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "00_quickstart.ipynb"


def test_quickstart_runs_all_cells(lab, page):
    name = copy_notebook(lab, QUICKSTART)
    open_notebook(page, lab, name)
    try:
        run_all_cells(page, timeout=600)
    finally:
        screenshot(page, "quickstart_lab")
    counts = page.evaluate(
        """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
                   const out = []; for (let i = 0; i < cells.length; i++) { const c = cells.get(i);
                   if (c.type === 'code') out.push(c.executionCount); } return out; }"""
    )
    assert counts and all(isinstance(n, int) and n > 0 for n in counts), counts  # every code cell ran
    text = page.locator(".jp-Notebook").inner_text()
    assert "tuned:" in text and "loss" in text  # the run's metrics and the chat replies rendered
    # the only error is the demonstrated typo, shown as one line
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    messages = [e.inner_text() for e in errors.all() if "Error" in e.inner_text()]
    assert messages and all("Traceback" not in m for m in messages)
    assert any("unknown subcommand 'evn'" in m for m in messages)
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0
    assert screenshot(page, "quickstart_lab").stat().st_size > 20_000
