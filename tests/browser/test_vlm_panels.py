"""JupyterLab in Chromium: the dataset viewer shows image rows and the bad row; the chat panel takes an
uploaded image, shows it in the turn and streams the vision-language model's answer."""

from __future__ import annotations

import json
from pathlib import Path

from jlab import assert_streamed, open_notebook, run_all_cells, screenshot, write_notebook

SETUP = """
import torch
torch.set_num_threads(1)
import kernel_magics as km
from kernel_magics.testing_vlm import make_tiny_vlm
vlm = make_tiny_vlm({vlm!r})
import socket
with socket.socket() as probe:  # a port of our own: parallel test runs start servers from 8000 up
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
srv = km.serve(str(vlm), backend="transformers", name="browser-vlm", port=port)
"""

# records every text the first answer shows, to prove it grew piece by piece
WATCH = """() => {
    window.kmSeen = [];
    const observer = new MutationObserver(() => {
        const answer = document.querySelector('.km-chat-answer .km-chat-markdown');
        if (answer) window.kmSeen.push(answer.textContent.replace('▍', ''));
    });
    observer.observe(document.querySelector('.km-chat-transcript'), {subtree: true, childList: true, characterData: true});
}"""


def test_dataset_viewer_and_chat_with_an_image(lab, page, km_cache, tmp_path):
    from kernel_magics.testing_vlm import make_tiny_vlm, tiny_image_dataset

    vlm = make_tiny_vlm(km_cache / "models" / "tiny-qwen2-vl")  # built once here, reused by the kernel
    shapes = tiny_image_dataset(lab.root / "shapes", n=10)
    rows = [json.loads(line) for line in (shapes / "vqa.jsonl").read_text().splitlines()]
    rows[3]["image"] = "images/missing.png"
    (shapes / "with_bad_row.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cells = [
        "%load_ext kernel_magics",
        f"%swift dataset {shapes / 'with_bad_row.jsonl'}",
        SETUP.format(vlm=str(vlm)),
        "%swift chat --temperature 1.0 --max-tokens 120",
    ]
    write_notebook(lab, "vlm.ipynb", cells)
    open_notebook(page, lab, "vlm.ipynb")
    try:
        run_all_cells(page, timeout=240)
    finally:
        screenshot(page, "vlm_cells")
        failures = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']")
        assert failures.count() == 0, failures.first.inner_text()[-3000:]

    viewer = page.locator(".km-dataset").first
    viewer.wait_for(timeout=60_000)
    assert "10 rows, format 'vqa', 9 images, 1 bad" in viewer.locator(".km-dataset-summary").inner_text()
    assert viewer.locator(".km-dataset-row").count() == 8  # first page
    page.wait_for_function(
        "() => [...document.querySelectorAll('.km-dataset-images img')].filter(i => i.naturalWidth > 0).length >= 8"
    )
    first = viewer.locator(".km-dataset-row").first
    assert "with_bad_row.jsonl line 1" in first.inner_text() and "a red circle" in first.inner_text()
    assert "56x56" in first.locator("figcaption").inner_text()
    problems = viewer.locator(".km-dataset-problems").inner_text()
    assert "with_bad_row.jsonl line 4: image: image 'images/missing.png' does not exist" in problems
    viewer.locator(".km-dataset-next").click()
    viewer.locator(".km-dataset-page", has_text="page 2 / 2").wait_for(timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.km-dataset-row').length === 1", timeout=30_000)
    assert "line 10" in viewer.locator(".km-dataset-row").first.inner_text()  # the kernel sent page 2
    viewer.scroll_into_view_if_needed()
    screenshot(page, "dataset_viewer")

    panel = page.locator(".km-chat").first
    panel.wait_for(timeout=60_000)
    panel.locator(".km-chat-file").set_input_files(str(shapes / "images" / "004-green-square.png"))
    panel.locator(".km-chat-pending img").wait_for(timeout=30_000)
    page.evaluate(WATCH)
    panel.locator(".km-chat-input").fill("What is in the picture?")
    panel.locator(".km-chat-send").click()
    answer = panel.locator(".km-chat-answer").first
    answer.locator(".km-chat-copy").wait_for(timeout=120_000)  # shown once the reply is complete
    assert panel.locator(".km-chat-pending img").count() == 0  # sent with the message
    shown = panel.locator(".km-chat-user img.km-chat-image")
    assert shown.count() == 1
    assert shown.evaluate("img => img.naturalWidth") == 56
    assert panel.locator(".km-chat-user").inner_text().endswith("What is in the picture?")
    assert_streamed(page.evaluate("window.kmSeen"))
    assert not answer.locator(".km-chat-error").count()
    assert "tok/s" in answer.locator(".km-chat-stats").inner_text()
    panel.scroll_into_view_if_needed()
    shot = screenshot(page, "chat_panel_image")
    assert shot.stat().st_size > 10_000
    assert Path(shot).is_file()
