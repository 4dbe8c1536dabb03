"""The dashboard of a preference run plots rewards, reward accuracy and the loss's own signal live;
``%%swift dpo`` returns it."""

from __future__ import annotations

import pytest
import torch

from kernel_magics.testing import tiny_dataset

PAIRS = str(tiny_dataset("dpo"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_swift_dpo_cell_returns_a_dashboard_with_reward_panels(tiny_model, workspace):
    from IPython.core.interactiveshell import InteractiveShell

    from kernel_magics.widgets.dashboard import Dashboard

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    dash = shell.run_cell_magic(
        "swift",
        f"dpo --model {tiny_model} --dataset {PAIRS} --method lora --lora-r 4",
        "beta: 0.2\nlr: 1e-3\nmax_steps: 6\nlogging_steps: 1\n",
    )
    assert isinstance(dash, Dashboard)
    run = dash.run
    assert run.wait(120) == "finished", run.error
    dash._flush()
    frame = run.metrics
    assert frame["step"].tolist() == list(range(1, 7))
    axes = {"rewards/chosen": "y7", "rewards/rejected": "y7", "rewards/margins": "y7", "rewards/accuracies": "y8"}
    axes.update({"logps/chosen": "y9", "logps/rejected": "y9"})  # the third row of the 3 x 3 grid
    for key, axis in axes.items():
        steps, values = dash.series(key)
        assert steps == list(range(1, 7)) and values == frame[key].tolist(), key
        trace = dash.figure.data[dash._trace_index[key]]
        assert list(trace.x) == steps and list(trace.y) == values and trace.yaxis == axis, key
    titles = [a.text for a in dash.figure.layout.annotations]
    assert any(t.startswith("rewards: ") for t in titles) and "reward accuracy" in titles
    assert "dpo β=0.2" in dash.title.value


def test_orpo_and_kto_panels_and_sft_is_unchanged(workspace):
    from kernel_magics.train.runtime.run import Run
    from kernel_magics.train.runtime.run_config import RunConfig
    from kernel_magics.widgets.dashboard import Dashboard

    for kind, own in (("orpo", "log_odds_ratio"), ("kto", "kl")):
        folder = workspace / "runs" / kind
        folder.mkdir(parents=True)
        run = Run(folder, RunConfig(run_id=kind, kind=kind, loss=kind, beta=0.1, max_steps=5))
        for step in range(1, 6):
            run.add_row({"step": step, "loss": 1.0 / step, "rewards/margins": 0.1 * step, own: -0.5 + 0.05 * step})
        dash = Dashboard(run, interval=0.0)
        assert dash.series(own) == ([1, 2, 3, 4, 5], [-0.5 + 0.05 * s for s in range(1, 6)])
        assert dash.series("rewards/margins")[0] == [1, 2, 3, 4, 5]
        assert dash.figure.layout.height == 660
        assert "logps/chosen" not in dash._trace_index

    folder = workspace / "runs" / "sft"
    folder.mkdir(parents=True)
    sft = Dashboard(Run(folder, RunConfig(run_id="sft", kind="sft", max_steps=2)))
    assert not any(k.startswith("rewards/") for k in sft._trace_index)
    assert sft.figure.layout.height == 460


def test_terminal_view_prints_margin_and_accuracy(tiny_model, workspace, capsys):
    import kernel_magics as km
    from kernel_magics.train.api import watch

    run = km.dpo(str(tiny_model), PAIRS, method="lora", lora_r=4, lr=1e-3, max_steps=4, logging_steps=1, verbose=False)
    watch(run)
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert steps and all(" margin " in line and " acc " in line for line in steps), lines
    assert lines[-1].startswith(f"finished: {run.name}")
