"""The live dashboard receives every logged step (batched redraws), replays finished runs, and Stop works;
``%%swift sft`` in IPython returns it."""

from __future__ import annotations

import time

import kernel_magics as km
from kernel_magics.testing import tiny_dataset

SFT = str(tiny_dataset("sft"))
QUIET = dict(verbose=False, logging_steps=1, lora_r=4, lora_alpha=8, batch_size=4)


def test_dashboard_gets_every_logged_step_in_batched_redraws(tiny_model, workspace):
    from kernel_magics.widgets.dashboard import Dashboard

    run = km.sft(str(tiny_model), SFT, max_steps=24, eval_split=0.1, eval_steps=8, **QUIET)
    dash = Dashboard(run, interval=1.0)
    assert run.wait(120) == "finished", run.error
    time.sleep(0.2)
    frame = run.metrics
    steps, values = dash.series("loss")
    assert steps == frame["step"].tolist() == list(range(1, 25))
    assert values == frame["loss"].tolist()
    eval_steps, eval_values = dash.series("eval_loss")
    assert eval_steps == [8, 16, 24] and all(v > 0 for v in eval_values)
    for key in ("learning_rate", "grad_norm", "tokens_per_s", "memory_gb"):
        assert len(dash.series(key)[0]) >= 23, key
    figure_x = list(dash.figure.data[0].x)
    assert figure_x == list(range(1, 25))  # what the browser gets
    rows = len(run.rows)
    assert dash.progress.value == dash.progress.max == 24
    assert "finished" in dash.status.value and dash.stop_button.disabled
    print(f"dashboard: {rows} rows drawn in {dash.flushes} redraws")


def test_redraws_are_batched_when_rows_arrive_fast(workspace):
    from kernel_magics.train.runtime.run import Run
    from kernel_magics.train.runtime.run_config import RunConfig
    from kernel_magics.widgets.dashboard import Dashboard

    folder = workspace / "runs" / "burst"
    folder.mkdir(parents=True)
    run = Run(folder, RunConfig(run_id="burst", max_steps=300))
    dash = Dashboard(run, interval=0.5)
    start = dash.flushes
    for step in range(1, 301):  # 300 logged steps in a few milliseconds
        run.add_row({"step": step, "loss": 5.0 - step / 100, "learning_rate": 1e-4, "tokens_per_s": 1000.0})
    burst = dash.flushes - start
    time.sleep(0.8)  # the timer draws what is left
    assert burst <= 2, burst
    assert dash.series("loss")[0] == list(range(1, 301))
    assert list(dash.figure.data[0].x) == list(range(1, 301))
    assert len((folder / "logging.jsonl").read_text().splitlines()) == 300


def test_dashboard_replays_a_finished_run_and_stop_button_stops(tiny_model, workspace):
    from kernel_magics.train.runtime.run import Run
    from kernel_magics.widgets.dashboard import Dashboard

    run = km.sft(str(tiny_model), SFT, max_steps=400, save_steps=1000, **QUIET)
    dash = Dashboard(run, interval=0.2)
    deadline = time.time() + 60
    while len(run.rows) < 3 and time.time() < deadline:
        time.sleep(0.05)
    dash.stop_button.click()
    assert run.wait(120) == "stopped", run.error
    assert run.checkpoints and "stopped" in dash.status.value
    last_step = int(run.metrics["step"].max())
    assert run.checkpoints[-1].name == f"checkpoint-{last_step}"

    replay = Dashboard(Run.load(run.output_dir))
    assert replay.series("loss")[0] == run.metrics["step"].tolist()
    assert "stopped" in replay.status.value and replay.stop_button.disabled
    assert dash.stop_button.button_style == replay.stop_button.button_style == ""


def test_stop_stays_disabled_when_a_late_event_names_an_older_status(workspace):
    from kernel_magics.train.runtime.run import Run
    from kernel_magics.train.runtime.run_config import RunConfig
    from kernel_magics.widgets.dashboard import Dashboard

    folder = workspace / "runs" / "ended"
    folder.mkdir(parents=True)
    run = Run(folder, RunConfig(run_id="ended", max_steps=3))
    dash = Dashboard(run, interval=0.2)
    run._state = "running"
    dash._on_event("status", "running")
    assert not dash.stop_button.disabled and dash.stop_button.button_style == "danger"
    run._state = "finished"  # the run ended; its own status event was already drawn
    dash._on_event("status", "finished")
    assert dash.stop_button.disabled and dash.stop_button.button_style == ""  # grey: no longer looks live
    dash._on_event("checkpoint", str(folder / "checkpoint-3"))  # handled after the end, in another thread
    dash._update_status("running")  # a status event that was delivered late
    assert dash.stop_button.disabled and dash.stop_button.button_style == ""
    assert dash.stop_button.tooltip == "the run has finished"


def test_swift_cell_magic_returns_the_dashboard(tiny_model, workspace, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    from kernel_magics.widgets.dashboard import Dashboard

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "kernel_magics")
    dash = shell.run_cell_magic(
        "swift", f"sft --model {tiny_model} --dataset {SFT} --lora-r 4", "max_steps: 3\nlogging_steps: 1\nlr: 1e-3\n"
    )
    assert isinstance(dash, Dashboard)
    printed = capsys.readouterr().out
    assert dash.run.notes and not any(note in printed for note in dash.run.notes)  # the dashboard shows them once
    assert dash.run.wait(120) == "finished", dash.run.error
    assert dash.run.config.arguments["lr"] == 1e-3 and dash.run.config.arguments["lora_r"] == 4
    assert dash.run.metrics["step"].tolist() == [1, 2, 3]
