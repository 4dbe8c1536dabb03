"""Runs trained by a process group (``torchrun``, gloo on the CPU): the same losses as one process with the
same global batch, the same dashboard, a stop that leaves no process behind, resume on another number of
processes, two "nodes" on loopback, one-line errors for bad options before anything starts."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.errors import SwiftError
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.runtime.distributed import port_is_free
from kernel_magics.train.runtime.folders import pid_alive

SFT = str(tiny_dataset("sft"))
# no dropout: a different batch layout must not change the random draws; the bar is 2e-4
# fp32: the 2e-4 bar is for fp32 sums in a different order (auto is bf16 on CPUs with native bf16)
COMMON = dict(method="lora", lora_r=4, lora_alpha=8, lora_dropout=0.0, lr=1e-3, seed=0, max_length=128,
              logging_steps=1, verbose=False, dtype="fp32")  # fmt: skip
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_process_losses(tiny_model, tmp_path_factory):
    from kernel_magics.config import settings

    old = settings.workspace
    settings.workspace = str(tmp_path_factory.mktemp("one-process"))
    try:
        run = km.sft(str(tiny_model), SFT, batch_size=4, max_steps=8, save_steps=100, **COMMON)
        assert run.wait(300) == "finished", run.error
        return run.metrics["loss"].tolist()
    finally:
        settings.workspace = old


def _wait_for_step(run, step: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while run.progress.get("step", 0) < step:
        assert not run.done, (run.status, run.error)
        assert time.monotonic() < deadline, "the group did not reach the step in time"
        time.sleep(0.2)


@pytest.mark.slow
def test_two_processes_give_the_one_process_losses_and_the_same_dashboard(tiny_model, workspace, one_process_losses):
    from kernel_magics.widgets.dashboard import Dashboard

    run = km.sft(str(tiny_model), SFT, batch_size=2, num_processes=2, max_steps=8, save_steps=100, **COMMON)
    dash = Dashboard(run, interval=0.2)
    assert run.wait(600) == "finished", run.error
    time.sleep(0.5)
    losses = run.metrics["loss"].tolist()
    assert len(losses) == 8
    assert max(abs(a - b) for a, b in zip(losses, one_process_losses, strict=True)) < 2e-4, (losses, one_process_losses)
    assert dash.series("loss")[1] == losses and dash.progress.value == 8
    config = json.loads((run.output_dir / "config.json").read_text())
    assert config["world_size"] == 2 and config["strategy"] == "ddp"
    assert (run.adapter_dir / "adapter_model.safetensors").is_file()
    assert any("2 process(es) on this node" in note for note in run.notes)


def _stop_at_least(run, step: int) -> int:
    """Stop ``run`` once it has logged ``step``; the step of the checkpoint it wrote."""
    _wait_for_step(run, step)
    run.stop()
    assert run.wait(300) == "stopped", run.error
    return int(run.checkpoints[-1].name.split("-")[1])


@pytest.mark.slow
def test_stop_leaves_no_rank_and_checkpoints_move_between_one_and_two_processes(tiny_model, workspace):
    run = km.sft(str(tiny_model), SFT, batch_size=2, num_processes=2, max_steps=400, save_steps=1000, **COMMON)
    _wait_for_step(run, 3)
    ranks = _group_of(run)
    assert len(ranks) >= 2
    first = _stop_at_least(run, 3)
    assert not any(pid_alive(pid) for pid in ranks | {run.worker_pid}), "a rank outlived the stop"
    port = int(re.search(r"rendezvous 127\.0\.0\.1:(\d+)", " ".join(run.notes)).group(1))
    assert port_is_free(port)
    assert first >= 3 and run.metrics["step"].max() == first

    run.resume(num_processes=1)  # written by 2 processes, continued by 1 (in one worker process)
    second = _stop_at_least(run, first + 2)
    assert second > first
    run.config.arguments["max_steps"] = run.config.max_steps = second + 2
    resumed = run.resume(num_processes=2)  # written by 1 process, continued by 2
    assert resumed.wait(300) == "finished", resumed.error
    assert resumed.metrics["step"].tolist() == list(range(1, second + 3))
    assert json.loads((run.output_dir / "config.json").read_text())["arguments"]["num_processes"] == 2


@pytest.mark.slow
def test_a_rank_that_dies_fails_the_run_with_its_line_and_ends_the_others(tiny_model, workspace):
    run = km.sft(str(tiny_model), SFT, batch_size=2, num_processes=2, max_steps=400, save_steps=1000, **COMMON)
    _wait_for_step(run, 2)
    ranks = _group_of(run)
    victim = next(pid for pid in ranks if _environ(pid).get("RANK") == "1")
    os.kill(victim, signal.SIGKILL)
    assert run.wait(300) == "failed"
    assert run.error.startswith("rank 1") and "SIGKILL" in run.error, run.error
    assert len(run.error) <= 300
    assert not any(pid_alive(pid) for pid in ranks | {run.worker_pid})


@pytest.mark.slow
def test_two_nodes_on_loopback_train_like_one_process(tiny_model, workspace, tmp_path, one_process_losses):
    from kernel_magics.train.runtime.distributed import free_port

    port = free_port()
    run = km.sft(str(tiny_model), SFT, batch_size=2, num_processes=1, nnodes=2, node_rank=0,
                 master_addr="127.0.0.1", master_port=port, max_steps=8, save_steps=100, **COMMON)  # fmt: skip
    note = next(n for n in run.notes if n.startswith("node 1 of 2: run there: "))
    command = shlex.split(note.split("run there: ", 1)[1])
    assert command[:3] == ["python", "-m", "kernel_magics"] and "--node-rank" in command
    other_workspace = tmp_path / "node1"
    env = {**os.environ, "KERNEL_MAGICS_WORKSPACE": str(other_workspace), "PYTHONPATH": str(ROOT)}
    node1 = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=600)
    assert node1.returncode == 0, node1.stderr[-2000:]
    assert run.wait(300) == "finished", run.error
    losses = run.metrics["loss"].tolist()
    assert max(abs(a - b) for a, b in zip(losses, one_process_losses, strict=True)) < 2e-4, (losses, one_process_losses)


def _group_of(run) -> set[int]:
    """The processes below the run's own process: torchrun and its ranks."""
    from kernel_magics.train.runtime.group import descendants

    return descendants(run.worker_pid)


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_processes=0), "num_processes must be an integer >= 1"),
        (dict(nnodes=2), "nnodes > 1 needs --master-addr"),
        (dict(nnodes=2, node_rank=2, master_addr="10.0.0.1"), "node_rank 2 must be below nnodes 2"),
        (dict(strategy="zero4"), "strategy 'zero4' is not one of"),
        (dict(num_processes=2, master_port=70000), "master_port must be in 1..65535"),
        (dict(num_processes=2, strategy="fsdp"), "FSDP needs CUDA devices"),
        (dict(num_processes=2, strategy="zero3"), "strategy zero3 needs DeepSpeed: pip install"),
    ],
)
def test_bad_options_fail_in_one_line_before_anything_starts(tiny_model, workspace, options, message):
    with pytest.raises(SwiftError) as err:
        km.sft(str(tiny_model), SFT, max_steps=2, **{**COMMON, **options})
    assert message in str(err.value) and len(str(err.value)) <= 300 and "\n" not in str(err.value)
    assert not list((workspace / "runs").glob("*/config.json")) if (workspace / "runs").exists() else True


