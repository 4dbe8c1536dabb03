"""Kernel side of the dataset viewer (``%swift dataset``) and of images in the chat panel."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from kernel_magics import cli


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kernel_magics.testing_vlm import tiny_image_dataset

    folder = tiny_image_dataset(tmp_path_factory.mktemp("shapes"), n=11)
    rows = [json.loads(line) for line in (folder / "caption.jsonl").read_text().splitlines()]
    rows[6]["image"] = "images/gone.png"
    (folder / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_preview_keeps_bad_rows_and_shows_turns(shapes: Path, km_cache: Path) -> None:
    from kernel_magics.data.preview import preview

    result = preview(shapes / "bad.jsonl")
    assert result.vision and result.format == "caption" and result.total == 11 and len(result.rows) == 10
    assert result.images == 10
    assert result.problems == [
        f"bad.jsonl line 7: image: image 'images/gone.png' does not exist (looked for {shapes / 'images/gone.png'}); "
        "fix the path"
    ]
    assert result.summary().endswith("11 rows, format 'caption', 10 images, 1 bad")
    assert result.turns(0) == [
        {"role": "user", "text": "[image] Describe this image in a few words."},
        {"role": "assistant", "text": "a red circle"},
    ]
    text_rows = preview(str(Path(__file__).parents[1] / "kernel_magics/testing_data/sft.jsonl"))
    assert not text_rows.vision and text_rows.format == "messages" and not text_rows.problems


def test_dataset_viewer_pages_and_thumbnails(shapes: Path, km_cache: Path) -> None:
    from PIL import Image

    from kernel_magics.widgets.dataset_viewer import view_dataset

    viewer = view_dataset(shapes / "bad.jsonl", page_size=4)
    assert viewer.pages == 3 and len(viewer.rows) == 4 and len(viewer.problems) == 1
    first = viewer.rows[0]
    assert first["label"] == "bad.jsonl line 1" and first["images"][0]["size"] == "56x56"
    src = first["images"][0]["src"]
    assert src.startswith("data:image/png;base64,")
    import io

    thumb = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    assert thumb.size == (56, 56)  # smaller than the thumbnail side: kept as is
    viewer.page = 2
    assert [r["label"] for r in viewer.rows] == ["bad.jsonl line 10", "bad.jsonl line 11"]
    viewer.page = 9  # clamped to the last page
    assert viewer.page == 2


def test_dataset_command_in_the_terminal(shapes: Path, km_cache: Path, capsys) -> None:
    assert cli.main(["dataset", str(shapes / "bad.jsonl"), "--template", "caption"]) in (0, None)
    out = capsys.readouterr().out
    assert "11 rows, format 'caption', 10 images, 1 bad" in out
    assert "assistant: a red circle" in out and "!! bad.jsonl line 7: image:" in out


def test_chat_panel_sends_images_as_image_url_parts(shapes: Path) -> None:
    from kernel_magics.errors import SwiftUsageError
    from kernel_magics.serve.chat import ChatTarget
    from kernel_magics.widgets.chat import ChatPanel, image_url

    path = shapes / "images/000-red-circle.png"
    url = image_url(path)
    assert url == "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
    assert image_url(url) == url
    with pytest.raises(SwiftUsageError, match="neither a data:image URL nor an existing file"):
        image_url(shapes / "nope.png")
    panel = ChatPanel(ChatTarget(url="http://127.0.0.1:9/v1", models=["vlm"]))
    panel.turns = [
        {
            "prompt": "What is it?",
            "images": [url],
            "answers": {"vlm": "a red circle"},
            "done": {"vlm": True},
            "errors": {},
            "stats": {},
            "preferred": None,
        }
    ]
    user = panel.history[0]
    assert user == {
        "role": "user",
        "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is it?"}],
    }
    rows = panel.export_rows("sft")
    from kernel_magics.data.vision import prepare_vision

    data = prepare_vision(rows)  # a chat with pictures is a training row for vision SFT
    assert data.format == "messages" and Path(data.rows[0]["images"][0]).read_bytes() == path.read_bytes()
