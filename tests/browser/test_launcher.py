"""JupyterLab in Chromium: ``%swift`` alone opens the launcher; SmolLM2 is picked through the search panel and
the plan shows; the tiny model with the packaged dataset is run from the form (its dashboard finishes); "Insert
cell" puts the same ``%%swift`` cell below, which runs too. The same launcher in Chinese. A learner who
types nothing but a model and a step count fine-tunes SmolLM2, then serves the run and chats with it from
the serve & chat tab."""

from __future__ import annotations

from jlab import open_notebook, run_all_cells, screenshot, write_notebook
from real_support import real_model  # noqa: F401 - SmolLM2, converted once per session

from kernel_magics.testing import tiny_dataset

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"

FINISHED = """(sel) => [...document.querySelectorAll(sel)].some(b => (b.querySelector('.km-status') || {}).textContent === 'finished')"""
RUN_CELL = """(i) => { const nb = window.jupyterapp.shell.currentWidget.content; nb.activeCellIndex = i;
    return window.jupyterapp.commands.execute('notebook:run-cell'); }"""
CELL_FINISHED = """(i) => { const cell = window.jupyterapp.shell.currentWidget.content.widgets[i];
    const status = cell && cell.node.querySelector('.km-dashboard .km-status');
    return !!status && status.textContent === 'finished'; }"""
CELL_SOURCES = """() => { const cells = window.jupyterapp.shell.currentWidget.content.model.cells; const out = [];
    for (let i = 0; i < cells.length; i++) out.push(cells.get(i).sharedModel.getSource()); return out; }"""


def _tab(page, title: str) -> None:
    page.locator(".km-launcher .lm-TabBar-tab", has_text=title).first.click()


def _fill(page, form: str, field: str, value: str) -> None:
    box = page.locator(f".km-form-{form} .km-field-{field} input").first
    box.fill(value)
    box.press("Tab")


def _plan_for(page, form: str, model_text: str) -> str:
    plan = page.locator(f".km-form-{form} .km-plan").first
    page.wait_for_function(
        "([sel, text]) => { const p = document.querySelector(sel); return p && p.textContent.includes(text); }",
        arg=[f".km-form-{form} .km-plan", model_text],
        timeout=180_000,
    )
    return plan.inner_text()


def test_launcher_search_plan_run_and_insert_cell(lab, page, request, tiny_model):
    request.getfixturevalue("real_model")
    write_notebook(lab, "launcher.ipynb", ["%load_ext kernel_magics", "%swift"])
    open_notebook(page, lab, "launcher.ipynb")
    run_all_cells(page)
    page.locator(".km-launcher").wait_for(timeout=120_000)
    page.locator(".km-form-sft").first.wait_for(timeout=60_000)

    _tab(page, "Find a model")  # pick SmolLM2 through the search panel's "Use"
    query = page.locator(".km-launcher .km-search-query")
    query.fill("SmolLM2 135M instruct")
    card = page.locator(f".km-search-results[data-query='SmolLM2 135M instruct'] .km-card[data-id='{SMOLLM2}']")
    card.wait_for(timeout=120_000)
    card.locator("button.km-use").click()
    _tab(page, "Fine-tune")
    model_box = page.locator(".km-form-sft .km-field-model input").first
    page.wait_for_function("(id) => document.querySelector('.km-form-sft .km-field-model input').value === id",
                           arg=SMOLLM2, timeout=60_000)  # fmt: skip
    text = _plan_for(page, "sft", SMOLLM2 + ":")
    assert "Plan: lora" in text and "estimated peak memory" in text and "why: auto on the CPU" in text
    screenshot(page, "launcher_plan_smollm2")

    data = str(tiny_dataset("sft"))
    options = page.locator(".km-form-sft .km-field-dataset datalist option").evaluate_all("os => os.map(o => o.value)")
    assert data in options  # the packaged dataset is offered by the picker
    _fill(page, "sft", "dataset", data)
    model_box.fill("tiny")  # the tiny model keeps the run short
    model_box.press("Tab")
    _fill(page, "sft", "max_steps", "5")
    text = _plan_for(page, "sft", "tiny:")
    assert "Plan: lora" in text
    page.locator(".km-form-sft button.km-launcher-run").click()
    try:
        page.locator(".km-form-sft .km-dashboard").first.wait_for(timeout=180_000)
        page.wait_for_function(FINISHED, arg=".km-form-sft .km-dashboard", timeout=240_000)
    finally:
        screenshot(page, "launcher_run_dashboard")
    shown = page.locator(".km-form-sft .km-launcher-cell").first.inner_text()
    page.locator(".km-form-sft .km-field-dataset button", has_text="Preview").click()
    summary = page.locator(".km-form-sft .km-dataset-summary").first  # the dataset viewer under the fields
    summary.wait_for(timeout=60_000)
    assert "240" in summary.inner_text()
    assert shown.startswith("%swift sft --model tiny --dataset") and "--max-steps 5" in shown

    page.locator(".km-form-sft button.km-launcher-insert").click()
    page.wait_for_function("() => document.querySelector('.km-insert-note')?.textContent.includes('inserted')",
                           timeout=30_000)  # fmt: skip
    sources = page.evaluate(CELL_SOURCES)
    assert len(sources) == 3 and sources[2] == shown  # below the launcher's cell, the very cell that ran
    assert page.locator(".km-cell-bridge").first.get_attribute("data-inserted-by") == "context"  # no app needed
    page.evaluate(RUN_CELL, 2)
    page.wait_for_function(CELL_FINISHED, arg=2, timeout=240_000)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets[2].node.scrollIntoView()")
    screenshot(page, "launcher_inserted_cell")