def test_a_busy_master_port_is_refused(tiny_model, workspace):
    import socket

    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(SwiftError, match=f"master_port {port} is busy"):
            km.sft(str(tiny_model), SFT, num_processes=2, master_port=port, max_steps=2, **COMMON)


def test_deepspeed_config_is_checked_before_launch(tiny_model, workspace, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"zero_optimization": {"stage": 3},')
    with pytest.raises(SwiftError, match="is not valid JSON"):
        km.sft(str(tiny_model), SFT, deepspeed=str(broken), max_steps=2, **COMMON)
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"zero_optimisation": {"stage": 3}}))
    with pytest.raises(SwiftError, match="unknown key 'zero_optimisation' \\(did you mean 'zero_optimization'"):
        km.sft(str(tiny_model), SFT, deepspeed=str(typo), max_steps=2, **COMMON)
    with pytest.raises(SwiftError, match="cannot read the DeepSpeed config"):
        km.sft(str(tiny_model), SFT, deepspeed=str(tmp_path / "missing.json"), max_steps=2, **COMMON)


def test_more_processes_than_gpus_is_refused(monkeypatch):
    import torch

    from kernel_magics.train.runtime.distributed import DistributedArguments, check_group_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SwiftError, match="num_processes 4 is more than the 1 CUDA device"):
        check_group_device(DistributedArguments(num_processes=4), "cuda")


