"""A run stopped at any step and resumed logs, bit for bit on the CPU, the losses of the uninterrupted run.

LoRA defaults (dropout on), 20 steps, a checkpoint every 10 and several epochs of the tiny data set: the
stop lands right after a checkpoint, mid-way between two, and just before one. Every random source that
feeds a step (torch, Python, NumPy, the data sampler and dropout) must come back as it was.
"""

from __future__ import annotations

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset

OPTIONS = dict(
    batch_size=4,
    logging_steps=1,
    lora_r=8,
    lora_alpha=16,
    warmup_ratio=0.0,
    verbose=False,
    max_steps=20,
    save_steps=10,
    lr=2e-3,
    seed=11,
)


def _start(model):
    return km.sft(str(model), str(tiny_dataset("sft")), **OPTIONS)


def _losses(run) -> dict[int, float]:
    return run.metrics.set_index("step")["loss"].dropna().to_dict()


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory):
    from kernel_magics.config import settings

    settings.workspace = str(tmp_path_factory.mktemp("ws-reference"))
    run = _start(tiny_model)
    assert run.wait(300) == "finished", run.error
    return _losses(run)


@pytest.mark.parametrize("stop_after", [10, 13, 15])
def test_stop_and_resume_gives_the_uninterrupted_losses(tiny_model, workspace, uninterrupted, stop_after):
    run = _start(tiny_model)

    def listener(event, payload):
        if event == "metrics" and payload.get("step") == stop_after:
            run.stop()

    run.subscribe(listener)
    assert run.wait(300) == "stopped", run.error
    run.resume()
    assert run.wait(300) == "finished", run.error
    got = _losses(run)
    assert sorted(got) == list(range(1, 21))
    differences = {step: abs(got[step] - uninterrupted[step]) for step in got}
    print(f"stop after {stop_after}: largest |loss difference| {max(differences.values()):.3e}")
    assert got == uninterrupted, {s: d for s, d in differences.items() if d}
