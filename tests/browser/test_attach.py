"""JupyterLab in Chromium: a run keeps training when its notebook's kernel restarts; in the new kernel
``%swift attach RUN`` shows its live dashboard (history included), and its Stop button stops it."""

from __future__ import annotations

import json
import urllib.request

from jlab import open_notebook, run_all_cells, screenshot, write_notebook

from kernel_magics.testing import tiny_dataset

START = """%%swift sft --model tiny --dataset {data} --lora-r 4 --lora-alpha 8 --logging-steps 1
max_steps: 3000
save_steps: 100000
lr: 1e-3
"""
RECORD = "open('run_id.txt', 'w').write(_.run.name)"
PLOTTED = """(n) => {
    const plot = document.querySelector('.km-dashboard .js-plotly-plot');
    return !!(plot && plot.data && plot.data[0] && plot.data[0].x && plot.data[0].x.length >= n);
}"""


def _status(page) -> str:
    return page.locator(".km-dashboard .km-status").first.inner_text()


def _restart_kernel(lab, page) -> None:
    """What Kernel > Restart Kernel does: the kernel process is replaced by a new one."""
    kernel_id = page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id")
    request = urllib.request.Request(
        f"{lab.url}/api/kernels/{kernel_id}/restart?token={lab.token}", method="POST", data=b"{}"
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        assert answer.status == 200


def test_a_run_survives_a_kernel_restart_and_attach_shows_it_live(lab, page):
    write_notebook(lab, "before.ipynb", ["%load_ext kernel_magics", START.format(data=tiny_dataset("sft")), RECORD])
    open_notebook(page, lab, "before.ipynb")
    run_all_cells(page, timeout=240)
    page.wait_for_function(PLOTTED, arg=3, timeout=180_000)
    run_id = (lab.root / "run_id.txt").read_text()
    _restart_kernel(lab, page)

    write_notebook(lab, "after.ipynb", ["%load_ext kernel_magics", f"%swift attach {run_id}", "run = _.run"])
    open_notebook(page, lab, "after.ipynb")
    run_all_cells(page, timeout=240)
    page.locator(".km-dashboard").first.wait_for(timeout=60_000)
    steps_at_attach = page.evaluate("() => document.querySelector('.km-dashboard .js-plotly-plot').data[0].x.length")
    assert steps_at_attach >= 3  # the history from before the restart
    page.wait_for_function(PLOTTED, arg=steps_at_attach + 3, timeout=180_000)  # and it keeps training, live
    assert _status(page) == "running"
    screenshot(page, "attach_after_restart")

    page.locator(".km-dashboard").first.get_by_role("button", name="Stop").click()
    page.wait_for_function(
        "() => document.querySelector('.km-dashboard .km-status').textContent === 'stopped'", timeout=120_000
    )
    screenshot(page, "attach_stopped")
    status = json.loads((lab.root / "km-workspace" / "runs" / run_id / "status.json").read_text())
    assert status["state"] == "stopped"
    assert any(p.name.startswith("checkpoint-") for p in (lab.root / "km-workspace" / "runs" / run_id).iterdir())
