"""The tiny vision-language model of the kit (Qwen2-VL architecture, random weights, the tiny tokenizer with
vision tokens) and a dataset of drawn shapes to train it on; the tests import them from here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .testing import build_tokenizer, is_complete, staged_model_folder

# --- tiny vision-language model ---------------------------------------------------------------------
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's convention: image parts become <|vision_start|><|image_pad|><|vision_end|>; the processor
# expands <|image_pad|> to one token per merged patch.
VLM_CHAT_TEMPLATE = (
    "{%- macro render(content) %}"
    "{%- if content is string %}{{- content }}"
    "{%- else %}{%- for part in content %}"
    "{%- if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' or 'video' in part %}{{- '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif 'text' in part %}{{- part['text'] }}{%- endif %}"
    "{%- endfor %}{%- endif %}"
    "{%- endmacro %}"
    "{%- if messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- render(message['content']) + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + render(message['content']) + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SHAPES = ("circle", "square", "triangle")
COLOURS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 20)}


def _vlm_processor_class():
    """Qwen2-VL's processor limited to image + tokenizer (its video processor needs torchvision)."""
    from transformers import Qwen2VLProcessor

    class TinyQwen2VLProcessor(Qwen2VLProcessor):
        @classmethod
        def get_attributes(cls) -> list[str]:
            return ["image_processor", "tokenizer"]

    return TinyQwen2VLProcessor


def load_vlm_processor(path: str | os.PathLike[str]):
    """Load a Qwen2-VL style processor; falls back to image + tokenizer when video support is missing."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(path)
        if hasattr(processor, "image_processor"):
            return processor
    except (AttributeError, ImportError, ValueError, OSError):
        pass
    return _vlm_processor_class().from_pretrained(path)


def make_tiny_vlm(path: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """Write a tiny random-init Qwen2-VL folder (2-layer vision tower, 2-layer language model).

    Images are resized to 4..64 merged patches of 28x28 pixels, so an image costs at most 64 tokens.
    Deterministic for a ``seed``; idempotent and atomic like :func:`make_tiny_model`.
    """
    target = Path(path).expanduser()
    if is_complete(target):
        return target

    import torch
    from transformers import GenerationConfig, Qwen2VLForConditionalGeneration

    with staged_model_folder(target) as staging:
        tokenizer = build_tokenizer()
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", *VISION_TOKENS]})
        tokenizer.chat_template = VLM_CHAT_TEMPLATE
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen2VLForConditionalGeneration(_tiny_vlm_config(tokenizer))
        model.generation_config = GenerationConfig(
            eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
            max_new_tokens=32,
        )
        model.save_pretrained(staging, safe_serialization=True)
        _save_tiny_vlm_processor(staging, tokenizer)
        (staging / "README.md").write_text(
            f"# tiny-qwen2-vl (kernel_magics test kit)\n\nRandom weights, seed {seed}.\n"
        )
    return target


def _tiny_vlm_config(tokenizer: Any) -> Any:
    """Qwen2-VL config: a 2-layer, 128-wide language model and a 2-layer, 64-wide vision tower."""
    from transformers import Qwen2VLConfig

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS}
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 1e4, "mrope_section": [4, 6, 6]},
            bos_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            depth=2,
            embed_dim=64,
            num_heads=4,
            hidden_size=128,
            mlp_ratio=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def _save_tiny_vlm_processor(folder: Path, tokenizer: Any) -> None:
    """The processor: images resized to 4..64 merged 28x28 patches, the tokenizer, the chat template."""
    try:
        from transformers import Qwen2VLImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers name the PIL processor this way
        from transformers import Qwen2VLImageProcessor as ImageProcessor

    image_processor = ImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 64)
    processor = _vlm_processor_class()(image_processor=image_processor, tokenizer=tokenizer)
    processor.chat_template = VLM_CHAT_TEMPLATE
    processor.save_pretrained(folder)


def tiny_image_dataset(path: str | os.PathLike[str], n: int = 48, *, seed: int = 0, size: int = 56) -> Path:
    """Write ``n`` PNGs of coloured shapes and ``vqa.jsonl`` / ``caption.jsonl`` / ``messages.jsonl`` rows.

    Each image shows one shape ("red circle", "blue square", ...); VQA rows ask "What shape is this?"-style
    questions, caption rows give "a red circle", message rows use ``{"type": "image"}`` content parts.
    Returns the folder. Deterministic for a ``seed``.
    """
    import random

    from PIL import Image, ImageDraw

    folder = Path(path).expanduser()
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    vqa, captions, messages = [], [], []
    for i in range(n):
        shape, colour = SHAPES[i % len(SHAPES)], list(COLOURS)[(i // len(SHAPES)) % len(COLOURS)]
        image = Image.new("RGB", (size, size), (245, 245, 245))
        draw = ImageDraw.Draw(image)
        m = rng.randint(4, 10)
        box = (m, m, size - m, size - m)
        if shape == "circle":
            draw.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            draw.rectangle(box, fill=COLOURS[colour])
        else:
            draw.polygon([(size // 2, m), (size - m, size - m), (m, size - m)], fill=COLOURS[colour])
        name = f"images/{i:03d}-{colour}-{shape}.png"
        image.save(folder / name)
        question = rng.choice(["What is in the picture?", "Describe the shape.", "图里有什么？"])
        answer = f"a {colour} {shape}"
        vqa.append({"image": name, "question": question, "answer": answer})
        captions.append({"image": name, "caption": answer})
        messages.append(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image", "image": name}, {"type": "text", "text": question}]},
                    {"role": "assistant", "content": [{"type": "text", "text": answer}]},
                ]
            }
        )
    for file_name, rows in (("vqa.jsonl", vqa), ("caption.jsonl", captions), ("messages.jsonl", messages)):
        with open(folder / file_name, "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return folder
