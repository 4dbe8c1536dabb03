"""JupyterLab in Chromium: %swift compare shows the models' replies side by side; %swift eval a table."""

from __future__ import annotations

from jlab import open_notebook, run_all_cells, screenshot, write_notebook


def test_compare_panel_and_eval_table(lab, page):
    cells = [
        "%load_ext kernel_magics",
        "%swift compare --models base=tiny,llama=tiny-llama --prompt 'What is 2+2?' --prompt 你好吗？ "
        "--no-chat-template --max-new-tokens 6",
        "from kernel_magics.testing import tiny_dataset\n"
        "%swift eval tiny -d {tiny_dataset('dpo')} --metrics perplexity,preference_accuracy --limit 8",
        "%swift eval tiny -d {tiny_dataset('dpo')} --metrics perplexty",
    ]
    write_notebook(lab, "compare.ipynb", cells)
    open_notebook(page, lab, "compare.ipynb")
    run_all_cells(page)
    table = page.locator("table.km-compare")
    table.wait_for(timeout=120_000)
    headers = table.locator("tr").first.locator("th").all_inner_texts()
    assert headers == ["prompt", "base", "llama"]
    assert table.locator("tr").count() == 3
    assert "你好吗？" in table.inner_text()
    frame = page.locator(".jp-OutputArea-output table.dataframe")
    frame.wait_for(timeout=60_000)
    assert "preference_accuracy" in frame.inner_text() and "perplexity" in frame.inner_text()
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").last
    assert "did you mean 'perplexity'" in error.inner_text() and "Traceback" not in error.inner_text()
    shot = screenshot(page, "compare_panel")
    assert shot.stat().st_size > 10_000
