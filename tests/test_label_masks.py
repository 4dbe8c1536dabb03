"""Which tokens the loss is on, read from the labels the trainer receives in each training step of a real
``km.sft`` run: assistant turns only (the default) for every conversation format, multi-turn included; the
completion only for prompt/completion rows; everything with ``assistant_only_loss=False``; the last reply
only when the chat template has no ``{% generation %}`` markers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import kernel_magics as km

END = "<|im_end|>"  # the tiny tokenizer's eos, which closes every assistant turn
SYSTEM = "You answer in one short sentence."


def chat(i: int) -> list[dict[str, str]]:
    """Row ``i``: single-turn on even rows; a system prompt and three exchanges on odd rows."""
    if i % 2 == 0:
        return [
            {"role": "user", "content": f"What is {i} plus {i}?"},
            {"role": "assistant", "content": f"Sure! {2 * i}."},
        ]
    turns = [{"role": "system", "content": SYSTEM}]
    for turn in range(3):
        turns.append({"role": "user", "content": f"Row {i} question {turn}: name a colour."})
        turns.append({"role": "assistant", "content": f"Row {i} answer {turn}: blue."})
    return turns


CHATS = [chat(i) for i in range(8)]


def replies(messages: list[dict[str, str]]) -> list[str]:
    return [m["content"] + END for m in messages if m["role"] == "assistant"]


def as_sharegpt(messages):
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return {"conversations": [{"from": names[m["role"]], "value": m["content"]} for m in messages]}


def as_alpaca(messages):
    system = [m["content"] for m in messages if m["role"] == "system"]
    pairs = [(m["content"], n["content"]) for m, n in zip(messages, messages[1:], strict=False) if m["role"] == "user"]
    row = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1], "history": [list(p) for p in pairs[:-1]]}
    return {**row, "system": system[0]} if system else row


def trained_text(tiny_model: Path, rows, monkeypatch: pytest.MonkeyPatch, model: Path | None = None, **options):
    """The decoded runs of labelled tokens of every row the trainer received, sorted (8 rows, one epoch)."""
    from transformers import AutoTokenizer
    from trl import SFTTrainer

    received: list[dict[str, torch.Tensor]] = []
    real_step = SFTTrainer.training_step

    def recording_step(self, model, inputs, *args, **kwargs):
        received.append({k: inputs[k].detach().cpu().clone() for k in ("input_ids", "labels")})
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", recording_step)
    model = model or tiny_model
    # where="kernel": the patched trainer lives in this process
    run = km.sft(str(model), rows, max_steps=2, batch_size=4, lora_r=4, lr=1e-4, verbose=False, where="kernel", **options)
    assert run.wait(180) == "finished", run.error
    assert len(received) == 2
    tokenizer = AutoTokenizer.from_pretrained(model)
    runs: list[str] = []
    for batch in received:
        for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
            assert all(label in (-100, token) for token, label in zip(ids, labels, strict=True))  # unshifted labels
            span: list[int] = []
            for label in [*labels, -100]:
                if label != -100:
                    span.append(label)
                elif span:
                    runs.append(tokenizer.decode(span, skip_special_tokens=False))
                    span = []
    return sorted(runs)


def expected(*texts_per_row: list[str]) -> list[str]:
    return sorted(text for texts in texts_per_row for text in texts)


ALL_REPLIES = expected(*(replies(m) for m in CHATS))
FORMATS = {
    "messages": [{"messages": m} for m in CHATS],
    "sharegpt": [as_sharegpt(m) for m in CHATS],
    "alpaca": [as_alpaca(m) for m in CHATS],
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_assistant_only_loss_trains_every_assistant_turn_and_nothing_else(tiny_model, workspace, monkeypatch, fmt):
    assert trained_text(tiny_model, FORMATS[fmt], monkeypatch) == ALL_REPLIES


def test_prompt_completion_strings_train_the_completion_only(tiny_model, workspace, monkeypatch):
    rows = [{"prompt": f"Q{i}: what is {i} plus {i}?", "completion": f" Sure! {2 * i}."} for i in range(8)]
    assert trained_text(tiny_model, rows, monkeypatch) == expected(*([r["completion"] + END] for r in rows))


def test_conversational_prompt_completion_trains_the_completion_only(tiny_model, workspace, monkeypatch):
    """TRL labels everything the template renders after the prompt: the reply, its end token and the
    template's newline after it (never generated, since generation stops at the end token)."""
    rows = [{"prompt": m[:-1], "completion": m[-1:]} for m in CHATS]
    last_replies = expected(*([text + "\n" for text in replies(r["completion"])] for r in rows))
    assert trained_text(tiny_model, rows, monkeypatch) == last_replies


def test_text_rows_train_every_token(tiny_model, workspace, monkeypatch):
    rows = [{"text": f"Line {i}: the quick brown fox jumps over {i} lazy dogs."} for i in range(8)]
    assert trained_text(tiny_model, rows, monkeypatch) == expected(*([r["text"] + END] for r in rows))


def test_whole_conversation_is_trained_without_assistant_only_loss(tiny_model, workspace, monkeypatch):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    whole = expected(*([tokenizer.apply_chat_template(m, tokenize=False)] for m in CHATS))
    trained = trained_text(tiny_model, FORMATS["messages"], monkeypatch, assistant_only_loss=False)
    assert [t.rstrip("\n") for t in trained] == [t.rstrip("\n") for t in whole]
    rows = [{"prompt": f"Q{i}: what is {i} plus {i}?", "completion": f" Sure! {2 * i}."} for i in range(8)]
    trained = trained_text(tiny_model, rows, monkeypatch, assistant_only_loss=False)
    assert trained == expected(*([r["prompt"] + r["completion"] + END] for r in rows))


def test_template_without_generation_markers_trains_the_last_reply(tiny_model, workspace, tmp_path, monkeypatch):
    plain = tmp_path / "no-markers"
    shutil.copytree(tiny_model, plain)
    config_file = plain / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    template = config.get("chat_template") or (plain / "chat_template.jinja").read_text()
    template = template.replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
    if "chat_template" in config:
        config["chat_template"] = template
        config_file.write_text(json.dumps(config))
    else:
        (plain / "chat_template.jinja").write_text(template)
    assert "generation %}" not in template
    trained = trained_text(tiny_model, FORMATS["messages"], monkeypatch, model=plain)
    assert trained == expected(*([text + "\n" for text in replies(m)[-1:]] for m in CHATS))  # see above
