"""Evaluation on known toy cases: perplexity by hand, a uniform model, exact match against known
replies, preference accuracy, held-out splits, a quick fine-tune that lowers perplexity, and compare."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest
import torch

import kernel_magics as km
from kernel_magics import cli
from kernel_magics.errors import SwiftConfigError, SwiftDataError, SwiftUsageError
from kernel_magics.export.evaluate import compare, evaluate
from kernel_magics.export.rows import holdout_indices, load_rows, select_rows
from kernel_magics.testing import tiny_dataset


def rows(kind: str) -> list[dict]:
    return [json.loads(line) for line in tiny_dataset(kind).read_text(encoding="utf-8").splitlines()]


def value(frame, metric: str, model: str | None = None) -> float:
    picked = frame[frame.metric == metric]
    if model is not None:
        picked = picked[picked.model == model]
    assert len(picked) == 1, frame
    return float(picked.value.iloc[0])


def greedy(model, tokenizer, prompt_ids: list[int], n: int) -> str:
    """Unbatched, unpadded greedy decoding with plain transformers (the reference)."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False)
    return tokenizer.decode(out[0, len(prompt_ids) :], skip_special_tokens=True).strip()


@pytest.fixture(scope="module")
def uniform_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its final norm zeroed: every logit is 0, so p(token) = 1/vocab."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        model.model.norm.weight.zero_()
    out = tmp_path_factory.mktemp("uniform") / "uniform"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def test_uniform_model_has_perplexity_equal_to_vocab_size(uniform_model: Path):
    data = rows("sft")[:12] + [{"text": "plain text row 123"}] + rows("kto")[:4]
    frame = evaluate(uniform_model, data, metrics=["perplexity"])
    vocab = json.loads((uniform_model / "config.json").read_text())["vocab_size"]
    assert value(frame, "perplexity") == pytest.approx(vocab, rel=1e-4)
    assert int(frame["count"].iloc[0]) > 100


def test_perplexity_equals_a_hand_computation(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    eos = tokenizer.eos_token_id

    def nll(ids: list[int], first_scored: int) -> tuple[float, int]:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, :-1]
        losses = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
        return losses[first_scored - 1 :].sum().item(), len(ids) - first_scored

    # raw prompt + completion (no chat template): the completion and its eos are scored
    raw = [{"prompt": "What color is the sky? ", "completion": "Blue."}, {"prompt": "2+2=", "completion": "4"}]
    total = count = 0.0
    for row in raw:
        prompt = tokenizer(row["prompt"]).input_ids
        ids = prompt + tokenizer(row["completion"], add_special_tokens=False).input_ids + [eos]
        s, c = nll(ids, len(prompt))
        total, count = total + s, count + c
    frame = evaluate(tiny_model, raw, metrics="perplexity", chat_template=False)
    assert value(frame, "perplexity") == pytest.approx(math.exp(total / count), rel=1e-5)
    assert int(frame["count"].iloc[0]) == count

    # single-turn chats: the assistant reply and its <|im_end|> are scored
    chats = [r for r in rows("sft") if len(r["messages"]) == 2][:6]
    total = count = 0.0
    for row in chats:
        prefix = tokenizer.apply_chat_template(row["messages"][:1], tokenize=False, add_generation_prompt=True)
        full = prefix + row["messages"][1]["content"] + "<|im_end|>"
        s, c = nll(tokenizer(full).input_ids, len(tokenizer(prefix).input_ids))
        total, count = total + s, count + c
    frame = evaluate(tiny_model, chats, metrics=["perplexity"])
    assert value(frame, "perplexity") == pytest.approx(math.exp(total / count), rel=1e-5)
    assert int(frame["count"].iloc[0]) == count


