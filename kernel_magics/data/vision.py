"""Image + text rows for vision-language fine-tuning: formats, task templates, image loading and checks.

Accepted row formats (detected from the columns, or forced with a task ``template``):

* ``messages`` whose contents hold image parts: ``{"type": "image", "image": path|url|PIL}`` (or the
  OpenAI spelling ``{"type": "image_url", "image_url": {"url": ...}}``) next to ``{"type": "text"}`` parts
* ms-swift style ``messages`` (string contents, ``<image>`` where each image goes) + an ``images`` list
* ``vqa``: ``image`` + ``question`` + ``answer`` (``query``/``response`` also work)
* ``caption``: ``image`` + ``caption``
* ``grounding``: ``image`` + ``ref`` (what to find) + ``bbox`` ``[x1, y1, x2, y2]`` in pixels of the image;
  the answer is written in the model's own box convention (:func:`box_text`)

Every row becomes ``{"messages": [...content parts with {"type": "image"} placeholders...], "images":
[absolute paths]}``: what TRL's vision collator takes once the images are opened. Images given as URLs,
``data:`` URLs, bytes or PIL objects are stored once (by content hash) in the kernel_magics cache, so a
run folder can be replayed and resumed. Every problem names the row: ``vqa.jsonl line 7: image
'images/x.png' does not exist (looked for /data/images/x.png); fix the path or pass --on-bad-rows skip``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwiftDataError, did_you_mean
from .formats import ROLES, RowError
from .images import image_size, resolve_image
from .prepare import ON_BAD_ROWS, PreparedData, convert_rows
from .sources import read_rows

TEMPLATES = ("auto", "messages", "vqa", "caption", "grounding")
IMAGE_TAG = "<image>"
CAPTION_PROMPT = "Describe this image in a few words."
GROUNDING_PROMPT = "Find the {ref} in the image and give its bounding box."


@dataclass(frozen=True)
class BoxStyle:
    """How a model family writes bounding boxes in text."""

    name: str  # "qwen2_vl" (0..1000 ints in special tokens), "qwen2_5_vl" (JSON, absolute pixels), "norm1000"


def box_style(model_type: str | None) -> BoxStyle:
    """The box convention of a ``config.json`` ``model_type``."""
    kind = (model_type or "").lower()
    if kind in ("qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe"):
        return BoxStyle("qwen2_5_vl")
    if kind == "qwen2_vl":
        return BoxStyle("qwen2_vl")
    return BoxStyle("norm1000")


def box_text(ref: str, bbox: list[float], size: tuple[int, int], style: BoxStyle) -> str:
    """The answer of a grounding row in the model's own convention.

    ``bbox`` is ``[x1, y1, x2, y2]`` in pixels of the image (``size`` = width, height). Qwen2-VL writes
    ``<|object_ref_start|>ref<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`` with coordinates
    scaled to 0..1000; Qwen2.5-VL and later answer JSON with absolute pixel coordinates; other models get
    ``ref [x1, y1, x2, y2]`` scaled to 0..1000.
    """
    width, height = size
    x1, y1, x2, y2 = (float(v) for v in bbox)
    if style.name == "qwen2_5_vl":
        coords = [round(x1), round(y1), round(x2), round(y2)]
        return '```json\n[{"bbox_2d": [' + ", ".join(str(c) for c in coords) + f'], "label": "{ref}"}}]\n```'
    scaled = [round(x1 / width * 1000), round(y1 / height * 1000), round(x2 / width * 1000), round(y2 / height * 1000)]
    if style.name == "qwen2_vl":
        return (
            f"<|object_ref_start|>{ref}<|object_ref_end|>"
            f"<|box_start|>({scaled[0]},{scaled[1]}),({scaled[2]},{scaled[3]})<|box_end|>"
        )
    return f"{ref} [{', '.join(str(c) for c in scaled)}]"


# -- images ------------------------------------------------------------------------------------------
def detect_vision_format(columns: set[str], sample: dict[str, Any] | None = None) -> str | None:
    """The vision row format implied by the columns (None when the rows carry no images)."""
    if "messages" in columns and "images" in columns:
        return "swift"
    if "messages" in columns and sample is not None and _has_image_parts(sample.get("messages")):
        return "messages"
    if "image" in columns or "images" in columns:
        if "bbox" in columns or "boxes" in columns:
            return "grounding"
        if "caption" in columns:
            return "caption"
        if {"question", "answer"} <= columns or {"query", "response"} <= columns:
            return "vqa"
    return None


def _has_image_parts(messages: Any) -> bool:
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(isinstance(p, dict) and _is_image_part(p) for p in content):
            return True
    return False


def _is_image_part(part: dict[str, Any]) -> bool:
    return part.get("type") in ("image", "image_url") or "image" in part or "image_url" in part


def _text(value: Any, field: str) -> str:
    if value is None:
        raise RowError(field, "is missing")
    if not isinstance(value, str):
        raise RowError(field, f"must be a string, got {type(value).__name__}")
    if not value.strip():
        raise RowError(field, "is empty")
    return value


def _user_turn(images: list[Path], text: str) -> dict[str, Any]:
    return {"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": text}]}


def _assistant_turn(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def _row_images(row: dict[str, Any], base: Path | None) -> list[Path]:
    if "images" in row and row["images"] is not None:
        images = row["images"]
        if hasattr(images, "tolist"):
            images = images.tolist()
        if not isinstance(images, list):
            images = [images]
        if not images:
            raise RowError("images", "is an empty list")
        return [resolve_image(v, base, f"images[{i}]") for i, v in enumerate(images)]
    return [resolve_image(row.get("image"), base, "image")]


class Converter:
    """Turns rows of one vision format into ``{"messages", "images"}`` rows (images as absolute paths)."""

    def __init__(self, fmt: str, base: Path | None, style: BoxStyle) -> None:
        self.fmt = fmt
        self.base = base
        self.style = style

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        by_format = {
            "vqa": self._vqa,
            "caption": self._caption,
            "grounding": self._grounding,
            "swift": self._swift,
            "messages": self._messages,
        }
        return by_format[self.fmt](row)

    def _vqa(self, row: dict[str, Any]) -> dict[str, Any]:
        question_field = "query" if "query" in row and "question" not in row else "question"
        answer_field = "response" if "response" in row and "answer" not in row else "answer"
        question = _text(row.get(question_field), question_field)
        answer = _text(row.get(answer_field), answer_field)
        images = _row_images(row, self.base)
        return {"messages": [_user_turn(images, question), _assistant_turn(answer)], "images": _paths(images)}

    def _caption(self, row: dict[str, Any]) -> dict[str, Any]:
        caption = _text(row.get("caption"), "caption")
        prompt = row.get("prompt") or CAPTION_PROMPT
        images = _row_images(row, self.base)
        return {"messages": [_user_turn(images, str(prompt)), _assistant_turn(caption)], "images": _paths(images)}

    def _grounding(self, row: dict[str, Any]) -> dict[str, Any]:
        images = _row_images(row, self.base)
        if len(images) != 1:
            raise RowError("images", f"a grounding row needs exactly one image, got {len(images)}")
        size = image_size(images[0])
        objects = row.get("boxes") if row.get("boxes") is not None else [row]
        if hasattr(objects, "tolist"):
            objects = objects.tolist()
        if not isinstance(objects, list) or not objects:
            raise RowError("boxes", "must be a non-empty list of {ref, bbox} objects")
        answers, refs = [], []
        for i, obj in enumerate(objects):
            where = f"boxes[{i}]." if "boxes" in row and row.get("boxes") is not None else ""
            if not isinstance(obj, dict):
                raise RowError(f"boxes[{i}]", f"must be a dict with ref and bbox, got {type(obj).__name__}")
            ref_field = next((k for k in ("ref", "label", "object", "query") if obj.get(k)), "ref")
            ref = _text(obj.get(ref_field), where + ref_field)
            bbox = _bbox(obj.get("bbox"), where + "bbox", size)
            answers.append(box_text(ref, bbox, size, self.style))
            refs.append(ref)
        question = row.get("question") or GROUNDING_PROMPT.format(ref=" and the ".join(refs))
        answer = answers[0] if len(answers) == 1 else "\n".join(answers)
        return {"messages": [_user_turn(images, str(question)), _assistant_turn(answer)], "images": _paths(images)}

    def _swift(self, row: dict[str, Any]) -> dict[str, Any]:
        images = _row_images(row, self.base)
        messages = _message_list(row.get("messages"))
        tags = sum(m["content"].count(IMAGE_TAG) for m in messages if isinstance(m["content"], str))
        if tags and tags != len(images):
            raise RowError("messages", f"has {tags} {IMAGE_TAG} tags but the row has {len(images)} images")
        out = []
        placed = bool(tags)
        for message in messages:
            content = message["content"]
            if not isinstance(content, str):
                raise RowError("messages", "with an 'images' list, contents must be strings (use <image> tags)")
            parts: list[dict[str, Any]] = []
            if not placed and message["role"] == "user":
                parts.extend({"type": "image"} for _ in images)
                placed = True
            pieces = content.split(IMAGE_TAG)
            for k, piece in enumerate(pieces):
                if piece.strip() or (k == len(pieces) - 1 and not parts):
                    parts.append({"type": "text", "text": piece})
                if k < len(pieces) - 1:
                    parts.append({"type": "image"})
            out.append({"role": message["role"], "content": parts})
        if not placed:
            raise RowError("messages", "has no user message to attach the images to")
        return {"messages": out, "images": _paths(images)}

    def _messages(self, row: dict[str, Any]) -> dict[str, Any]:
        messages = _message_list(row.get("messages"))
        out, images = [], []
        for i, message in enumerate(messages):
            content = message["content"]
            if isinstance(content, str):
                out.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
                continue
            parts: list[dict[str, Any]] = []
            for j, part in enumerate(content):
                where = f"messages[{i}].content[{j}]"
                if not isinstance(part, dict):
                    raise RowError(where, f"must be a dict content part, got {type(part).__name__}")
                if _is_image_part(part):
                    ref = part.get("image")
                    if ref is None and part.get("image_url") is not None:
                        url = part["image_url"]
                        ref = url.get("url") if isinstance(url, dict) else url
                    images.append(resolve_image(ref, self.base, where + ".image"))
                    parts.append({"type": "image"})
                elif part.get("type", "text") == "text":
                    parts.append({"type": "text", "text": _text(part.get("text"), where + ".text")})
                else:
                    raise RowError(f"{where}.type", f"'{part.get('type')}' is not supported (use text or image)")
            out.append({"role": message["role"], "content": parts})
        if not images:
            raise RowError("messages", "has no image part; a vision row needs at least one image")
        return {"messages": out, "images": _paths(images)}


def _paths(images: list[Path]) -> list[str]:
    return [str(p) for p in images]


def _bbox(value: Any, field: str, size: tuple[int, int]) -> list[float]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise RowError(field, "must be [x1, y1, x2, y2] in pixels of the image")
    try:
        x1, y1, x2, y2 = (float(v) for v in value)
    except (TypeError, ValueError):
        raise RowError(field, f"must hold 4 numbers, got {value!r}") from None
    width, height = size
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise RowError(field, f"{[x1, y1, x2, y2]} is not a box inside the {width}x{height} image (x1<x2, y1<y2)")
    return [x1, y1, x2, y2]


def _message_list(messages: Any) -> list[dict[str, Any]]:
    if messages is None:
        raise RowError("messages", "is missing")
    if hasattr(messages, "tolist"):
        messages = messages.tolist()
    if not isinstance(messages, list) or not messages:
        raise RowError("messages", "must be a non-empty list of messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise RowError(where, f"must be a dict with role and content, got {type(message).__name__}")
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise RowError(
                f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}{did_you_mean(str(role), ROLES)}"
            )
        content = message.get("content")
        if hasattr(content, "tolist"):
            content = content.tolist()
        if isinstance(content, str):
            if not content.strip():
                raise RowError(f"{where}.content", "is empty")
        elif not isinstance(content, list) or not content:
            raise RowError(f"{where}.content", "must be a string or a non-empty list of content parts")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise RowError("messages", "has no assistant message to learn from")
    return out


def _dataset_folder(source: str) -> Path | None:
    path = Path(source).expanduser()
    if path.is_file():
        return path.resolve().parent
    if path.is_dir():
        return path.resolve()
    return None


def is_vision_dataset(dataset: Any) -> bool:
    """True when ``dataset``'s rows carry images (any of the vision formats); cheap, reads the rows once."""
    try:
        raw = read_rows(dataset)
    except SwiftDataError:
        return False
    columns: set[str] = set()
    for row in raw.rows[:50]:
        columns.update(row)
    return detect_vision_format(columns, raw.rows[0] if raw.rows else None) is not None


