"""The tiny-model kit: real Hugging Face folders, deterministic, idempotent, bilingual tokenizer."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from kernel_magics.errors import SwiftConfigError
from kernel_magics.testing import make_tiny_model, tiny_dataset


def _digest(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_folder_is_complete_and_small(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    } <= names
    size = sum(p.stat().st_size for p in tiny_model.iterdir())
    assert size < 8 * 1024**2
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["hidden_size"] // config["num_attention_heads"] >= 32  # vLLM CPU attention needs head_dim >= 32


def test_loads_generates_and_round_trips(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    for text in ("Fine-tune me, please!", "今天天气很好，我们去公园吧。", "mixed 中英 text 123"):
        assert tok.decode(tok(text)["input_ids"]) == text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    chat = [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Sure! hi"}]
    rendered = tok.apply_chat_template(chat, tokenize=False)
    assert "<|im_start|>user\n你好<|im_end|>" in rendered and rendered.endswith("Sure! hi<|im_end|>\n")
    mask = tok.apply_chat_template(chat, return_dict=True, return_assistant_tokens_mask=True)["assistant_masks"]
    assert 0 < sum(mask) < len(mask)  # generation markers let trainers mask non-assistant tokens
    inputs = tok.apply_chat_template(chat[:1], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()


def test_deterministic_for_a_seed_and_idempotent(tmp_path, tiny_model):
    a = make_tiny_model(tmp_path / "a", seed=0)
    assert _digest(a) == _digest(tiny_model)
    b = make_tiny_model(tmp_path / "b", seed=1)
    assert _digest(a) != _digest(b)
    before = (a / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert make_tiny_model(a, seed=0) == a
    assert time.perf_counter() - start < 0.5
    assert (a / "model.safetensors").stat().st_mtime_ns == before


def test_llama_variant(tiny_llama):
    config = json.loads((tiny_llama / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_incomplete_folder_is_rebuilt(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "config.json").write_text("{}")  # e.g. left by an interrupted copy
    make_tiny_model(target)
    assert (target / "model.safetensors").is_file()


def test_bad_arch():
    with pytest.raises(SwiftConfigError, match="unknown tiny architecture 'gpt'"):
        make_tiny_model("/tmp/never", arch="gpt")


@pytest.mark.parametrize(
    ("kind", "minimum", "keys"),
    [
        ("sft", 200, {"messages"}),
        ("dpo", 100, {"prompt", "chosen", "rejected"}),
        ("kto", 100, {"prompt", "completion", "label"}),
    ],
)
def test_packaged_datasets(kind, minimum, keys):
    rows = [json.loads(line) for line in tiny_dataset(kind).read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= minimum
    assert all(set(row) == keys for row in rows)


@pytest.fixture(scope="session")
def tiny_vlm(km_cache):
    from kernel_magics.testing_vlm import make_tiny_vlm

    return make_tiny_vlm(km_cache / "models" / "tiny-qwen2-vl")


def test_tiny_vlm_trains_on_an_image_row(tiny_vlm, tmp_path):
    import torch
    from PIL import Image
    from transformers import Qwen2VLForConditionalGeneration

    from kernel_magics.testing_vlm import load_vlm_processor, tiny_image_dataset

    data = tiny_image_dataset(tmp_path / "shapes", n=6)
    rows = [json.loads(line) for line in (data / "messages.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and (data / rows[0]["messages"][0]["content"][0]["image"]).is_file()
    vqa = json.loads((data / "vqa.jsonl").read_text().splitlines()[0])
    assert set(vqa) == {"image", "question", "answer"} and vqa["answer"].startswith("a ")
    processor = load_vlm_processor(tiny_vlm)
    model = Qwen2VLForConditionalGeneration.from_pretrained(tiny_vlm)
    text = processor.apply_chat_template(rows[0]["messages"], tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text
    image = Image.open(data / rows[0]["messages"][0]["content"][0]["image"])
    inputs = processor(text=[text], images=[image], return_tensors="pt")
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert 4 <= image_tokens <= 64  # the max_pixels budget keeps images cheap
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    assert model.model.visual.blocks[0].attn.qkv.weight.grad is not None  # the vision tower is in the graph
