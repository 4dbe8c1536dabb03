"""Helpers for browser tests: write/open notebooks in the ``lab`` fixture and run their cells.

Import them in a test as ``from jlab import write_notebook, open_notebook, run_all_cells, screenshot``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "browser"


def write_notebook(lab, name: str, cells: list[str]) -> Path:
    """Write a notebook of code cells into the lab's root folder."""
    nb = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "source": src, "outputs": [], "execution_count": None}
            for src in cells
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path = lab.root / name
    path.write_text(json.dumps(nb))
    return path


def copy_notebook(lab, source: Path) -> str:
    shutil.copy(source, lab.root / source.name)
    return source.name


def open_notebook(page, lab, name: str, timeout: float = 120) -> None:
    """Open a notebook, alone in a fresh workspace, and wait until it is the current tab and its kernel is idle."""
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-Notebook", timeout=timeout * 1000)
    page.wait_for_function(
        """(name) => {
            const app = window.jupyterapp;
            const w = app && app.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            return w && w.context && w.context.path === name && k && k.status === 'idle';
        }""",
        arg=name,
        timeout=timeout * 1000,
    )


def run_all_cells(page, timeout: float = 300) -> None:
    """Run every cell of the open notebook and wait until no cell is queued or running.

    (After an error JupyterLab leaves the remaining cells unrun, with empty prompts.)
    """
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_timeout(1000)
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            const w = window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            return prompts.length > 0 && !prompts.some(p => p.textContent.includes('*')) && k && k.status === 'idle';
        }""",
        timeout=timeout * 1000,
    )


def screenshot(page, name: str) -> Path:
    """Save a full-page PNG under test-output/browser/ and return its path."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_streamed(seen: list[str]) -> None:
    """The answer was shown in part before it was complete.

    ``seen`` are the texts a MutationObserver recorded. The panel pushes at most every 50 ms, so on a fast
    machine a short reply may arrive in two pushes; one shorter text before the last proves streaming.
    """
    texts = [s for s in seen if s.strip()]
    assert len(set(texts)) >= 2, f"the reply did not stream: {texts[:5]}"
    assert len(texts[0].strip()) < len(texts[-1].strip()), f"the reply did not grow: {texts[:5]}"
