"""How packed rows reach the model.

TRL packs whole conversations into ``max_length`` rows (best-fit decreasing) and, by default, hands the
model the whole batch as **one flat sequence** with ``position_ids`` restarting at each conversation.
That is the right shape for variable-length attention kernels (FlashAttention), which cost time linear
in the batch. Without such a kernel (PyTorch SDPA or eager attention: every CPU and MPS run, and CUDA
without flash-attn) the model builds one block-diagonal mask over the flat sequence, and attention costs
grow with the *square* of ``batch_size * max_length``: eight packed rows of 1024 tokens become one
8192-token sequence, 8x the attention work of the same rows kept apart.

So on those kernels we keep the packed rows as rows: a ``[batch, max_length]`` batch with per-row
``position_ids`` and no attention mask. Transformers then derives the same block-diagonal causal mask
row by row (``find_packed_sequence_indices``); conversations still never see each other, the loss skips
the first token of each one, and the few padding tokens at the end of a row carry no loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash")


def has_varlen_attention(model: Any) -> bool:
    """Does ``model`` attend with a variable-length kernel (so one flat packed sequence is cheap)?"""
    config = getattr(model, "config", None)
    implementation = str(getattr(config, "_attn_implementation", "") or "")
    return any(name in implementation for name in VARLEN_ATTENTION)


@dataclass
class PackedRowsCollator:
    """Collate TRL-packed examples (``input_ids``, ``seq_lengths``, ``labels``) into padded rows.

    Returns ``input_ids``, ``labels`` and ``position_ids`` of shape ``[batch, longest row]`` (and
    ``use_cache=False``); labels are
    -100 on padding, where TRL put -100 (prompt / non-assistant tokens) and on the first token of every
    packed conversation (it must not be predicted from the previous conversation's last token).
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)
        position_ids = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            ids = torch.as_tensor(example["input_ids"], dtype=torch.long)
            n = len(ids)
            input_ids[row, :n] = ids
            lengths = example.get("seq_lengths") or [n]
            position_ids[row, :n] = torch.cat([torch.arange(length) for length in lengths])
            labels[row, :n] = torch.as_tensor(example.get("labels", example["input_ids"]), dtype=torch.long)
        labels[position_ids == 0] = -100
        # a cache (even an empty one) makes transformers skip the packed-sequence mask
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "use_cache": False}


def use_packed_rows(trainer: Any) -> str | None:
    """Switch a packing ``SFTTrainer`` to packed rows when its attention has no variable-length kernel.

    Returns a line for the run's log (None when the trainer keeps TRL's flat padding-free batches).
    """
    if not getattr(trainer.args, "packing", False) or has_varlen_attention(trainer.model):
        return None
    trainer.data_collator = PackedRowsCollator(
        pad_token_id=trainer.processing_class.pad_token_id,
        pad_to_multiple_of=trainer.args.pad_to_multiple_of,
    )
    implementation = getattr(trainer.model.config, "_attn_implementation", None) or "default"
    return (
        f"packing: {trainer.args.max_length}-token rows with per-row position_ids ({implementation} attention has no "
        "variable-length kernel, so one flat sequence would make attention cost grow with the square of the batch)"
    )
