"""GRPO on the tiny model: a digits reward is learned, stop / resume continues, two runs back to back in one
process agree, and the run's metrics, samples, saved reward source and dashboard are what the user sees."""

from __future__ import annotations

import html
import json
import threading

import pytest
import torch

import kernel_magics as km
from kernel_magics.testing import tiny_dataset


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two spinning threads per process make steps much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def prompt_rows() -> list[dict]:
    """The kit's conversations as prompt-only rows (the last assistant turn is what the model writes)."""
    rows = []
    for line in tiny_dataset("sft").read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"prompt": messages[:last]})
    return rows


def digits(completions, **kwargs):
    """Share of digits in each completion: a random model writes few, so the mean starts near 0.1."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


# Full fine-tuning: on this 2-layer random model the digits habit lives in the (tied) embeddings, which
# LoRA on the linear layers does not reach (LoRA r 8 at lr 5e-3..3e-2 stayed at ~0.12 after 40 steps).
FAST = dict(
    method="full",
    lr=1e-2,
    num_generations=4,
    max_completion_length=16,
    batch_size=8,
    beta=0.0,
    warmup_ratio=0.0,
    lr_scheduler="linear",
    save_steps=1000,
    verbose=False,
)


def rewards_of(run) -> list[float]:
    return [float(v) for v in run.metrics["reward"].dropna()]


def test_digits_reward_rises_and_the_run_shows_it(tiny_model, workspace):
    run = km.grpo(str(tiny_model), prompt_rows(), reward=digits, max_steps=40, seed=1, **FAST)
    assert run.wait(900) == "finished", run.error
    rewards = rewards_of(run)
    head, tail = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    print(f"digits reward {head:.3f} -> {tail:.3f} over {len(rewards)} steps")
    assert len(rewards) == 40
    assert head < 0.3 and tail > 0.5
    frame = run.metrics
    for key in ("rewards/digits/mean", "rewards/digits/std", "reward_std", "completions/mean_length", "entropy"):
        assert frame[key].notna().sum() == 40, key
    assert run.config.kind == "grpo" and run.config.rewards == ["digits"]
    assert run.config.arguments["reward"] == ["rewards.py:digits"]
    source = (run.output_dir / "rewards.py").read_text()
    assert "def digits(completions, **kwargs):" in source
    compile(source, "rewards.py", "exec")
    latest = run.samples
    assert latest["step"] == 40 and len(latest["samples"]) == 8
    sample = latest["samples"][0]
    assert sample["rewards"]["digits"] == pytest.approx(digits([sample["completion"]])[0], abs=1e-6)
    assert len((run.output_dir / "samples.jsonl").read_text().splitlines()) == 40
    assert (run.adapter_dir / "config.json").is_file()  # full fine-tuning saves the whole model

    from kernel_magics.widgets.dashboard import Dashboard

    board = Dashboard(run)
    try:
        steps, values = board.series("reward")
        assert steps == list(range(1, 41)) and values == pytest.approx(rewards)
        assert board.series("rewards/digits/mean")[1] == pytest.approx(rewards)
        assert len(board.series("completions/mean_length")[0]) == 40
        assert "completions at step <b>40</b>" in board.samples.value
        assert html.escape(sample["completion"]) in board.samples.value
    finally:
        board.close()


def test_stop_then_resume_continues_the_run(tiny_model, workspace):
    # where="kernel": the stop follows a progress callback at step 2; a run in its own process is stopped from its
    # mirrored events, which on a fast machine come after the tiny model's last step
    run = km.grpo(str(tiny_model), prompt_rows(), reward=digits, max_steps=10, seed=3, where="kernel", **FAST)
    reached = threading.Event()
    run.subscribe(lambda event, payload: reached.set() if event == "progress" and payload["step"] >= 2 else None)
    assert reached.wait(600)
    run.stop()
    assert run.wait(600) == "stopped", run.error
    stopped_at = run.progress["step"]
    assert 2 <= stopped_at < 10 and run.checkpoints[-1].name == f"checkpoint-{stopped_at}"
    run.resume()
    assert run.wait(600) == "finished", run.error
    steps = [int(s) for s in run.metrics["step"]]
    assert steps == list(range(1, 11)), steps
    assert json.loads((run.checkpoints[-1] / "trainer_state.json").read_text())["global_step"] == 10


def test_two_runs_back_to_back_in_one_process_agree(tiny_model, workspace):
    """Same seed and work twice in one process: nothing (port, memory, RNG, metric keys) leaks between them."""
    first = km.grpo(str(tiny_model), prompt_rows(), reward=digits, max_steps=4, seed=5, **FAST)
    assert first.wait(600) == "finished", first.error
    second = km.grpo(str(tiny_model), prompt_rows(), reward=digits, max_steps=4, seed=5, **FAST)
    assert second.wait(600) == "finished", second.error
    assert second.output_dir != first.output_dir
    assert rewards_of(first) == pytest.approx(rewards_of(second), abs=1e-6)
    assert list(first.metrics["loss"]) == pytest.approx(list(second.metrics["loss"]), abs=1e-6)


def test_export_script_reproduces_a_grpo_run_with_its_reward(tiny_model, workspace, tmp_path):
    """The script carries the saved reward source; its recorded arguments start the same run (checked here
    by running those arguments for 2 steps: the same rewards as the original's first 2 steps)."""
    import ast

    from kernel_magics.train.methods.rewards import resolve_rewards

    run = km.grpo(str(tiny_model), prompt_rows(), reward=[digits, "length"], max_steps=2, seed=9, **FAST)
    assert run.wait(600) == "finished", run.error
    shell = run.to_script(tmp_path / "repro", kind="shell").read_text()
    script = run.to_script(tmp_path / "repro", kind="python").read_text()
    saved = tmp_path / "repro" / f"reproduce-{run.name}-data" / "rewards.py"
    assert saved.is_file() and f"--reward {saved.resolve()}:digits,length" in shell
    arguments = ast.literal_eval(script.split("ARGUMENTS = ", 1)[1].split("\nDATA = ", 1)[0])
    assert arguments["reward"] == [f"{saved.resolve()}:digits", "length"]
    assert [r.name for r in resolve_rewards(arguments["reward"])] == ["digits", "length"]
    again = km.grpo(
        str(tiny_model), prompt_rows(), output_dir=str(tmp_path / "again"), **{**arguments, "verbose": False}
    )
    assert again.wait(600) == "finished", again.error
    assert rewards_of(again) == pytest.approx(rewards_of(run), abs=1e-6)
