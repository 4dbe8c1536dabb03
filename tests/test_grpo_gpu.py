"""GPU: GRPO on the tiny model with CUDA rollouts (transformers generate), and with vLLM colocated in the
same process where vllm is installed: the digits reward still rises, and a second run in the same process
starts (no rendezvous port or engine memory left over from the first)."""

from __future__ import annotations

import json

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset

pytestmark = pytest.mark.gpu


def prompt_rows() -> list[dict]:
    rows = []
    for line in tiny_dataset("sft").read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        rows.append({"prompt": messages[:last]})
    return rows


def digits(completions, **kwargs):
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(1, len(t)) for t in texts]


WORK = dict(
    method="full",
    lr=1e-2,
    num_generations=4,
    max_completion_length=16,
    batch_size=8,
    beta=0.0,
    warmup_ratio=0.0,
    lr_scheduler="linear",
    save_steps=1000,
    device="cuda",
    seed=1,
    verbose=False,
)


def test_grpo_on_cuda_learns_the_digits_reward(tiny_model, workspace):
    run = km.grpo(str(tiny_model), prompt_rows(), reward=digits, max_steps=40, use_vllm=False, **WORK)
    assert run.wait(900) == "finished", run.error
    rewards = [float(v) for v in run.metrics["reward"]]
    assert sum(rewards[:5]) / 5 < 0.3 and sum(rewards[-5:]) / 5 > 0.5, rewards


@pytest.mark.vllm
def test_vllm_colocated_rollouts_twice_in_one_process(tiny_model, workspace):
    runs = []
    for _ in range(2):
        run = km.grpo(str(tiny_model), prompt_rows(), reward=digits, max_steps=20, use_vllm=True, **WORK)
        assert run.wait(900) == "finished", run.error
        assert any("rollouts: vLLM" in note for note in run.notes)
        runs.append([float(v) for v in run.metrics["reward"]])
    for rewards in runs:
        assert sum(rewards[-5:]) / 5 > sum(rewards[:5]) / 5 + 0.2, rewards
