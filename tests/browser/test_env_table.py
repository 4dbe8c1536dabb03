"""JupyterLab in Chromium: %load_ext kernel_magics + %swift env renders the environment table."""

from __future__ import annotations

from jlab import open_notebook, run_all_cells, screenshot, write_notebook


def test_env_table_renders_device_row(lab, page):
    write_notebook(lab, "env.ipynb", ["%load_ext kernel_magics", "%swift env", "%swift evn"])
    open_notebook(page, lab, "env.ipynb")
    run_all_cells(page)
    table = page.locator("table.km-env")
    table.wait_for(timeout=60_000)
    device_row = table.locator("tr", has=page.locator("th", has_text="device")).first
    assert device_row.locator("td").inner_text().split(" — ")[0] in ("cpu", "cuda", "mps")
    assert table.locator("th", has_text="torch").count() >= 1
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").last
    assert "unknown subcommand 'evn'" in error.inner_text()
    assert "Traceback" not in error.inner_text()
    shot = screenshot(page, "env_table")
    assert shot.stat().st_size > 10_000
