"""``km.estimate``'s activation and logits terms against what training really holds, on the CPU, for the tiny
model loaded as ``km.sft`` loads it (LoRA on every linear layer, fp32, no gradient checkpointing).

* Activations: the bytes autograd saves for backward inside the decoder layers, counted exactly with
  ``torch.autograd.graph.saved_tensors_hooks`` during the forward pass.
* Logits: the peak bytes of live tensors during one training step through km.sft's loss
  (:mod:`kernel_magics.train.methods.sft_loss`), counted exactly at the dispatcher (:class:`LiveBytes`), for two models
  that differ only in the vocabulary size, so everything but the logits cancels. Counting tensors instead of the
  process's resident memory makes the figure independent of the allocator, the CPU and other tests.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import kernel_magics as km

BATCH, LENGTH = 4, 256


def full_length_rows(tokenizer, count: int) -> list[dict]:
    """Text rows of exactly LENGTH tokens with the end token, so no row is padded."""
    rows = [{"text": " the" * (LENGTH - 1)} for _ in range(count)]
    assert len(tokenizer(rows[0]["text"])["input_ids"]) + 1 == LENGTH
    return rows


def training_model(folder: Path) -> Any:
    """``folder`` loaded as km.sft loads it for a LoRA run in fp32 on the CPU, in training mode."""
    from kernel_magics.train.model import LoraSpec, load_for_training
    from kernel_magics.train.planning.plan import Plan

    plan = Plan("lora", "fp32", "cpu", BATCH, 1, False, "adamw_torch")
    model = load_for_training(folder, plan, LoraSpec(8, 16, 0.05, None))
    model.train()
    return model


def full_length_batch(folder: Path) -> torch.Tensor:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = full_length_rows(tokenizer, 1)[0]["text"]
    return torch.tensor([tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]] * BATCH)


def test_activation_term_matches_what_autograd_saves(tiny_model: Path):
    model = training_model(tiny_model)
    ids = full_length_batch(tiny_model)
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


class LiveBytes(TorchDispatchMode):
    """The peak bytes of tensors created while the mode is on and still alive (a shared storage counts once)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self.holders: dict[int, int] = {}  # storage address -> live tensors on it

    def _released(self, address: int, nbytes: int) -> None:
        self.holders[address] -= 1
        if self.holders[address] == 0:
            del self.holders[address]
            self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            address, nbytes = storage.data_ptr(), storage.nbytes()
            if nbytes == 0:
                continue
            if address not in self.holders:
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            self.holders[address] = self.holders.get(address, 0) + 1
            weakref.finalize(tensor, self._released, address, nbytes)
        return out


def with_vocabulary(tiny_model: Path, vocab_size: int, folder: Path) -> Path:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model)
    config.vocab_size = vocab_size
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


def step_peak(folder: Path) -> int:
    """Peak live bytes of one forward + backward through km.sft's labelled-logits loss, every position labelled."""
    from kernel_magics.train.methods.sft_loss import add_labelled_lm_head

    model = training_model(folder)
    add_labelled_lm_head(model.get_base_model())
    ids = full_length_batch(folder)
    with LiveBytes() as counter:
        output = model(input_ids=ids, labels=ids, labelled_lm_head=True)
        (output.loss / output.num_labelled).backward()
        del output
    return counter.peak


def test_live_bytes_counts_frees_and_shared_storage():
    with LiveBytes() as counter:
        for _ in range(3):
            big = torch.ones(1000, 250)  # 1 MB, freed at the next assignment
            view = big[:10]
        del big, view
    assert counter.peak == 2 * 1000 * 250 * 4 and counter.live == 0  # the old block lives until the new one exists


def test_logits_term_matches_the_measured_peak(tiny_model: Path, tmp_path: Path):
    small, large = 8192, 24576
    peaks, predicted = {}, {}
    for vocab in (small, large):
        folder = with_vocabulary(tiny_model, vocab, tmp_path / f"vocab-{vocab}")
        peaks[vocab] = step_peak(folder)
        estimate = km.estimate(str(folder), max_length=LENGTH, batch_size=BATCH, lora_r=8, dtype="fp32")
        predicted[vocab] = estimate.breakdown.loc["logits + loss", "lora"] * 1024**3
    measured, counted = peaks[large] - peaks[small], predicted[large] - predicted[small]
    per_logit = measured / (BATCH * (LENGTH - 1) * (large - small))
    print(
        f"logits: +{measured / 2**20:.0f} MiB measured, +{counted / 2**20:.0f} MiB estimated ({per_logit:.1f} B/logit)"
    )
    assert 0.75 <= measured / counted <= 1.33
