"""JupyterLab in Chromium, a student's notebook on a real classroom hub: the kernel has the environment a hub's
single-user server gives (``KM_CLASSROOM_URL`` through the hub's proxy, the student's ``JUPYTERHUB_API_TOKEN``
issued by the hub); the student publishes an adapter, chats with it beside the base through the service
(``%swift chat --compare base,alice/poem``), and the teacher's panel, opened with the teacher's hub token,
shows it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from jlab import open_notebook, run_all_cells, screenshot, write_notebook

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))
from classroom_support import proxy_binary, start_hub, stop_hub  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (pip install 'kernel_magics[dev]')")
    proxy = proxy_binary()
    if proxy is None:
        pytest.skip("configurable-http-proxy is not installed (make chp)")
    running = start_hub(tmp_path_factory.mktemp("hub"), tiny_model, proxy, ["--max-rank", "16"])
    yield running
    stop_hub(running)


@pytest.fixture(scope="module")
def student_environment(hub):
    """What the hub's spawner gives alice's server, in the environment the lab (and its kernels) start with."""
    saved = {name: os.environ.get(name) for name in ("KM_CLASSROOM_URL", "JUPYTERHUB_API_TOKEN", "KM_CLASSROOM_TOKEN")}
    os.environ.update(KM_CLASSROOM_URL=hub.classroom, JUPYTERHUB_API_TOKEN=hub.tokens["alice"])
    os.environ.pop("KM_CLASSROOM_TOKEN", None)
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def lab(student_environment, lab):  # noqa: F811 - the conftest's lab, started inside the student's environment
    return lab


def test_a_student_publishes_and_chats_through_the_hub(hub, tiny_model, lab, page, tmp_path):
    from serve_support import make_lora_adapter

    adapter = make_lora_adapter(tiny_model, tmp_path / "poem-run" / "adapter", seed=1)
    cells = [
        "%load_ext kernel_magics\nimport kernel_magics as km\nfrom kernel_magics.classroom.client import service",
        f"km.publish({str(adapter.parent)!r}, name='poem')",
        "url, token = service()   # the hub's proxy, alice's hub token\n"
        "%swift chat --url {url}/v1 --api-key {token} --compare base,alice/poem --temperature 0 --max-tokens 12",
        f"%swift teacher --token {hub.tokens['carol']}",
    ]
    write_notebook(lab, "student.ipynb", cells)
    open_notebook(page, lab, "student.ipynb")
    try:
        run_all_cells(page, timeout=180)
    finally:
        screenshot(page, "classroom_student_cells")
    outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
    assert any("published alice/poem (rank 8)" in text for text in outputs), outputs
    chat = page.locator(".km-chat").first
    chat.wait_for(timeout=60_000)
    assert "/services/classroom/v1" in chat.locator(".km-chat-url").inner_text()
    chat.locator(".km-chat-input").fill("Write a short poem about the sea.")
    chat.locator(".km-chat-send").click()
    chat.locator(".km-chat-prefer").first.wait_for(timeout=120_000)  # both replies complete
    columns = chat.locator(".km-chat-answer")
    assert [columns.nth(i).get_attribute("data-model") for i in range(columns.count())][1:] == ["alice/poem"]
    for i in range(2):  # each model answered through the service (a random model's text may be only partial UTF-8)
        assert "tok/s" in columns.nth(i).locator(".km-chat-stats").inner_text()
    chat.scroll_into_view_if_needed()
    screenshot(page, "classroom_student_chat")
    panel = page.locator(".km-classroom-panel")
    panel.wait_for(timeout=60_000)
    assert "alice/poem" in panel.inner_text() and "no requests yet" in panel.inner_text()
    panel.locator("button", has_text="Refresh").click()  # the teacher asks again: alice's two requests are there
    panel.locator("td", has_text="alice").first.wait_for(timeout=30_000)
    row = panel.locator("tr", has_text="alice").first.locator("td").all_inner_texts()
    assert row[:2] == ["alice", "2"], row
    panel.scroll_into_view_if_needed()
    shot = screenshot(page, "classroom_student_teacher_panel")
    assert shot.stat().st_size > 10_000
