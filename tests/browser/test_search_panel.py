"""JupyterLab in Chromium: %swift search shows the panel, typing a query shows cards, cards let through by a
relaxed filter are marked, "Use" sets the default."""

from __future__ import annotations

from jlab import open_notebook, run_all_cells, screenshot, write_notebook
from search_queries import write_mini_catalog


def _run_cell(page, index: int) -> None:
    page.evaluate(
        """(i) => {
            const nb = window.jupyterapp.shell.currentWidget.content;
            nb.activeCellIndex = i;
            return window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


def test_search_panel_query_cards_and_use(lab, page):
    catalog = write_mini_catalog(lab.root / "mini-catalog.jsonl")
    write_notebook(
        lab,
        "search.ipynb",
        [
            "%load_ext kernel_magics",
            f"%swift search 看图 -k 3 --catalog {catalog} --no-include-local",
            "import kernel_magics as km\n"
            "magics = get_ipython().magics_manager.registry['SwiftMagics']\n"
            "print('DEFAULT=' + km.settings.default_model + '|' + magics.default_model)",
        ],
    )
    open_notebook(page, lab, "search.ipynb")
    run_all_cells(page)
    panel = page.locator(".km-search")
    panel.wait_for(timeout=120_000)
    cards = panel.locator(".km-card")
    cards.first.wait_for(timeout=60_000)
    prefilled = cards.evaluate_all("els => els.map(e => e.dataset.id)")
    assert panel.locator(".km-relaxed").count() == 0  # three image cards: nothing to relax
    assert set(prefilled) == {"Qwen/Qwen2-VL-2B-Instruct", "openbmb/MiniCPM-V-2_6", "llava-hf/llava-1.5-7b-hf"}
    assert "看图 → image input" in panel.locator(".km-understood").inner_text()

    query = panel.locator(".km-search-query")
    query.fill("中文向量模型")  # Chinese goes through jieba, the lexicon and query understanding
    answered = panel.locator(".km-search-results[data-query='中文向量模型']")
    answered.wait_for(timeout=60_000)
    strict = answered.locator(".km-card:not(.km-relaxed)").evaluate_all("els => els.map(e => e.dataset.id)")
    assert strict == ["BAAI/bge-small-zh-v1.5"]
    assert "中文 → Chinese" in panel.locator(".km-understood").inner_text()
    screenshot(page, "search_panel_chinese")

    query.fill("Chinese OCR model under 1B")  # no card passes: the size bound is relaxed, nearest first
    answered = panel.locator(".km-search-results[data-query='Chinese OCR model under 1B']")
    answered.wait_for(timeout=60_000)
    relaxed = answered.locator(".km-card.km-relaxed")
    assert relaxed.evaluate_all("els => els.map(e => e.dataset.id)") == [
        "Qwen/Qwen2-VL-2B-Instruct",
        "openbmb/MiniCPM-V-2_6",
    ]
    assert relaxed.first.locator(".km-badge-relaxed").inner_text() == "relaxed: ≤ 1B"
    assert "nearest models outside" in answered.locator(".km-relaxed-divider").inner_text()
    assert "'≤ 1B' removed the most" in panel.locator(".km-note").inner_text()
    screenshot(page, "search_panel_relaxed")
    panel.locator("button.km-refresh").click()  # the lab runs with HF_HUB_OFFLINE=1: one line, nothing changes
    page.wait_for_function(
        "() => (document.querySelector('.km-search .km-status') || {}).textContent?.includes('offline (HF_HUB_OFFLINE=1)')",
        timeout=60_000,
    )
    assert not panel.locator("button.km-refresh").is_disabled()
    query.fill("")
    query.type("small code model", delay=20)  # the panel searches as you type
    answered = panel.locator(".km-search-results[data-query='small code model']")
    answered.wait_for(timeout=60_000)
    ids = answered.locator(".km-card:not(.km-relaxed)").evaluate_all("els => els.map(e => e.dataset.id)")
    assert ids and all("coder" in i.lower() for i in ids)
    first = answered.locator(".km-card").first
    chosen = first.get_attribute("data-id")
    assert "code" in first.locator(".km-card-chips").inner_text()
    assert "why:" in first.locator(".km-card-why").inner_text()

    first.locator("button.km-use").click()
    page.wait_for_function(
        "(id) => document.querySelector('.km-search .km-default').textContent === id", arg=chosen, timeout=30_000
    )
    assert first.locator("button.km-use").inner_text() == "✓ In use"
    _run_cell(page, 2)
    page.wait_for_function(
        "(id) => [...document.querySelectorAll('.jp-OutputArea-output')].some(o => o.textContent.includes('DEFAULT=' + id + '|' + id))",
        arg=chosen,
        timeout=60_000,
    )
    shot = screenshot(page, "search_panel")
    assert shot.stat().st_size > 20_000
