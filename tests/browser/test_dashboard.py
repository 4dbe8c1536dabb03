"""JupyterLab in Chromium: ``%%swift sft`` renders the live dashboard; a second run waits queued for the device's
lease; the Stop
button and the kernel's interrupt button (■, kernel idle) each stop a run at a step boundary with a
checkpoint, and the kernel stays alive."""

from __future__ import annotations

import pytest
from jlab import open_notebook, run_all_cells, screenshot, write_notebook
from real_support import real_model  # noqa: F401 - SmolLM2, converted once per session

from kernel_magics.testing import tiny_dataset

SFT_CELL = """%%swift sft --model tiny --dataset {data} --lora-r 4 --lora-alpha 8 --logging-steps 1
max_steps: 3000
save_steps: 100000
lr: 1e-3
"""

# has dashboard ``index`` plotted at least ``n`` loss points?
AT_LEAST = """([index, n]) => {
    const board = document.querySelectorAll('.km-dashboard')[index];
    const plot = board && board.querySelector('.js-plotly-plot');
    return !!(plot && plot.data && plot.data[0] && plot.data[0].x && plot.data[0].x.length >= n);
}"""


def _status(page, index: int) -> str:
    return page.locator(".km-dashboard").nth(index).locator(".km-status").inner_text()


def test_dashboard_renders_and_stop_and_interrupt_work(lab, page):
    data = str(tiny_dataset("sft"))
    cells = [
        "%load_ext kernel_magics\n%config SwiftMagics.device_lease = 'on'",  # one run at a time on the CPU too
        SFT_CELL.format(data=data),
        "first = _.run",
        SFT_CELL.format(data=data),
        "second = _.run",
    ]
    write_notebook(lab, "dashboard.ipynb", cells)
    open_notebook(page, lab, "dashboard.ipynb")
    run_all_cells(page, timeout=240)
    dashboards = page.locator(".km-dashboard")
    dashboards.nth(1).wait_for(timeout=60_000)
    try:
        page.wait_for_function(AT_LEAST, arg=[0, 5], timeout=120_000)
    finally:
        screenshot(page, "dashboard_running")
    assert _status(page, 1) == "queued"  # with the device's lease on, one run trains at a time; the second waits
    first = dashboards.nth(0)
    assert first.locator(".js-plotly-plot .scatterlayer .trace").count() >= 5  # loss, lr, grad-norm, tok/s, memory
    assert "step" in first.locator(".km-progress").inner_text() and "ETA" in first.locator(".km-progress").inner_text()
    assert _status(page, 0) == "running"

    first.get_by_role("button", name="Stop").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.km-dashboard')[0].querySelector('.km-status').textContent === 'stopped'",
        timeout=120_000,
    )
    page.wait_for_function(AT_LEAST, arg=[1, 3], timeout=120_000)  # the queued run started
    assert _status(page, 1) == "running"

    page.evaluate("() => window.jupyterapp.commands.execute('notebook:interrupt-kernel')")  # the ■ button
    page.wait_for_function(
        "() => document.querySelectorAll('.km-dashboard')[1].querySelector('.km-status').textContent === 'stopped'",
        timeout=120_000,
    )
    shot = screenshot(page, "dashboard_stopped")
    assert shot.stat().st_size > 20_000

    # the kernel is alive and both runs ended with a complete checkpoint
    page.evaluate(
        """() => {
        const nb = window.jupyterapp.shell.currentWidget;
        return nb.sessionContext.session.kernel.requestExecute({code:
          "import json; open('checks.json','w').write(json.dumps([first.status, second.status, "
          + "bool(first.checkpoints), bool(second.checkpoints), first.checkpoints[-1].name, "
          + "int(first.metrics.step.max())]))"}).done;
    }"""
    )
    checks = __import__("json").loads((lab.root / "checks.json").read_text())
    assert checks[:4] == ["stopped", "stopped", True, True], checks
    assert checks[4] == f"checkpoint-{checks[5]}"


REAL_CELL = """%%swift sft --model smollm2 --dataset {data} --method lora --max-steps 8 --logging-steps 1
lr: 2e-3
lora_r: 16
lora_alpha: 32
max_length: 128
"""


@pytest.mark.real
def test_dashboard_trains_the_real_model(lab, page, request):
    """SmolLM2 learning the pirate style live: the loss curve falls to the end and the run finishes."""
    request.getfixturevalue("real_model")
    from kernel_magics.lab_data import pirate_rows, write_jsonl

    data = write_jsonl(pirate_rows(), lab.root / "pirate.jsonl")
    write_notebook(lab, "dashboard_real.ipynb", ["%load_ext kernel_magics", REAL_CELL.format(data=data), "run = _.run"])
    open_notebook(page, lab, "dashboard_real.ipynb")
    run_all_cells(page, timeout=300)
    board = page.locator(".km-dashboard").first
    board.wait_for(timeout=60_000)
    try:
        page.wait_for_function(
            "() => document.querySelector('.km-dashboard .km-status').textContent === 'finished'", timeout=600_000
        )
    finally:
        screenshot(page, "dashboard_real")
    losses = page.evaluate("() => document.querySelector('.km-dashboard .js-plotly-plot').data[0].y")
    assert len(losses) == 8 and losses[-1] < 0.5 * losses[0], losses
