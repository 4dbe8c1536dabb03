"""JupyterLab in Chromium: %swift chat streams a reply into the panel; compare mode shows columns."""

from __future__ import annotations

import pytest
from jlab import assert_streamed, open_notebook, run_all_cells, screenshot, write_notebook
from real_support import real_model  # noqa: F401 - SmolLM2, converted once per session

SETUP = """
import sys
sys.path.insert(0, {tests!r})
import kernel_magics as km
from serve_support import make_lora_adapter
adapter = make_lora_adapter(km.resolve_model("tiny"), {adapter!r}, seed=1)
srv = km.serve("tiny", adapters={{"tuned": adapter}}, backend="transformers", name="browser-chat")
"""

# records every text the first answer shows, to prove it grew token by token
WATCH = """() => {
    window.kmSeen = [];
    const observer = new MutationObserver(() => {
        const answer = document.querySelector('.km-chat-answer .km-chat-markdown');
        if (answer) window.kmSeen.push(answer.textContent.replace('▍', ''));
    });
    observer.observe(document.querySelector('.km-chat-transcript'), {subtree: true, childList: true, characterData: true});
}"""


def test_chat_panel_streams_a_reply(lab, page, tmp_path):
    tests = str(__import__("pathlib").Path(__file__).resolve().parents[1])
    cells = [
        "%load_ext kernel_magics",
        SETUP.format(tests=tests, adapter=str(tmp_path / "tuned")),
        "%swift chat --model tiny --temperature 1.0 --max-tokens 200 --system 'Answer in Markdown.'",
        "panel = _",
        "%swift chat --compare base,tuned --temperature 0 --max-tokens 16",
        "%swift chat --model missing",
    ]
    write_notebook(lab, "chat.ipynb", cells)
    open_notebook(page, lab, "chat.ipynb")
    try:
        run_all_cells(page, timeout=180)
    finally:
        screenshot(page, "chat_panel_cells")
    panel = page.locator(".km-chat").first
    panel.wait_for(timeout=60_000)
    assert "127.0.0.1" in panel.locator(".km-chat-url").inner_text()
    assert panel.locator(".km-chat-system").input_value() == "Answer in Markdown."

    page.evaluate(WATCH)
    panel.locator(".km-chat-input").fill("Tell me about the sun.")
    panel.locator(".km-chat-send").click()
    answer = panel.locator(".km-chat-answer").first
    answer.locator(".km-chat-copy").wait_for(timeout=120_000)  # shown once the reply is complete
    final = answer.locator(".km-chat-markdown").inner_text()
    assert_streamed(page.evaluate("window.kmSeen"))
    assert "tok/s" in answer.locator(".km-chat-stats").inner_text()
    assert len(final.strip()) > 0
    assert panel.locator(".km-chat-user").inner_text().endswith("Tell me about the sun.")
    shot = screenshot(page, "chat_panel")
    assert shot.stat().st_size > 10_000

    compare = page.locator(".km-chat").nth(1)
    compare.locator(".km-chat-input").fill("What is the capital of France?")
    compare.locator(".km-chat-input").press("Enter")
    better = compare.locator(".km-chat-prefer")
    better.first.wait_for(timeout=120_000)
    columns = compare.locator(".km-chat-answer")
    assert columns.count() == 2
    assert [columns.nth(i).get_attribute("data-model") for i in range(2)] == ["tiny", "tuned"]
    better.nth(1).click()
    compare.locator(".km-chat-answer.km-preferred[data-model='tuned']").wait_for(timeout=30_000)
    error = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").last
    assert "model 'missing' is not served" in error.inner_text() and "Traceback" not in error.inner_text()
    screenshot(page, "chat_panel_compare")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.real
def test_chat_panel_answers_with_the_real_model(lab, page, request):
    """SmolLM2 in the panel: a real question gets its real, greedy answer, streamed."""
    request.getfixturevalue("real_model")
    cells = [
        "%load_ext kernel_magics",
        "import kernel_magics as km\n"  # a port of its own: 8000 and up are busy with other servers
        f"srv = km.serve('smollm2', backend='transformers', name='browser-real', port={_free_port()})",
        "%swift chat --model smollm2 --temperature 0 --max-tokens 24",
    ]
    write_notebook(lab, "chat_real.ipynb", cells)
    open_notebook(page, lab, "chat_real.ipynb")
    try:
        run_all_cells(page, timeout=300)
    finally:
        screenshot(page, "chat_panel_real_cells")
    panel = page.locator(".km-chat").first
    panel.wait_for(timeout=60_000)
    panel.locator(".km-chat-input").fill("What is the capital of France?")
    panel.locator(".km-chat-send").click()
    answer = panel.locator(".km-chat-answer").first
    answer.locator(".km-chat-copy").wait_for(timeout=180_000)
    assert answer.locator(".km-chat-markdown").inner_text().strip().startswith("The capital of France is Paris.")
    assert "tok/s" in answer.locator(".km-chat-stats").inner_text()
    screenshot(page, "chat_panel_real")
