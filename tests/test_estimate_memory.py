"""``km.estimate``'s activation term against what training really holds, on the CPU: the bytes autograd saves
for backward inside the decoder layers (counted exactly with ``torch.autograd.graph.saved_tensors_hooks``)
during the forward pass of the tiny model loaded as ``km.sft`` loads it (LoRA on every linear layer, fp32, no
gradient checkpointing)."""

from __future__ import annotations

from pathlib import Path

import torch

import kernel_magics as km

BATCH, LENGTH = 4, 256


def full_length_rows(tokenizer, count: int) -> list[dict]:
    """Text rows of exactly LENGTH tokens with the end token, so no row is padded."""
    rows = [{"text": " the" * (LENGTH - 1)} for _ in range(count)]
    assert len(tokenizer(rows[0]["text"])["input_ids"]) + 1 == LENGTH
    return rows


def test_activation_term_matches_what_autograd_saves(tiny_model: Path):
    from transformers import AutoTokenizer

    from kernel_magics.train.model import LoraSpec, load_for_training
    from kernel_magics.train.plan import Plan

    plan = Plan("lora", "fp32", "cpu", BATCH, 1, False, "adamw_torch")
    model = load_for_training(tiny_model, plan, LoraSpec(8, 16, 0.05, None))
    model.train()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = full_length_rows(tokenizer, 1)[0]["text"]
    ids = torch.tensor([tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]] * BATCH)
    layers = [m for name, m in model.named_modules() if name.endswith(tuple(f"layers.{i}" for i in range(64)))]
    inside: list[bool] = [False]
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        if inside[0]:
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    for layer in layers:
        layer.register_forward_pre_hook(lambda *_: inside.__setitem__(0, True))
        layer.register_forward_hook(lambda *_: inside.__setitem__(0, False))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, labels=ids).loss.backward()
    measured = sum(saved.values())
    estimate = km.estimate(
        str(tiny_model), max_length=LENGTH, batch_size=BATCH, lora_r=8, gradient_checkpointing=False, dtype="fp32"
    )
    predicted = estimate.breakdown.loc["activations", "lora"] * 1024**3
    print(f"activations: autograd saves {measured / 2**20:.1f} MiB, the estimate counts {predicted / 2**20:.1f} MiB")
    assert len(layers) == 2 and 0.8 <= measured / predicted <= 1.25