def test_exact_match_and_contains_against_known_replies(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    questions = ["What is 2+2?", "你好吗？", "Name a color.", "Translate 'tea'.", "Hi", "Explain LoRA"]
    # raw prompts: a random model answers a chat prompt with newlines only, which would make this trivial
    replies = [greedy(model, tokenizer, tokenizer(q).input_ids, 8) for q in questions]
    assert len(set(replies)) >= 4 and all(replies), replies
    # first half: the model's own reply (shouted, extra spaces: normalisation must match it); rest: wrong
    data = [
        {"question": q, "answer": f"  {r.upper()} " if i < 3 else "certainly not this"}
        for i, (q, r) in enumerate(zip(questions, replies, strict=True))
    ]
    frame = evaluate(
        tiny_model, data, metrics=["exact_match", "contains"], max_new_tokens=8, batch_size=4, chat_template=False
    )
    assert value(frame, "exact_match") == pytest.approx(0.5)
    assert value(frame, "contains") == pytest.approx(0.5)
    partial = [{"prompt": q, "answer": r[: max(1, len(r) // 2)]} for q, r in zip(questions, replies, strict=True)]
    frame = evaluate(tiny_model, partial, metrics=["contains"], max_new_tokens=8, chat_template=False)
    assert value(frame, "contains") == 1.0


def test_preference_accuracy_prefers_the_models_own_reply(tiny_model: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    data = []
    for row in rows("dpo")[:6]:
        own = greedy(model, tokenizer, tokenizer(row["prompt"]).input_ids, 12)
        data.append({"prompt": row["prompt"], "chosen": own, "rejected": row["rejected"]})
    frame = evaluate(tiny_model, data, metrics=["preference_accuracy"], chat_template=False)
    assert value(frame, "preference_accuracy") == 1.0
    flipped = [{**r, "chosen": r["rejected"], "rejected": r["chosen"]} for r in data]
    flipped_frame = evaluate(tiny_model, flipped, metrics=["preference_accuracy"], chat_template=False)
    assert value(flipped_frame, "preference_accuracy") == 0.0


def test_fine_tuning_lowers_held_out_perplexity(tiny_model: Path, tmp_path: Path):
    """A few full fine-tuning steps on the training split lower perplexity on the held-out split."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    all_rows = rows("sft")
    held_out = set(holdout_indices(all_rows, 0.1, seed=0))
    train = [r for i, r in enumerate(all_rows) if i not in held_out]
    assert 12 <= len(held_out) <= 40 and len(train) == len(all_rows) - len(held_out)
    assert not {json.dumps(all_rows[i]) for i in held_out} & {json.dumps(r) for r in train}

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in train]
    model.train()
    for step in range(12):
        start = (step * 8) % (len(texts) - 8)
        batch = tokenizer(texts[start : start + 8], return_tensors="pt", padding=True)
        labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    tuned = tmp_path / "tuned"
    model.save_pretrained(tuned)
    tokenizer.save_pretrained(tuned)

    frame = km.evaluate({"base": str(tiny_model), "tuned": str(tuned)}, all_rows, holdout=0.1, seed=0, limit=24)
    before, after = value(frame, "perplexity", "base"), value(frame, "perplexity", "tuned")
    print(f"held-out perplexity: base {before:.1f} -> fine-tuned {after:.1f}")
    assert list(frame.model) == ["base", "tuned"] and set(frame.columns) >= {"model", "metric", "value", "count"}
    assert after < before / 5


def conversation(row: dict) -> tuple:
    """(role, content) pairs of a TRL row (messages, or a prompt/completion message split) or a raw chat row."""
    messages = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
    return tuple((m["role"], m["content"]) for m in messages)


def test_sft_eval_split_is_exactly_what_evaluate_holds_out(tiny_model: Path, workspace: Path, monkeypatch):
    """km.sft(eval_split=0.1) then km.evaluate(holdout=0.1) with the same data and seed: evaluate scores
    exactly the rows the run evaluated on, none of which it trained on, duplicates included."""
    from kernel_magics.train.methods import sft as sft_module

    data = rows("sft")
    with_duplicates = data + data[:60:3] + data[5:25]  # copies of 40 rows, 10 of them twice
    path = workspace / "with_duplicates.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in with_duplicates), encoding="utf-8")
    handed: dict[str, list] = {}
    real_make_trainer = sft_module.make_trainer

    def recording_make_trainer(trainer_class, model, args, plan, output_dir, inputs, row_length):
        handed["train"], handed["eval"] = list(inputs.train.rows), list(inputs.eval.rows)
        return real_make_trainer(trainer_class, model, args, plan, output_dir, inputs, row_length)

    monkeypatch.setattr(sft_module, "make_trainer", recording_make_trainer)
    run = km.sft(  # where="kernel": the recording patch lives in this process
        str(tiny_model),
        str(path),
        eval_split=0.1,
        seed=7,
        max_steps=1,
        batch_size=2,
        lora_r=4,
        verbose=False,
        where="kernel",
    )
    assert run.wait(120) == "finished", run.error

    scored: list[dict] = []
    evaluate_module = importlib.import_module("kernel_magics.export.evaluate")
    real_to_examples = evaluate_module.to_examples

    def recording_to_examples(picked, *args):
        scored.extend(picked)
        return real_to_examples(picked, *args)

    monkeypatch.setattr(evaluate_module, "to_examples", recording_to_examples)
    frame = km.evaluate(str(tiny_model), str(path), metrics=["perplexity"], holdout=0.1, seed=7)
    assert value(frame, "perplexity") > 1

    trained = {conversation(r) for r in handed["train"]}
    run_eval = [conversation(r) for r in handed["eval"]]
    evaluated = [conversation(r) for r in scored]
    assert evaluated == run_eval  # the same rows, in the same order
    assert len(set(evaluated)) == len(evaluated)  # one copy of each held-out row
    assert not set(evaluated) & trained  # no duplicate of an evaluated row was trained on
    distinct = {conversation(r) for r in with_duplicates}
    assert trained | set(evaluated) == distinct and 0.04 * len(distinct) <= len(evaluated) <= 0.2 * len(distinct)
    assert len(handed["train"]) + len(evaluated) < len(with_duplicates)  # held-out copies were dropped


def test_held_out_split_is_seeded_and_limited():
    data = load_rows(tiny_dataset("sft"))
    first, again = select_rows(data, holdout=0.25, seed=1), select_rows(data, holdout=0.25, seed=1)
    assert first == again and 40 <= len(first) <= 80  # about a quarter of 240 distinct rows
    assert select_rows(data, holdout=0.25, seed=2) != first
    assert len(select_rows(data, holdout=0.25, limit=5)) == 5
    assert select_rows(list(reversed(data)), holdout=0.25, seed=1) == list(reversed(first))  # by content, not position


def test_bad_requests_are_one_line_errors(tiny_model: Path, tmp_path: Path):
    with pytest.raises(SwiftUsageError, match="did you mean 'perplexity'"):
        evaluate(tiny_model, rows("sft")[:2], metrics=["perplexty"])
    with pytest.raises(SwiftConfigError, match="task 'hellaswag' needs the Hub dataset 'Rowan/hellaswag'"):
        evaluate(tiny_model, metrics=["lm_eval:hellaswag"])  # offline: one line, no download attempt
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": broken}\n', encoding="utf-8")
    with pytest.raises(SwiftDataError, match=r"bad.jsonl:2: not valid JSON"):
        evaluate(tiny_model, bad)
    with pytest.raises(SwiftDataError, match="exact_match needs rows with a prompt and a reference"):
        evaluate(tiny_model, [{"text": "only text"}], metrics=["exact_match"])
    with pytest.raises(SwiftDataError, match="unknown row format"):
        evaluate(tiny_model, [{"foo": 1}])
    with pytest.raises(SwiftUsageError, match="needs a dataset"):
        evaluate(tiny_model)


def test_cli_eval_prints_the_table(tiny_model: Path, capsys):
    code = cli.main(
        ["eval", str(tiny_model), "-d", str(tiny_dataset("dpo")), "--metrics", "perplexity", "--limit", "4"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "perplexity" in out and tiny_model.name in out
    call = cli.parse(["eval", "tiny"], body="dataset: data.jsonl\nmetrics: [perplexity, exact_match]\nholdout: 0.1")
    assert call.kwargs == {
        "model": "tiny",
        "dataset": "data.jsonl",
        "metrics": ["perplexity", "exact_match"],
        "holdout": 0.1,
    }


def test_compare_puts_models_side_by_side(tiny_model: Path, tiny_llama: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    prompts = ["Hello!", "What is 17 plus 33?", "你好"]
    table = compare({"qwen": str(tiny_model), "llama": str(tiny_llama)}, prompts, max_new_tokens=6, chat_template=False)
    assert list(table.columns) == ["qwen", "llama"] and list(table.index) == prompts
    for label, folder in (("qwen", tiny_model), ("llama", tiny_llama)):
        model = AutoModelForCausalLM.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        for prompt in prompts:
            want = greedy(model, tokenizer, tokenizer(prompt).input_ids, 6)
            assert table.loc[prompt, label] == want
    assert (table["qwen"] != table["llama"]).any()

    from kernel_magics.widgets.compare import render_html, show

    html = render_html(table)
    assert html.count("<tr>") == 4 and "What is 17 plus 33?" in html and "llama" in html
    assert show(table).value == html

    with pytest.raises(SwiftUsageError, match="at least one prompt"):
        compare([str(tiny_model)], [])
