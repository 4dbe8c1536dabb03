"""Packing on attention without a variable-length kernel (CPU SDPA): packed rows stay rows, conversations in
one row do not see each other, and a packed run trains."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.methods.packing import PackedRowsCollator, has_varlen_attention


def test_collator_restarts_positions_and_masks_the_seams():
    collator = PackedRowsCollator(pad_token_id=0)
    batch = collator(
        [
            {"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "seq_lengths": [3, 2]},
            {"input_ids": [4, 3, 2], "labels": [4, 3, 2], "seq_lengths": [3]},
        ]
    )
    assert set(batch) == {
        "input_ids",
        "labels",
        "position_ids",
        "use_cache",
    }  # no attention mask: positions define the blocks
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 3, 2, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 0, 0]]
    # the first token of each conversation, trainer-masked tokens and padding carry no loss
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 3, 2, -100, -100]]
    assert PackedRowsCollator(pad_token_id=0, pad_to_multiple_of=4)(
        [{"input_ids": [1, 2, 3, 4, 5], "seq_lengths": [5]}]
    )["input_ids"].shape == (1, 8)


def test_conversations_in_one_row_do_not_see_each_other(tiny_model):
    """The packed row's logits equal each conversation's logits computed alone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa").eval()
    assert not has_varlen_attention(model)
    rows = [json.loads(line)["messages"] for line in tiny_dataset("sft").read_text().splitlines()[:3]]
    ids = [tokenizer.apply_chat_template(m, tokenize=True)["input_ids"] for m in rows]
    batch = PackedRowsCollator(tokenizer.pad_token_id)(
        [
            {"input_ids": ids[0] + ids[1], "seq_lengths": [len(ids[0]), len(ids[1])]},
            {"input_ids": ids[2], "seq_lengths": [len(ids[2])]},
        ]
    )
    with torch.no_grad():
        packed = model(**batch).logits
        alone = [model(input_ids=torch.tensor([x])).logits[0] for x in ids]
    n0, n1 = len(ids[0]), len(ids[1])
    torch.testing.assert_close(packed[0, :n0], alone[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed[0, n0 : n0 + n1], alone[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(packed[1, : len(ids[2])], alone[2], atol=1e-4, rtol=1e-4)
    # and the check can fail: the same row without restarted positions lets the second conversation look back
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"][:1], use_cache=False).logits
    assert not torch.allclose(leaky[0, n0 : n0 + n1], alone[1], atol=1e-3)


def test_packed_run_trains_on_rows_as_long_as_the_longest_conversation(tiny_model, workspace):
    run = km.sft(
        str(tiny_model),
        str(tiny_dataset("sft")),
        packing=True,
        batch_size=2,
        max_length=1024,
        max_steps=20,
        lr=3e-3,
        logging_steps=1,
        lora_r=8,
        lora_alpha=16,
        warmup_ratio=0.0,
        verbose=False,
    )
    assert run.wait(300) == "finished", run.error
    notes = "\n".join(run.notes)
    longest = max(
        int(line.rsplit("max ", 1)[1].split(";")[0]) for line in run.notes if line.startswith("tokens per row")
    )
    assert f"packing: {longest + 8}-token rows with per-row position_ids" in notes, notes
    loss = run.metrics.set_index("step")["loss"].dropna()
    first, last = loss.iloc[:4].mean(), loss.iloc[-4:].mean()
    print(f"packed lora: loss {first:.3f} -> {last:.3f} over 20 steps")
    assert last < first - 0.3
    # packed rows hold several conversations: more tokens per step than one conversation per row
    tokens = run.metrics["tokens"].dropna()
    per_step = tokens.max() / run.metrics["step"].max()
    print(f"{per_step:.0f} tokens per step in rows of {longest + 8}")
    assert per_step > 0.75 * 2 * (longest + 8)


@pytest.mark.parametrize("implementation", ["flash_attention_2", "kernels-community/flash-attn2"])
def test_varlen_kernels_keep_one_flat_sequence(implementation):
    class Config:
        _attn_implementation = implementation

    class Model:
        config = Config()

    assert has_varlen_attention(Model())
