"""km.sft on the tiny model: loss falls for lora / qlora / full, adapters load and change logits,
stop -> checkpoint -> resume() continues global_step and reproduces the uninterrupted losses."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset

FAST = dict(batch_size=4, logging_steps=1, lora_r=8, lora_alpha=16, warmup_ratio=0.0, verbose=False)


def start(model, **kwargs):
    options = {**FAST, **kwargs}
    return km.sft(str(model), str(tiny_dataset("sft")), **options)


def losses(run):
    frame = run.metrics
    return frame.set_index("step")["loss"].dropna()


def test_lora_loss_falls_adapter_loads_and_changes_logits(tiny_model, workspace):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = start(tiny_model, max_steps=30, lr=3e-3, save_steps=15)
    assert run.wait(120) == "finished", run.error
    loss = losses(run)
    assert list(loss.index) == list(range(1, 31))
    first, last = loss.iloc[:5].mean(), loss.iloc[-5:].mean()
    print(f"lora: loss {first:.3f} -> {last:.3f} over 30 steps")
    assert last < first - 0.3
    frame = run.metrics
    assert (frame["tokens_per_s"].dropna() > 0).all() and (frame["memory_gb"] > 0).all()
    lr = frame.set_index("step")["learning_rate"]
    assert lr.iloc[0] == pytest.approx(3e-3) and lr.iloc[-1] < 1e-4  # cosine schedule

    # run folder: config, logging.jsonl (one line per logged step), checkpoints, peft adapter
    config = json.loads((run.output_dir / "config.json").read_text())
    assert config["plan"]["method"] == "lora" and config["arguments"]["lr"] == 3e-3
    assert (
        run.output_dir.parent == workspace / "runs" and run.name.startswith("sft-") and run.name.endswith("tiny-qwen2")
    )
    lines = (run.output_dir / "logging.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 31))
    assert [p.name for p in run.checkpoints] == ["checkpoint-15", "checkpoint-30"]
    assert not (run.output_dir / ".run.lock").exists()

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Translate 'tea' into Chinese."}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, str(run.adapter_dir))
        after = tuned(ids).logits
    assert (after - before).abs().max() > 1e-2
    # the tuned model learned the data's habit: replies start with "Sure!"
    sure = tokenizer.encode("Sure")[0]
    assert after[0, -1].softmax(-1)[sure] > 5 * before[0, -1].softmax(-1)[sure]

    table = km.runs()
    assert table.iloc[0]["run_id"] == run.name and table.iloc[0]["status"] == "finished"
    assert table.iloc[0]["step"] == 30
    html = run._repr_html_()
    assert "finished" in html and run.name in html


def _stop_at(run, step):
    def listener(event, payload):
        if event == "metrics" and payload.get("step") == step:
            run.stop()

    run.subscribe(listener)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_stop_then_resume_matches_uninterrupted_run(tiny_model, workspace, method):
    # where="kernel": the stop at an exact step needs the run in this process (see tests/test_exact_resume.py)
    options = dict(method=method, max_steps=12, lr=2e-3, lora_dropout=0.0, save_steps=100, seed=7, where="kernel")
    reference = start(tiny_model, **options)
    assert reference.wait(120) == "finished", reference.error

    run = start(tiny_model, **options)
    _stop_at(run, 5)
    assert run.wait(120) == "stopped", run.error
    stopped_at = run.checkpoints[-1].name
    assert stopped_at == "checkpoint-6"  # the stop lands on the next step boundary, with a checkpoint
    assert (run.checkpoints[-1] / "trainer_state.json").is_file()
    run.resume()
    assert run.wait(120) == "finished", run.error
    ref, got = losses(reference), losses(run)
    assert list(got.index) == list(range(1, 13))
    print(f"{method}: max |loss difference| resumed vs uninterrupted = {(ref - got).abs().max():.2e}")
    assert got.values == pytest.approx(ref.values, abs=1e-4)
    lr_ref = reference.metrics.set_index("step")["learning_rate"]
    lr_got = run.metrics.set_index("step")["learning_rate"]
    assert lr_got.values == pytest.approx(lr_ref.values, rel=1e-6)  # the schedule continued


def test_qlora_on_cpu_loss_falls_and_resumes(tiny_model, workspace):
    run = start(tiny_model, method="qlora", max_steps=20, lr=3e-3, save_steps=100, lora_dropout=0.0, where="kernel")
    _stop_at(run, 8)
    assert run.wait(180) == "stopped", run.error
    assert run.config.plan.optim == "paged_adamw_8bit"
    run.resume()
    assert run.wait(180) == "finished", run.error
    loss = losses(run)
    assert list(loss.index) == list(range(1, 21))
    print(f"qlora: loss {loss.iloc[:4].mean():.3f} -> {loss.iloc[-4:].mean():.3f}")
    assert loss.iloc[-4:].mean() < loss.iloc[:4].mean() - 0.15
    adapter_config = json.loads((run.adapter_dir / "adapter_config.json").read_text())
    assert adapter_config["r"] == 8


def test_full_fine_tuning_loss_falls_and_saves_the_model(tiny_model, workspace):
    from transformers import AutoModelForCausalLM

    run = start(tiny_model, method="full", max_steps=20, lr=2e-3, save_steps=100)
    assert run.wait(120) == "finished", run.error
    loss = losses(run)
    print(f"full: loss {loss.iloc[:4].mean():.3f} -> {loss.iloc[-4:].mean():.3f}")
    assert loss.iloc[-4:].mean() < loss.iloc[:4].mean() - 0.3
    reloaded = AutoModelForCausalLM.from_pretrained(run.adapter_dir)
    assert reloaded.config.hidden_size == 128


def test_other_formats_train_with_completion_only_loss(tiny_model, workspace, monkeypatch):
    """In-memory prompt/completion rows: the labels of each training step cover the completion (and the
    end token) only; the rows are kept with the run (tests/test_label_masks.py covers every format)."""
    from trl import SFTTrainer

    rows = [{"prompt": f"Q{i}: what is {i} plus {i}?", "completion": f" Sure! {2 * i}."} for i in range(40)]
    steps: list[tuple[list[list[int]], list[list[int]]]] = []
    real_step = SFTTrainer.training_step

    def recording_step(self, model, inputs, *args, **kwargs):
        steps.append((inputs["input_ids"].tolist(), inputs["labels"].tolist()))
        return real_step(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", recording_step)
    run = km.sft(  # where="kernel": the patched trainer lives in this process
        str(tiny_model), rows, max_steps=4, batch_size=4, logging_steps=1, lora_r=4, verbose=False, where="kernel"
    )
    assert run.wait(120) == "finished", run.error
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    completions = {r["completion"] + tokenizer.eos_token for r in rows}
    assert len(steps) == 4
    for ids, labels in steps:
        for row_ids, row_labels in zip(ids, labels, strict=True):
            trained = [label for label in row_labels if label != -100]
            start = next(i for i, label in enumerate(row_labels) if label != -100)
            assert row_labels[start : start + len(trained)] == row_ids[start : start + len(trained)] == trained
            assert tokenizer.decode(trained) in completions  # one contiguous span: the completion
            assert tokenizer.decode(row_ids[:start]).startswith("Q")  # the prompt before it is not trained
    assert (run.output_dir / "dataset.jsonl").is_file()  # in-memory data is kept with the run
    assert json.loads((run.output_dir / "config.json").read_text())["data"]["format"] == "prompt_completion"


def test_a_script_that_waits_for_its_run_exits_cleanly(tiny_model, tmp_path):
    """wait() returns only when the training thread is gone: exiting right after it must not abort."""
    import subprocess
    import sys

    script = (
        "import kernel_magics as km\n"
        "from kernel_magics.testing import tiny_dataset\n"
        f"run = km.sft({str(tiny_model)!r}, str(tiny_dataset('sft')), max_steps=2, batch_size=2, verbose=False,"
        f" output_dir={str(tmp_path / 'run')!r})\n"
        "print(run.wait())\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("finished")
    assert "terminate called" not in done.stderr


def test_bf16_on_the_cpu_trains_in_bf16_and_follows_the_fp32_loss_curve(tiny_model, workspace):
    curves = {}
    for dtype in ("fp32", "bf16"):
        run = start(tiny_model, dtype=dtype, lr=2e-3, max_steps=12, lora_dropout=0.0, save_steps=1000, device="cpu")
        assert run.wait(timeout=300) == "finished", run.error
        assert run.config.plan.dtype == dtype
        assert json.loads((run.adapter_dir / "adapter_config.json").read_text())["r"] == 8
        curves[dtype] = losses(run).tolist()
    fp32, bf16 = curves["fp32"], curves["bf16"]
    assert len(fp32) == len(bf16) == 12
    assert sum(bf16[-3:]) / 3 < bf16[0] - 0.25  # it trains (measured: 7.01 -> 6.53 over the last three steps)
    # same seed and data: bf16 rounding moves the curve by about 1e-3 here; 0.1 leaves room for any CPU's bf16
    assert max(abs(a - b) for a, b in zip(fp32, bf16, strict=True)) < 0.1
