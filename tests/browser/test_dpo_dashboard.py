"""JupyterLab in Chromium: ``%%swift dpo`` renders the dashboard with the reward panels drawn live."""

from __future__ import annotations

from jlab import open_notebook, run_all_cells, screenshot, write_notebook

from kernel_magics.testing import tiny_dataset

DPO_CELL = """%%swift dpo --model tiny --dataset {data} --method lora --lora-r 8 --lora-alpha 16 --logging-steps 1
max_steps: 20
lr: 1e-3
beta: 0.1
save_steps: 100000
"""

FINISHED = """() => {
    const board = document.querySelector('.km-dashboard');
    return !!board && board.querySelector('.km-status').textContent === 'finished';
}"""


def test_dpo_dashboard_draws_rewards(lab, page):
    cells = [
        "%load_ext kernel_magics\nimport torch\ntorch.set_num_threads(1)",
        DPO_CELL.format(data=tiny_dataset("dpo")),
    ]
    write_notebook(lab, "dpo_dashboard.ipynb", cells)
    open_notebook(page, lab, "dpo_dashboard.ipynb")
    run_all_cells(page, timeout=240)
    board = page.locator(".km-dashboard")
    board.wait_for(timeout=120_000)
    try:
        page.wait_for_function(FINISHED, timeout=240_000)
    finally:
        page.evaluate("() => document.querySelector('.km-dashboard .js-plotly-plot')?.scrollIntoView({block: 'end'})")
        page.wait_for_timeout(500)
        shot = screenshot(page, "dpo_dashboard")
    assert shot.stat().st_size > 20_000
    titles = page.evaluate(
        """() => [...document.querySelectorAll('.km-dashboard .js-plotly-plot .annotation-text')]
            .map(node => node.textContent)"""
    )
    assert "rewards: chosen · rejected · margin" in titles and "reward accuracy" in titles, titles
    # loss, lr, grad-norm, tok/s, memory, eval loss + rewards chosen/rejected/margin, accuracy, logps chosen/rejected
    points = page.evaluate(
        """() => document.querySelector('.km-dashboard .js-plotly-plot').data
            .map(trace => [trace.name, (trace.x || []).length])"""
    )
    drawn = dict(points)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen"):
        assert drawn.get(name) == 20, (name, drawn)
    assert "dpo β=0.1" in board.inner_text()
