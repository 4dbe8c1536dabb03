"""Learner-facing details of the training dashboard: a chart whose metric the run never logs is left out with a
line saying why, and Stop is disabled once a run has ended."""

from __future__ import annotations

import pytest


def _grpo_run(workspace, name: str, beta: float):
    from kernel_magics.train.runtime.run import Run
    from kernel_magics.train.runtime.run_config import RunConfig

    folder = workspace / "runs" / name
    folder.mkdir(parents=True)
    config = RunConfig(run_id=name, kind="grpo", loss="grpo", beta=beta, rewards=["length"], max_steps=3)
    run = Run(folder, config)
    for step in range(1, 4):
        row = {"step": step, "loss": 0.1, "reward": 0.5 * step, "rewards/length/mean": 0.5 * step}
        run.add_row({**row, "kl": 0.01 * step} if beta else row)
    return run


def test_grpo_kl_chart_is_left_out_with_a_reason_when_beta_is_zero(workspace):
    from kernel_magics.widgets.dashboard import Dashboard

    dash = Dashboard(_grpo_run(workspace, "no-kl", 0.0), interval=0.0)
    titles = [a.text for a in dash.figure.layout.annotations]
    assert "KL" not in titles and "kl" not in dash._trace_index
    assert dash.omitted == ["KL not computed: beta = 0"]
    assert "KL not computed: beta = 0" in dash.omitted_line.value
    assert dash.series("reward") == ([1, 2, 3], [0.5, 1.0, 1.5])

    with_kl = Dashboard(_grpo_run(workspace, "kl", 0.04), interval=0.0)
    assert "KL" in [a.text for a in with_kl.figure.layout.annotations]
    assert with_kl.series("kl") == ([1, 2, 3], [0.01, 0.02, 0.03])
    assert with_kl.omitted == [] and with_kl.omitted_line.value == ""


def _bars_on() -> list[bool]:
    import datasets
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    return [hf_logging.is_progress_bar_enabled(), not are_progress_bars_disabled(), datasets.is_progress_bar_enabled()]


@pytest.fixture()
def bars_on():
    """Every library's bars on for the test (another test may have turned some off), as they were after it."""
    import datasets
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    switches = [
        (hf_logging.disable_progress_bar, hf_logging.enable_progress_bar),
        (disable_progress_bars, enable_progress_bars),
        (datasets.disable_progress_bars, datasets.enable_progress_bars),
    ]
    before = _bars_on()
    for _, turn_on in switches:
        turn_on()
    yield
    for was_on, (turn_off, turn_on) in zip(before, switches, strict=True):
        (turn_on if was_on else turn_off)()


def test_training_cell_prints_no_progress_bars_and_restores_them(bars_on, workspace, tmp_path, monkeypatch, capfd):
    import time

    from IPython.core.interactiveshell import InteractiveShell

    from kernel_magics.config import settings
    from kernel_magics.testing import tiny_dataset

    monkeypatch.setattr(settings, "cache_dir", str(tmp_path / "cache"))  # the cell builds the tiny model itself
    assert _bars_on() == [True, True, True]
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    dash = shell.run_cell_magic(
        "swift",
        f"sft --model tiny --dataset {tiny_dataset('sft')} --method full",
        "max_steps: 2\nlogging_steps: 1\nsave_steps: 1\n",  # a checkpoint per step: each writes model shards
    )
    assert dash.run.wait(120) == "finished", dash.run.error
    assert len(dash.run.checkpoints) == 2
    deadline = time.time() + 5
    while _bars_on() != [True, True, True] and time.time() < deadline:
        time.sleep(0.05)  # the run's last status event is handled just after wait() returns
    assert _bars_on() == [True, True, True]
    out, err = capfd.readouterr()
    assert "Writing model shards" not in out + err and "it/s]" not in out + err, err[-600:]
