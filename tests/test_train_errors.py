"""Bad input to km.sft: one clear line (a SwiftError subclass), nothing half-done, the process alive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.device import DeviceInfo
from kernel_magics.errors import SwiftConfigError, SwiftDataError, SwiftDeviceError, SwiftModelError, SwiftUsageError
from kernel_magics.testing import tiny_dataset

SFT = str(tiny_dataset("sft"))
QUIET = dict(verbose=False, logging_steps=1, lora_r=4, lora_alpha=8, batch_size=4)


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert text and "\n" not in text and "Traceback" not in text
    return text


def test_data_errors_fail_before_the_model_loads(tiny_model, workspace, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": "ok"}\n{"text": oops\n')
    (tmp_path / "cols.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    cases = [
        (str(tmp_path / "missing.jsonl"), "missing.jsonl does not exist"),
        (str(tmp_path / "empty.jsonl"), "is empty"),
        (str(tmp_path / "bad.jsonl"), "bad.jsonl line 3: malformed JSON"),
        (str(tmp_path / "cols.jsonl"), "cannot tell its format from the columns (answer, question)"),
    ]
    for dataset, expected in cases:
        with pytest.raises(SwiftDataError) as info:
            km.sft(str(tiny_model), dataset, max_steps=2, **QUIET)
        assert expected in one_line(info)
    assert not list((workspace / "runs").glob("*")) if (workspace / "runs").exists() else True  # no run folder


def test_argument_and_model_errors(tiny_model, workspace, tmp_path, monkeypatch):
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), SFT, lr=0, **QUIET)
    assert "lr must be > 0" in one_line(info)
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), SFT, lr=-1e-4, **QUIET)
    assert "--lr" in one_line(info)
    with pytest.raises(SwiftConfigError, match="method must be one of"):
        km.sft(str(tiny_model), SFT, method="dora", **QUIET)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SwiftModelError) as info:
        km.sft("no-such-org/no-such-model", SFT, **QUIET)
    assert "no-such-org/no-such-model" in one_line(info) and "HF_HUB_OFFLINE=1" in str(info.value)

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), SFT, output_dir=str(blocker / "run"), **QUIET)
    assert "is not writable" in one_line(info) and "--output-dir" in str(info.value)


def test_qlora_where_4bit_is_impossible_says_what_auto_picks(tiny_model, workspace, monkeypatch):
    from kernel_magics.train.planning import plan as plan_module

    mps = DeviceInfo("mps", None, "Apple MPS", 32.0, 20.0, True, "test")
    with pytest.raises(SwiftDeviceError) as info:
        plan_module.make_plan("qlora", mps, batch_size=4, grad_accum=1, gradient_checkpointing=None)
    assert "does not run on Apple MPS" in one_line(info) and "method='lora'" in str(info.value)
    auto = plan_module.make_plan("auto", mps, batch_size=4, grad_accum=2, gradient_checkpointing=None)
    assert (auto.method, auto.batch_size, auto.grad_accum) == ("lora", 1, 8)

    monkeypatch.setattr(plan_module, "bitsandbytes_available", lambda: False)
    with pytest.raises(SwiftDeviceError) as info:
        km.sft(str(tiny_model), SFT, method="qlora", **QUIET)
    assert "bitsandbytes is not installed" in one_line(info) and "method='lora'" in str(info.value)


def test_auto_plan_by_device_and_estimate(monkeypatch):
    from kernel_magics.train.planning.plan import make_plan

    monkeypatch.setattr("kernel_magics.device.cpu_flags", lambda: frozenset({"avx2"}))  # a CPU without native bf16

    big = DeviceInfo("cuda", 0, "H100", 80.0, 78.0, True, "test")
    small = DeviceInfo("cuda", 0, "T4", 16.0, 15.0, False, "test")
    cpu = DeviceInfo("cpu", None, "cpu", 24.0, 20.0, False, "test")
    plan = make_plan("auto", big, batch_size=4, grad_accum=1, gradient_checkpointing=None, estimates={"lora": 20.0})
    assert (plan.method, plan.dtype, plan.gradient_checkpointing) == ("lora", "bf16", True)
    plan = make_plan("auto", big, batch_size=4, grad_accum=1, gradient_checkpointing=None, estimates={"lora": 75.0})
    assert plan.method == "qlora" and plan.optim == "paged_adamw_8bit"
    plan = make_plan("auto", small, batch_size=4, grad_accum=1, gradient_checkpointing=None, estimates={"lora": 6.0})
    assert (plan.method, plan.dtype) == ("qlora", "fp16") and "15.0 GiB free" in plan.describe()
    plan = make_plan("auto", cpu, batch_size=4, grad_accum=1, gradient_checkpointing=None)
    assert (plan.method, plan.dtype, plan.gradient_checkpointing) == ("lora", "fp32", False)
    assert "CPU" in plan.describe()


def test_dtype_is_checked_against_the_device(tiny_model, workspace, monkeypatch):
    from kernel_magics.train.planning import plan as plan_module

    cpu = DeviceInfo("cpu", None, "cpu", 24.0, 20.0, False, "test")
    t4 = DeviceInfo("cuda", 0, "T4", 16.0, 15.0, False, "test")
    with pytest.raises(SwiftConfigError) as info:
        plan_module.make_plan("lora", cpu, batch_size=4, grad_accum=1, gradient_checkpointing=None, dtype="fp16")
    assert "fp16 cannot train on the CPU" in one_line(info) and "bf16 or fp32" in str(info.value)
    with pytest.raises(SwiftConfigError) as info:
        plan_module.make_plan("lora", t4, batch_size=4, grad_accum=1, gradient_checkpointing=None, dtype="bf16")
    assert "T4 has no bf16" in one_line(info) and "fp16" in str(info.value)
    with pytest.raises(SwiftConfigError) as info:
        km.sft(str(tiny_model), SFT, dtype="bf61", **QUIET)
    assert "dtype must be one of auto, bf16, fp16, fp32" in one_line(info) and "bf16" in str(info.value)

    for flags, note in (({"avx2"}, True), ({"avx2", "avx512_bf16"}, False)):
        monkeypatch.setattr("kernel_magics.device.cpu_flags", lambda flags=flags: frozenset(flags))
        plan = plan_module.make_plan("lora", cpu, batch_size=4, grad_accum=1, gradient_checkpointing=None, dtype="bf16")
        assert plan.dtype == "bf16"
        assert ("bf16 is emulated here" in plan.describe()) is note
    monkeypatch.setattr("kernel_magics.device.cpu_flags", lambda: frozenset({"avx2"}))
    auto = plan_module.make_plan("auto", cpu, batch_size=4, grad_accum=1, gradient_checkpointing=None)
    assert auto.dtype == "fp32"  # bf16 on the CPU only when asked for or computed natively
    # the reason auto gives for its method names the dtype the plan trains in
    monkeypatch.setattr("kernel_magics.device.cpu_flags", lambda: frozenset({"avx512_bf16"}))
    asked = plan_module.make_plan("auto", cpu, batch_size=4, grad_accum=1, gradient_checkpointing=None, dtype="bf16")
    assert "LoRA in bf16" in asked.describe() and "fp32" not in asked.describe()
    v100 = DeviceInfo("cuda", 0, "V100", 32.0, 30.0, False, "test")
    plan = plan_module.make_plan(
        "auto", v100, batch_size=4, grad_accum=1, gradient_checkpointing=None, estimates={"lora": 6.0}
    )
    assert (plan.method, plan.dtype) == ("lora", "fp16") and "-> LoRA fp16" in plan.describe()


def test_second_run_into_an_active_output_dir_is_refused(tiny_model, workspace, tmp_path):
    folder = tmp_path / "shared-run"
    first = km.sft(str(tiny_model), SFT, max_steps=500, save_steps=1000, output_dir=str(folder), **QUIET)
    try:
        with pytest.raises(SwiftUsageError) as info:
            km.sft(str(tiny_model), SFT, max_steps=2, output_dir=str(folder), **QUIET)
        assert "a run is already active in" in one_line(info)
        deadline = time.monotonic() + 120
        while not first.rows and not first.done and time.monotonic() < deadline:
            time.sleep(0.1)  # training has started: a stop now writes a checkpoint (a queued run just ends)
    finally:
        first.stop()
        assert first.wait(120) == "stopped", first.error
    assert first.checkpoints  # stopping wrote a checkpoint
    again = km.sft(str(tiny_model), SFT, max_steps=2, output_dir=str(folder), **QUIET)  # free again
    assert again.wait(120) == "finished", again.error


def test_out_of_memory_during_a_step_fails_with_a_plan_that_fits(tiny_model, workspace, monkeypatch):
    import torch

    from kernel_magics.train.methods import sft as sft_module

    real_load = sft_module.load_for_training

    def load_then_fail_on_third_forward(*args, **kwargs):
        model = real_load(*args, **kwargs)
        calls = {"n": 0}
        forward = model.forward

        def forward_with_oom(*a, **k):
            calls["n"] += 1
            if calls["n"] == 3:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return forward(*a, **k)

        model.forward = forward_with_oom
        return model

    monkeypatch.setattr(sft_module, "load_for_training", load_then_fail_on_third_forward)
    run = km.sft(str(tiny_model), SFT, method="lora", max_steps=10, where="kernel", **QUIET)  # patched here
    assert run.wait(120) == "failed"
    assert run.error.startswith("out of device memory at step 2")
    assert "try: --method qlora --batch-size 2 --grad-accum 2" in run.error and "\n" not in run.error
    assert (run.output_dir / "error.txt").read_text().startswith(run.error)
    assert not (run.output_dir / ".run.lock").exists()
    assert km.runs().iloc[0]["status"] == "failed"


def test_stop_while_a_checkpoint_is_written_keeps_it_complete(tiny_model, workspace, monkeypatch):
    from transformers import Trainer

    holder: dict = {}
    real = Trainer._save_optimizer_and_scheduler

    def save_and_stop_midway(self, output_dir):
        holder["run"].stop()  # the model files are written; optimizer and state are still to come
        holder.setdefault("during", output_dir)
        return real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", save_and_stop_midway)
    run = km.sft(str(tiny_model), SFT, max_steps=50, save_steps=3, where="kernel", **QUIET)  # patched here
    holder["run"] = run
    assert run.wait(120) == "stopped", run.error
    assert Path(holder["during"]).name == "checkpoint-3"
    names = [p.name for p in run.checkpoints]
    assert names == ["checkpoint-3", "checkpoint-4"]  # the interrupted write finished, then one more step
    for checkpoint in run.checkpoints:
        files = {p.name for p in checkpoint.iterdir()}
        assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= files
        assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == int(checkpoint.name[11:])
    monkeypatch.undo()
    run.config.max_steps = 6
    run.config.arguments["max_steps"] = 6
    run.resume()
    assert run.wait(120) == "finished", run.error
    assert run.metrics["step"].tolist() == [1, 2, 3, 4, 5, 6]


def test_cli_trains_prints_progress_and_reports_errors_in_one_line(tiny_model, tmp_path):
    env = dict(os.environ, KERNEL_MAGICS_WORKSPACE=str(tmp_path / "ws"), HF_HUB_OFFLINE="1")
    base = [sys.executable, "-m", "kernel_magics", "sft", "--model", str(tiny_model), "--dataset", SFT]
    done = subprocess.run(
        [*base, "--max-steps", "3", "--logging-steps", "1", "--lora-r", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    from kernel_magics.device import cpu_native_bf16

    assert f"plan: lora in {'bf16' if cpu_native_bf16() else 'fp32'} on cpu" in out  # dtype auto, by this CPU's flags
    assert "step 3/3 loss" in out and "finished: sft-" in out
    bad = subprocess.run([*base, "--lr", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1].startswith("error: lr must be > 0")
    assert "Traceback" not in bad.stderr


def test_rows_over_max_length_fail_the_run_with_the_row_named(tiny_model, workspace):
    run = km.sft(str(tiny_model), SFT, max_steps=2, max_length=48, **QUIET)
    assert run.wait(120) == "failed"
    assert "sft.jsonl line " in run.error and "tokens after the chat template, over max_length 48" in run.error
    assert "--on-bad-rows skip" in run.error
    skipping = km.sft(str(tiny_model), SFT, max_steps=2, max_length=48, on_bad_rows="skip", **QUIET)
    assert skipping.wait(120) == "finished", skipping.error
    assert any("rows over max_length skipped" in note for note in skipping.notes)