def prepare_vision(
    dataset: Any,
    *,
    template: str = "auto",
    model_type: str | None = None,
    on_bad_rows: str = "error",
    split: str = "train",
) -> PreparedData:
    """Read, convert and check image + text rows; every image is opened (header only) here.

    ``template``: "auto" (from the columns), or force "vqa", "caption", "grounding", "messages".
    ``model_type`` picks the grounding box convention. Raises one-line :class:`SwiftDataError` s naming
    the row, field and image; ``on_bad_rows="skip"`` drops bad rows and counts them instead.
    """
    if template not in TEMPLATES:
        raise SwiftDataError(
            f"template must be one of {', '.join(TEMPLATES)}, got '{template}'{did_you_mean(template, TEMPLATES)}"
        )
    if on_bad_rows not in ON_BAD_ROWS:
        raise SwiftDataError(f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got '{on_bad_rows}'")
    raw = read_rows(dataset, split)
    if not raw.rows:
        raise SwiftDataError(f"dataset {raw.source} is empty: it has no rows to train on")
    columns: set[str] = set()
    for row in raw.rows[:50]:
        columns.update(row)
    detected = detect_vision_format(columns, raw.rows[0])
    fmt = detected if template in ("auto", "messages") else template
    if template == "messages" and detected not in ("messages", "swift"):
        fmt = "messages"
    if fmt is None:
        found = ", ".join(sorted(columns)) or "none"
        raise SwiftDataError(
            f"dataset {raw.source}: no images found in its columns ({found}); expected 'messages' with image parts, "
            "'messages'+'images', 'image'+'question'+'answer' (vqa), 'image'+'caption' or 'image'+'ref'+'bbox' "
            "(grounding)"
        )
    convert = Converter(fmt, _dataset_folder(raw.source), box_style(model_type))
    rows, labels, skipped = convert_rows(raw, fmt, convert, on_bad_rows)
    images = sum(len(r["images"]) for r in rows)
    data = PreparedData(rows, labels, fmt, "messages", raw.source, len(raw.rows), skipped)
    data.notes.append(f"{images} images in {len(rows)} rows")
    return data


def message_text(messages: list[dict[str, Any]], role: str) -> str:
    """The text of the last ``role`` message (image parts left out): handy for previews and samples."""
    for message in reversed(messages):
        if message["role"] == role:
            content = message["content"]
            if isinstance(content, str):
                return content
            return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


__all__ = [
    "TEMPLATES",
    "BoxStyle",
    "box_style",
    "box_text",
    "detect_vision_format",
    "is_vision_dataset",
    "message_text",
    "prepare_vision",
]
