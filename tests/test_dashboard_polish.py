"""Learner-facing details of the training dashboard: a chart whose metric the run never logs is left out with a
line saying why, and Stop is disabled once a run has ended."""

from __future__ import annotations


def _grpo_run(workspace, name: str, beta: float):
    from kernel_magics.train.run import Run

    folder = workspace / "runs" / name
    folder.mkdir(parents=True)
    config = {"run_id": name, "kind": "grpo", "loss": "grpo", "beta": beta, "rewards": ["length"], "max_steps": 3}
    run = Run(folder, config)
    for step in range(1, 4):
        row = {"step": step, "loss": 0.1, "reward": 0.5 * step, "rewards/length/mean": 0.5 * step}
        run._add_row({**row, "kl": 0.01 * step} if beta else row)
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
