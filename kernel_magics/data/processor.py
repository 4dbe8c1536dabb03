"""The processor of a vision-language model (images + text), and what an image costs in tokens.

Training (:mod:`kernel_magics.train.methods.vlm`) and serving (:mod:`kernel_magics.serve.engines.hf_vlm`) load the
processor the same way: ``AutoProcessor`` when it loads, else the model's processor class limited to
image processor + tokenizer (video processors need torchvision), with a ``max_pixels`` budget per image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SwiftModelError
from ..hub import read_model_config


def _image_only_processor_class(name: str) -> Any:
    """``name`` (e.g. Qwen2VLProcessor) limited to image processor + tokenizer.

    Video processors need torchvision; without it ``AutoProcessor`` fails although images would work.
    """
    import transformers

    base = getattr(transformers, name, None)
    if base is None:
        return None

    class ImageTextProcessor(base):  # type: ignore[misc, valid-type]
        @classmethod
        def get_attributes(cls) -> list[str]:
            return [a for a in super().get_attributes() if a in ("image_processor", "tokenizer")]

    ImageTextProcessor.__name__ = name
    return ImageTextProcessor


def _known_processor(name: str, model_path: Path) -> str:
    """A processor class transformers has: ``name``, a class it ends with, or the model type's processor."""
    import transformers

    if hasattr(transformers, name):
        return name
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = read_model_config(model_path).get("model_type")
    by_type = PROCESSOR_MAPPING_NAMES.get(model_type)
    if by_type and hasattr(transformers, by_type):
        return by_type
    suffixes = [n for n in dir(transformers) if n.endswith("Processor") and name.endswith(n)]
    return max(suffixes, key=len) if suffixes else name


def load_processor(model_path: Path, trust_remote_code: bool = False, max_pixels: int | None = None) -> Any:
    """The model's processor (images + text), with the ``max_pixels`` budget applied."""
    from transformers import AutoProcessor

    processor = None
    try:
        processor = AutoProcessor.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)
        if not hasattr(processor, "image_processor"):
            processor = None
    except Exception:  # noqa: BLE001 - fall back to the image-only processor below
        processor = None
    if processor is None:
        name = None
        for file_name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
            try:
                name = json.loads((model_path / file_name).read_text()).get("processor_class")
            except (OSError, ValueError):
                continue
            if name:
                break
        cls = _image_only_processor_class(_known_processor(name, model_path)) if name else None
        if cls is None:
            raise SwiftModelError(
                f"cannot load an image processor for {model_path}; the folder needs processor/preprocessor config files"
            )
        try:
            processor = cls.from_pretrained(str(model_path))
        except Exception as exc:  # noqa: BLE001
            raise SwiftModelError(f"cannot load the processor of {model_path}: {str(exc).splitlines()[0]}") from None
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(processor, "chat_template", None) is None and getattr(tokenizer, "chat_template", None):
        processor.chat_template = tokenizer.chat_template
    if max_pixels is not None:
        set_max_pixels(processor, max_pixels)
    return processor


def set_max_pixels(processor: Any, max_pixels: int) -> None:
    """Cap the pixels an image keeps after resizing (Qwen-VL style ``size.longest_edge`` / ``max_pixels``)."""
    image_processor = processor.image_processor
    size = getattr(image_processor, "size", None)
    if size is not None and ("longest_edge" in size or getattr(size, "longest_edge", None) is not None):
        shortest = size["shortest_edge"] if "shortest_edge" in size else None
        shortest = min(shortest, max_pixels) if shortest else shortest
        image_processor.size = {"shortest_edge": shortest, "longest_edge": max_pixels}
    if hasattr(image_processor, "max_pixels"):
        image_processor.max_pixels = max_pixels


class ImageTokens:
    """Tokens one image costs after the processor's resize, per image size (cached)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor
        self._cache: dict[tuple[int, int], int] = {}
        tokenizer = processor.tokenizer
        self.token = getattr(processor, "image_token", None) or "<image>"
        self.token_id = getattr(processor, "image_token_id", None) or tokenizer.convert_tokens_to_ids(self.token)

    def __call__(self, size: tuple[int, int]) -> int:
        if size not in self._cache:
            from PIL import Image

            blank = Image.new("RGB", size, (128, 128, 128))
            out = self.processor(text=[self.token], images=[blank], return_tensors="pt")
            self._cache[size] = int((out["input_ids"] == self.token_id).sum())
        return self._cache[size]


def row_tokens(
    row: dict[str, Any], processor: Any, image_tokens: ImageTokens, sizes: dict[str, tuple[int, int]]
) -> int:
    """Tokens of one row after the chat template, image tokens included."""
    from .images import image_size

    text = processor.apply_chat_template(row["messages"], tokenize=False)
    n = len(processor.tokenizer(text, add_special_tokens=False)["input_ids"])
    for path in row["images"]:
        if path not in sizes:
            sizes[path] = image_size(path)
        n += image_tokens(sizes[path]) - 1  # the placeholder itself was counted once
    return n
