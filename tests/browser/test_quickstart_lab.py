"""JupyterLab in Chromium: the quickstart lab runs top to bottom on SmolLM2 and shows the tuned answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from jlab import copy_notebook, open_notebook, run_all_cells, screenshot
from real_support import real_model  # noqa: F401 - SmolLM2, converted once per session

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "00_quickstart.ipynb"


@pytest.mark.real
def test_quickstart_runs_all_cells(lab, page, request):
    request.getfixturevalue("real_model")
    name = copy_notebook(lab, QUICKSTART)
    open_notebook(page, lab, name)
    try:
        run_all_cells(page, timeout=1200)
    finally:
        screenshot(page, "quickstart_lab")
    counts = page.evaluate(
        """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
                   const out = []; for (let i = 0; i < cells.length; i++) { const c = cells.get(i);
                   if (c.type === 'code') out.push(c.executionCount); } return out; }"""
    )
    assert counts and all(isinstance(n, int) and n > 0 for n in counts), counts  # every code cell ran
    text = page.locator(".jp-Notebook").inner_text()
    assert "loss" in text and "Ahoy!" in text  # the metrics and the tuned answers rendered
    assert "Tokyo" in text  # the answers themselves are right
    # the only error is the demonstrated typo, shown as one line
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    messages = [e.inner_text() for e in errors.all() if "Error" in e.inner_text()]
    assert messages and all("Traceback" not in m for m in messages)
    assert any("unknown subcommand 'evn'" in m for m in messages)
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0
    assert screenshot(page, "quickstart_lab").stat().st_size > 20_000
