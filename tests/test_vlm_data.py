"""Image + text rows: every format loads into messages + image paths, bad images name their row."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest

from kernel_magics.data.vision import BoxStyle, box_text, is_vision_dataset, prepare_vision
from kernel_magics.errors import SwiftDataError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kernel_magics.testing_vlm import tiny_image_dataset

    return tiny_image_dataset(tmp_path_factory.mktemp("shapes"), n=6)


@pytest.fixture(autouse=True)
def _cache(km_cache: Path) -> Path:  # images given as bytes / PIL / data: URLs are stored in the cache
    return km_cache


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _texts(row: dict) -> tuple[str, str]:
    user = "".join(p.get("text", "") for p in row["messages"][0]["content"] if p["type"] == "text")
    return user, row["messages"][-1]["content"][0]["text"]


@pytest.mark.parametrize(
    "name, fmt", [("vqa.jsonl", "vqa"), ("caption.jsonl", "caption"), ("messages.jsonl", "messages")]
)
def test_packaged_formats_load(shapes: Path, name: str, fmt: str) -> None:
    data = prepare_vision(shapes / name)
    assert data.format == fmt and len(data) == 6 and data.kind == "messages"
    row = data.rows[0]
    assert [Path(p).is_file() for p in row["images"]] == [True]
    assert row["images"][0].endswith("000-red-circle.png") and Path(row["images"][0]).is_absolute()
    parts = row["messages"][0]["content"]
    assert parts[0] == {"type": "image"} and parts[1]["type"] == "text"
    user, answer = _texts(row)
    assert answer == "a red circle"
    if fmt == "caption":
        assert user == "Describe this image in a few words."
    assert is_vision_dataset(shapes / name)


def test_swift_messages_with_images_list_and_tags(shapes: Path, tmp_path: Path) -> None:
    images = [str(shapes / "images/000-red-circle.png"), str(shapes / "images/001-red-square.png")]
    rows = [
        {
            "messages": [
                {"role": "user", "content": "<image>Compare with <image> please"},
                {"role": "assistant", "content": "circle, then square"},
            ],
            "images": images,
        },
        {  # no tag: the image goes before the first user text (TRL's convention)
            "messages": [{"role": "user", "content": "What is it?"}, {"role": "assistant", "content": "a circle"}],
            "images": images[:1],
        },
    ]
    data = prepare_vision(_write(tmp_path / "swift.jsonl", rows))
    assert data.format == "swift"
    first = data.rows[0]["messages"][0]["content"]
    assert [p["type"] for p in first] == ["image", "text", "image", "text"]
    assert first[1]["text"] == "Compare with " and data.rows[0]["images"] == images
    second = data.rows[1]["messages"][0]["content"]
    assert [p["type"] for p in second] == ["image", "text"]
    bad = [{**rows[0], "images": images[:1]}]
    with pytest.raises(SwiftDataError, match=r"rows row 1: messages: has 2 <image> tags but the row has 1 images"):
        prepare_vision(bad)


def test_in_memory_images_pil_bytes_and_data_urls(shapes: Path) -> None:
    from PIL import Image

    pil = Image.open(shapes / "images/002-red-triangle.png").convert("RGB")
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    rows = [
        {"image": pil, "question": "Which shape?", "answer": "a red triangle"},
        {"image": {"bytes": buffer.getvalue(), "path": None}, "question": "Which shape?", "answer": "a red triangle"},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": data_url}}, {"type": "text", "text": "?"}],
                },
                {"role": "assistant", "content": "a red triangle"},
            ]
        },
    ]
    vqa = prepare_vision(rows[:2])
    assert vqa.format == "vqa"
    stored = {p for r in vqa.rows for p in r["images"]}
    assert len(stored) == 1  # same pixels, same content-addressed file
    assert Image.open(next(iter(stored))).size == pil.size
    chat = prepare_vision(rows[2:])
    assert chat.format == "messages" and chat.rows[0]["images"] == list(stored)


def test_grounding_boxes_in_each_models_convention(shapes: Path, tmp_path: Path) -> None:
    row = {"image": "images/000-red-circle.png", "ref": "red circle", "bbox": [14, 7, 42, 49]}
    path = _write(tmp_path / "ground.jsonl", [row])
    (tmp_path / "images").symlink_to(shapes / "images")
    qwen2 = prepare_vision(path, model_type="qwen2_vl")
    assert qwen2.format == "grounding"
    user, answer = _texts(qwen2.rows[0])
    assert user == "Find the red circle in the image and give its bounding box."
    # 56x56 image: 14/56*1000 = 250, 7/56*1000 = 125, 42/56 -> 750, 49/56 -> 875
    assert answer == "<|object_ref_start|>red circle<|object_ref_end|><|box_start|>(250,125),(750,875)<|box_end|>"
    qwen25 = prepare_vision(path, model_type="qwen2_5_vl")
    assert '"bbox_2d": [14, 7, 42, 49], "label": "red circle"' in _texts(qwen25.rows[0])[1]
    assert box_text("cat", [0, 0, 28, 56], (56, 56), BoxStyle("norm1000")) == "cat [0, 0, 500, 1000]"
    outside = _write(tmp_path / "outside.jsonl", [{**row, "bbox": [10, 10, 80, 20]}])
    with pytest.raises(SwiftDataError, match=r"outside.jsonl line 1: bbox: .* not a box inside the 56x56 image"):
        prepare_vision(outside)


def test_forced_template_reads_its_fields(shapes: Path, tmp_path: Path) -> None:
    rows = [{"image": "images/000-red-circle.png", "caption": "a red circle"}]
    (tmp_path / "images").symlink_to(shapes / "images")
    path = _write(tmp_path / "c.jsonl", rows)
    assert prepare_vision(path, template="caption").format == "caption"
    with pytest.raises(SwiftDataError, match=r"c.jsonl line 1: question: is missing \(vqa format\)"):
        prepare_vision(path, template="vqa")
    with pytest.raises(SwiftDataError, match=r"template must be one of .*did you mean 'caption'"):
        prepare_vision(path, template="captoin")


def test_bad_image_path_is_one_line_naming_the_row(shapes: Path, tmp_path: Path) -> None:
    rows = _rows(shapes / "vqa.jsonl")
    rows[2]["image"] = "images/missing.png"
    (tmp_path / "images").symlink_to(shapes / "images")
    path = _write(tmp_path / "train.jsonl", rows)
    with pytest.raises(SwiftDataError) as info:
        prepare_vision(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("train.jsonl line 3: image: image 'images/missing.png' does not exist (looked for ")
    assert str(tmp_path / "images/missing.png") in message and message.endswith("pass --on-bad-rows skip")
    skipped = prepare_vision(path, on_bad_rows="skip")
    assert len(skipped) == 5 and skipped.skipped[0].startswith("train.jsonl line 3: image:")


def test_unreadable_image_names_the_row(shapes: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_text("not an image")
    rows = _rows(shapes / "messages.jsonl")[:2]
    for row in rows:
        row["messages"][0]["content"][0]["image"] = str(shapes / row["messages"][0]["content"][0]["image"])
    rows[1]["messages"][0]["content"][0]["image"] = str(tmp_path / "broken.png")
    with pytest.raises(
        SwiftDataError,
        match=r"^rows row 2: messages\[0\].content\[0\].image: image '.*broken.png' "
        r"cannot be read as an image \(UnidentifiedImageError\); replace it",
    ):
        prepare_vision(rows)


def test_rows_without_images_are_not_vision_rows(tmp_path: Path) -> None:
    from kernel_magics.testing import tiny_dataset

    assert not is_vision_dataset(tiny_dataset("sft"))
    with pytest.raises(SwiftDataError, match="no images found in its columns"):
        prepare_vision(tiny_dataset("sft"))