def test_strategies_map_to_trainer_options():
    from kernel_magics.train.runtime.distributed import trainer_options

    assert trainer_options({"num_processes": 1}, "cpu") == {}
    assert trainer_options({"num_processes": 2}, "cpu") == {"ddp_backend": "gloo", "ddp_find_unused_parameters": False}
    zero3 = trainer_options({"num_processes": 8, "strategy": "zero3-offload"}, "cuda")["deepspeed"]
    assert zero3["zero_optimization"]["stage"] == 3 and zero3["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert (
        trainer_options({"num_processes": 8, "strategy": "zero2"}, "cuda")["deepspeed"]["zero_optimization"]["stage"]
        == 2
    )
    fsdp = trainer_options({"num_processes": 8, "strategy": "fsdp"}, "cuda")
    assert fsdp["fsdp"] == "full_shard auto_wrap" and fsdp["fsdp_config"]["use_orig_params"]
    assert trainer_options({"num_processes": 2, "deepspeed": "/x/ds.json"}, "cuda")["deepspeed"] == "/x/ds.json"


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["ddp", "fsdp", "zero2", "zero3"])
def test_strategies_train_on_gpus(tiny_model, workspace, strategy):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA devices")
    if strategy.startswith("zero"):
        pytest.importorskip("deepspeed")
    run = km.sft(str(tiny_model), SFT, batch_size=2, num_processes=2, strategy=strategy, max_steps=6,
                 save_steps=100, **COMMON)  # fmt: skip
    assert run.wait(600) == "finished", run.error
    losses = run.metrics["loss"].tolist()
    assert losses[-1] < losses[0]


def test_estimate_per_device_divides_what_the_strategy_shards():
    one = km.estimate("tiny", method="full", device="cpu")
    eight = {s: km.estimate("tiny", method="full", device="cpu", num_processes=8, strategy=s) for s in
             ("ddp", "zero2", "zero3", "zero3-offload", "fsdp")}  # fmt: skip
    rows = one.breakdown["full"]
    assert eight["ddp"].breakdown["full"].equals(rows)
    zero2 = eight["zero2"].breakdown["full"]
    assert zero2["optimizer states"] == pytest.approx(rows["optimizer states"] / 8)
    assert zero2["gradients"] == pytest.approx(rows["gradients"] / 8) and zero2["weights"] == rows["weights"]
    zero3 = eight["zero3"].breakdown["full"]
    assert zero3["weights"] == pytest.approx(rows["weights"] / 8) and zero3["activations"] == rows["activations"]
    assert eight["fsdp"].breakdown["full"].equals(zero3)
    offload = eight["zero3-offload"].breakdown["full"]
    assert offload["weights"] == 0 and offload["optimizer states"] == 0
    assert eight["zero3"].total_gb < eight["zero2"].total_gb < one.total_gb
    assert eight["zero3"].settings["num_processes"] == 8
    with pytest.raises(SwiftError, match="strategy 'zero5'"):
        km.estimate("tiny", num_processes=8, strategy="zero5")


def test_a_group_run_asks_a_child_process_about_the_device(tiny_model, workspace, monkeypatch):
    """With a CUDA build of torch the kernel must not create a CUDA context for a run its ranks train, so every
    device question of the launch is answered by a child process. Forced here on the CPU build by pretending
    it is a CUDA build and counting the device descriptions made in this process."""
    import torch

    import kernel_magics.device as device_module
    from kernel_magics.train.runtime.distributed import probe_device

    asked_here = []
    real = device_module._cpu
    monkeypatch.setattr(device_module, "_cpu", lambda *a: asked_here.append(a) or real(*a))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with pytest.raises(SwiftError, match="FSDP needs CUDA devices"):  # raised after the plan's device questions
        km.sft(str(tiny_model), SFT, num_processes=2, strategy="fsdp", max_steps=2, **COMMON)
    assert asked_here == []
    assert device_module._probed.get() is None  # nothing leaks out of the call
    info = probe_device("cpu")
    assert (info.type, info.name) == ("cpu", device_module.cpu_name()) and asked_here == []


@pytest.mark.slow
def test_a_torchrun_script_from_export_script_trains_the_run_on_two_processes(tiny_model, workspace, tmp_path):
    from kernel_magics.train.api import export_script

    run = km.sft(str(tiny_model), SFT, batch_size=2, max_steps=3, save_steps=100, **COMMON)
    assert run.wait(300) == "finished", run.error
    script = export_script(run.output_dir, str(tmp_path / "cluster"), launcher="torchrun")
    env = {**os.environ, "NPROC": "2", "KM_PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = script.parent / f"{script.stem}-run"
    assert (trained / "adapter" / "adapter_model.safetensors").is_file()
    rows = [json.loads(line) for line in (trained / "logging.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("loss") is not None] == [1, 2, 3]
    for launcher in ("accelerate", "slurm"):
        other = export_script(run.output_dir, str(tmp_path / launcher), launcher=launcher)
        assert subprocess.run(["bash", "-n", str(other)]).returncode == 0
        text = other.read_text()
        assert "kernel_magics.train.runtime.worker" in text
    assert "#SBATCH --nodes=1" in text and "srun bash -c" in text and "SLURM_NODEID" in text