def test_launcher_in_chinese(lab, page, tiny_model):
    write_notebook(
        lab, "launcher_zh.ipynb", ["%load_ext kernel_magics", '%config SwiftMagics.language = "zh"', "%swift"]
    )
    open_notebook(page, lab, "launcher_zh.ipynb")
    run_all_cells(page)
    page.locator(".km-launcher").wait_for(timeout=120_000)
    titles = page.locator(".km-launcher > .lm-TabBar .lm-TabBar-tab, .km-launcher .lm-TabBar-tab").all_inner_texts()
    assert {"找模型", "下载", "微调", "部署与对话", "合并与导出", "评测", "训练记录"} <= set(titles)
    labels = page.locator(".km-form-sft .km-field-label").all_inner_texts()
    assert labels[:5] == ["模型", "数据集", "方法", "步数", "学习率"]
    _fill(page, "sft", "model", "tiny")
    text = _plan_for(page, "sft", "tiny:")
    assert "训练计划" in text and "估算峰值显存" in text and "CPU 上自动选择 LoRA" in text  # the reasons too
    page.locator(".km-form-sft button.km-launcher-insert").click()
    page.wait_for_function("() => document.querySelector('.km-insert-note')?.textContent.includes('已插入')",
                           timeout=30_000)  # fmt: skip
    assert page.evaluate(CELL_SOURCES)[3] == "%swift sft --model tiny"
    screenshot(page, "launcher_zh")
    _tab(page, "偏好学习")  # the preference form: its knobs under "more", with their help and default
    page.locator(".km-form-dpo").get_by_text("更多参数").first.click()
    beta = page.locator(".km-form-dpo .km-field-beta").first
    beta.wait_for(timeout=30_000)
    assert "偏好项（或 KL 项）的强度" in beta.inner_text()
    assert "默认: 0.5" in page.locator(".km-form-dpo .km-field-simpo_gamma").first.inner_text()
    beta.scroll_into_view_if_needed()
    screenshot(page, "launcher_zh_more")


def test_launcher_fine_tunes_smollm2_then_serves_and_chats_with_it(lab, page, request):
    request.getfixturevalue("real_model")
    write_notebook(lab, "launcher_chat.ipynb", ["%load_ext kernel_magics", "%swift"])
    open_notebook(page, lab, "launcher_chat.ipynb")
    run_all_cells(page)
    page.locator(".km-form-sft").first.wait_for(timeout=120_000)
    _fill(page, "sft", "model", "smollm2")
    _fill(page, "sft", "dataset", str(tiny_dataset("sft")))
    _fill(page, "sft", "max_steps", "2")
    _plan_for(page, "sft", "smollm2:")
    page.locator(".km-form-sft button.km-launcher-run").click()
    try:
        page.locator(".km-form-sft .km-dashboard").first.wait_for(timeout=180_000)
        page.wait_for_function(FINISHED, arg=".km-form-sft .km-dashboard", timeout=420_000)
    finally:
        screenshot(page, "launcher_smollm2_trained")
    assert "tuned" in page.locator(".km-launcher").first.inner_text()  # the status line: serve & chat is set

    _tab(page, "Serve & chat")
    serve = page.locator(".km-form-serve").first
    serve.wait_for(timeout=60_000)
    assert serve.locator(".km-field-model input").first.input_value() == "smollm2"
    adapters = serve.locator(".km-field-adapters textarea, .km-field-adapters input").first
    assert adapters.input_value().startswith("tuned=")
    serve.get_by_text("more (").first.click()  # the in-process engine: quicker to start than vLLM on a CPU
    serve.locator(".km-field-backend select").first.select_option("transformers")
    serve.locator("button.km-launcher-run").click()
    serve.locator(".km-server").first.wait_for(timeout=240_000)
    assert "tuned" in serve.locator(".km-server").first.inner_text()

    page.locator(".km-launcher .lm-TabBar-tab", has_text="chat").last.click()
    chat = page.locator(".km-form-chat").first
    assert chat.locator(".km-field-model input").first.input_value() == "tuned"
    chat.locator("button.km-launcher-run").click()
    panel = chat.locator(".km-chat").first
    panel.wait_for(timeout=120_000)
    panel.locator(".km-chat-max-tokens").fill("48")  # a short reply keeps the test short
    panel.locator(".km-chat-max-tokens").press("Tab")
    panel.locator(".km-chat-input").fill("Write a short poem about the sea.")
    panel.locator(".km-chat-send").click()
    answer = panel.locator(".km-chat-answer").first
    answer.locator(".km-chat-copy").wait_for(timeout=240_000)  # shown once the reply is complete
    assert answer.locator(".km-chat-markdown").inner_text().strip()
    answer.scroll_into_view_if_needed()
    screenshot(page, "launcher_smollm2_chat")
