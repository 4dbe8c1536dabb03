"""A run stopped at any step and resumed logs, bit for bit on the CPU, what the uninterrupted run logs.

LoRA defaults (dropout 0.05, a log every 5 steps), 20 steps, a checkpoint every 10: the stop lands
right after a checkpoint, mid-way between two logs, and mid-way between two checkpoints. Every random
source that feeds a step (torch, Python, NumPy, the data sampler, dropout) and the partial sums the
trainer averages between two logs must come back as they were.
"""

from __future__ import annotations

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset

# where="kernel": the stop is asked from a progress callback at an exact step, which only a run in this process
# sees without delay (a run in its own process is stopped from its mirrored events, a few steps later; its
# stop and resume are tests/test_worker_runs.py's and test_train_sft.py's)
OPTIONS = dict(max_steps=20, save_steps=10, lr=2e-3, seed=11, warmup_ratio=0.0, verbose=False, where="kernel")
LOGGED = ["loss", "grad_norm", "learning_rate"]  # token metrics are off by default (token_metrics)


def _start(model):
    return km.sft(str(model), str(tiny_dataset("sft")), **OPTIONS)


def _logged(run) -> dict[int, list[float]]:
    frame = run.metrics.set_index("step")
    return {int(step): [float(v) for v in row] for step, row in frame[LOGGED].dropna().iterrows()}


@pytest.fixture(scope="module")
def uninterrupted(tiny_model, tmp_path_factory):
    from kernel_magics.config import settings

    settings.workspace = str(tmp_path_factory.mktemp("ws-reference"))
    run = _start(tiny_model)
    assert run.wait(600) == "finished", run.error
    logged = _logged(run)
    assert sorted(logged) == [1, 5, 10, 15, 20]
    return logged


@pytest.mark.parametrize("stops_at", [11, 13, 17])  # right after checkpoint-10, mid-window, mid-way to 20
def test_stop_and_resume_logs_what_the_uninterrupted_run_logs(tiny_model, workspace, uninterrupted, stops_at):
    run = _start(tiny_model)

    def listener(event, payload):  # a stop asked during step k lands on step k + 1, with a checkpoint
        if event == "progress" and payload.get("step") == stops_at - 1:
            run.stop()

    run.subscribe(listener)
    assert run.wait(600) == "stopped", run.error
    assert run.checkpoints[-1].name == f"checkpoint-{stops_at}"
    run.resume()
    assert run.wait(600) == "finished", run.error
    got = _logged(run)
    differences = {s: max(abs(a - b) for a, b in zip(got[s], uninterrupted[s], strict=True)) for s in got}
    print(f"stopped at {stops_at}: largest difference of a logged value {max(differences.values()):.3e}")
    assert got == uninterrupted, differences
