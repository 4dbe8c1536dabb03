"""JupyterLab in Chromium: the teacher's panel (%swift teacher) shows the class, and Unload acts on it."""

from __future__ import annotations

from jlab import open_notebook, run_all_cells, screenshot, write_notebook

VIEW = '''from kernel_magics.classroom.teacher import ClassView
from kernel_magics.widgets.classroom import show
data = {"model": "tiny-qwen2", "backend": "transformers", "memory": {"rss_mb": 512.0},
        "users": {"alice": {"requests_last_min": 4, "tokens_last_min": 321, "waiting": 0, "inside": 1, "most_ahead": 0},
                  "bob": {"requests_last_min": 40, "tokens_last_min": 5120, "waiting": 28, "inside": 2, "most_ahead": 1}},
        "adapters": {"alice": ["poem"], "bob": ["poem", "haiku"]},
        "slots": {"slots": 1, "held": [{"lease_id": "L1", "user": "alice", "label": "sft poems", "figures": {"step": 12},
                                        "message": "training: 29 min left of the slot"}],
                  "queued": [{"lease_id": "L2", "user": "bob", "label": "sft haiku", "message": "queued: 1st in line, about 30 min"}]}}
view = ClassView("http://classroom", "token", data)
view.refresh = lambda: view  # no service in this test: the panel redraws from the data
view.unload = lambda model: data["adapters"]["bob"].remove(model.split("/")[1])
show(view)'''


def test_teacher_panel(lab, page):
    cells = ["%load_ext kernel_magics", VIEW, "%swift teacher --url http://127.0.0.1:9 --token x"]
    write_notebook(lab, "teacher.ipynb", cells)
    open_notebook(page, lab, "teacher.ipynb")
    run_all_cells(page)
    panel = page.locator(".km-classroom-panel")
    panel.wait_for(timeout=120_000)
    text = panel.inner_text()
    for expected in ("tiny-qwen2", "5120", "alice/poem", "bob/haiku", "sft poems", "step 12", "1st in line"):
        assert expected in text, expected
    shot = screenshot(page, "teacher_panel")
    assert shot.stat().st_size > 10_000
    panel.locator(".widget-hbox", has_text="bob/haiku").locator("button", has_text="Unload").click()
    panel.locator(".widget-hbox", has_text="bob/haiku").wait_for(state="detached", timeout=30_000)
    assert "bob/poem" in panel.inner_text()
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").last
    assert "cannot reach the classroom service" in error.inner_text() and "Traceback" not in error.inner_text()
