"""Runs train in processes of their own: they outlive the kernel that started them, give the kernel its
memory back, end in one line when killed, report a frozen process, and queue for a device's lease."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import kernel_magics as km
from kernel_magics.testing import tiny_dataset
from kernel_magics.train.runtime.records import read_status

OPTIONS = dict(seed=11, lr=2e-3, warmup_ratio=0.0, logging_steps=1, lora_r=4, verbose=False)
ROOT = Path(__file__).resolve().parents[1]


def _rows(folder: Path) -> list[dict]:
    path = folder / "logging.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _losses(run) -> dict[int, float]:
    frame = run.metrics.dropna(subset=["loss"])
    return {int(s): float(v) for s, v in zip(frame["step"], frame["loss"], strict=True)}


def _until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _kernel_script(body: str) -> str:
    """A Python process standing in for a notebook kernel: same settings as this test, then ``body``."""
    return textwrap.dedent(
        """
        import json, sys, time
        import kernel_magics as km
        from kernel_magics.config import settings
        settings.update(**json.loads(sys.argv[1]))
        """
    ) + textwrap.dedent(body)


def _start_kernel(body: str, **settings_values) -> subprocess.Popen:
    from kernel_magics.config import settings

    values = {"workspace": settings.workspace, "cache_dir": settings.cache_dir, **settings_values}
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    return subprocess.Popen(
        [sys.executable, "-c", _kernel_script(body), json.dumps(values)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def test_a_run_survives_its_kernel_killed_and_a_new_kernel_attaches(tiny_model, workspace):
    steps = 24
    kernel = _start_kernel(
        f"""
        run = km.sft({str(tiny_model)!r}, {str(tiny_dataset())!r}, max_steps={steps}, **{OPTIONS!r})
        print(run.output_dir, flush=True)
        time.sleep(600)
        """
    )
    try:
        folder = Path(kernel.stdout.readline().strip())
        _until(lambda: len(_rows(folder)) >= 2, 240, "two logged steps")
        kernel.send_signal(signal.SIGKILL)  # the kernel dies mid-run (a restart's worst case)
        kernel.wait(30)
    finally:
        if kernel.poll() is None:
            kernel.kill()
    assert len(_rows(folder)) < steps, "the run ended before its kernel was killed; the test proves nothing"

    run = km.attach(folder.name)
    assert run.status in ("running", "finished"), run.error
    assert km.attach(str(folder)) is run  # the same live object for every attach in this kernel
    assert run.wait(300) == "finished", run.error
    assert sorted(_losses(run)) == list(range(1, steps + 1))  # the history from before the attach too
    assert (run.adapter_dir / "adapter_config.json").is_file()

    reference = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=steps, **OPTIONS)
    assert reference.wait(300) == "finished", reference.error
    assert _losses(run) == _losses(reference)


def test_the_kernel_gets_its_memory_back_and_never_trains(tiny_model, workspace):
    """Ten runs from a stand-in kernel: its RSS after each is within 50 MiB of before, and no trainer, peft or
    CUDA state ever lives in it."""
    kernel = _start_kernel(
        f"""
        import gc, sys
        def rss():
            gc.collect()
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        def one():
            run = km.sft({str(tiny_model)!r}, {str(tiny_dataset())!r}, max_steps=1, **{OPTIONS!r})
            assert run.wait(300) == "finished", run.error
        one()  # the first run imports what the kernel needs to plan runs (tokenizer, data checks)
        sizes = []
        for _ in range(10):
            before = rss()
            one()
            sizes.append((before, rss()))
        heavy = sorted(m for m in ("trl", "peft", "transformers.trainer") if m in sys.modules)
        torch = sys.modules.get("torch")
        cuda = bool(torch is not None and torch.cuda.is_initialized())
        print(json.dumps({{"sizes": sizes, "heavy": heavy, "cuda": cuda}}), flush=True)
        """
    )
    out, _ = kernel.communicate(timeout=900)
    report = json.loads(out.strip().splitlines()[-1])
    growth = [(after - before) / 2**20 for before, after in report["sizes"]]
    print("kernel RSS change per run (MiB):", [round(g, 1) for g in growth])
    assert max(growth) < 50, growth
    assert report["heavy"] == [], f"training modules imported in the kernel: {report['heavy']}"
    assert report["cuda"] is False


def test_a_worker_killed_by_sigkill_is_one_line_and_its_checkpoint_resumes(tiny_model, workspace):
    run = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=30, save_steps=2, **OPTIONS)
    _until(lambda: bool(run.checkpoints) or run.done, 240, "a first checkpoint")
    assert not run.done, run.error
    os.kill(run.worker_pid, signal.SIGKILL)  # what the out-of-memory killer does
    assert run.wait(60) == "failed"
    assert "ended by signal 9 (SIGKILL)" in run.error and "probably out of memory (peak RSS" in run.error, run.error
    assert len(run.error) < 300 and "\n" not in run.error
    again = km.runs().set_index("run_id").loc[run.name]
    assert again["status"] == "failed"  # what the folder says agrees
    last = run.checkpoints[-1]
    run.resume()
    assert run.wait(300) == "finished", run.error
    assert int(last.name.split("-")[1]) >= 2 and max(_losses(run)) == 30


def test_a_frozen_worker_is_reported_and_ended(tiny_model, workspace, monkeypatch):
    from kernel_magics.config import settings

    monkeypatch.setattr(settings, "stall_seconds", 4)
    run = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=200, **OPTIONS)
    _until(lambda: len(run.rows) >= 1 or run.done, 240, "a first step")
    os.kill(run.worker_pid, signal.SIGSTOP)
    try:
        assert run.wait(60) == "failed"
    finally:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(run.worker_pid, sig)
            except ProcessLookupError:
                pass
    assert "no heartbeat from the training process" in run.error, run.error


def test_stop_from_a_second_watcher_reaches_the_run(tiny_model, workspace):
    """Two watchers of one run (this kernel and ``python -m kernel_magics attach`` in another process): both see
    it; Ctrl-C in the one that did not start it stops the run with a checkpoint, and both see it stopped."""
    from kernel_magics.train.runtime.run import Run

    run = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=100000, save_steps=100000, **OPTIONS)
    _until(lambda: len(run.rows) >= 1 or run.done, 240, "a first step")
    other = Run.load(run.output_dir).follow()  # what km.attach gives in another kernel
    assert other is not run and other.status == "running"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    cli = subprocess.Popen(
        [sys.executable, "-m", "kernel_magics", "attach", str(run.output_dir)], stdout=subprocess.PIPE, text=True,
        env=env,
    )  # fmt: skip
    try:
        assert cli.stdout.readline().startswith("step ")  # it follows the run live
        cli.send_signal(signal.SIGINT)
        out, _ = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert run.wait(120) == "stopped", run.error
    assert other.wait(30) == "stopped"
    assert f"stopped: {run.name}" in out
    assert run.checkpoints, "a stop writes a checkpoint"


def test_with_the_lease_on_a_second_run_waits_for_the_first(tiny_model, workspace, monkeypatch):
    from kernel_magics.config import settings

    monkeypatch.setattr(settings, "device_lease", "on")
    first = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=100000, save_steps=100000, **OPTIONS)
    _until(lambda: first.status == "running" or first.done, 240, "the first run to start")
    second = km.sft(str(tiny_model), str(tiny_dataset()), max_steps=2, **OPTIONS)
    _until(lambda: any("waiting for cpu" in n for n in second.notes) or second.done, 240, "the second run to queue")
    assert f"waiting for cpu (held by run {first.name})" in second.notes
    listed = km.runs().set_index("run_id")
    assert read_status(second.output_dir).get("state") == "queued"  # still waiting after the listing
    assert listed.loc[second.name, "status"] == "queued (1 in line for cpu)"
    time.sleep(1.0)
    assert not second.rows  # nothing trains while the lease is held
    first.stop()
    assert first.wait(300) == "stopped", first.error
    assert second.wait(300) == "finished", second.error
    assert min(r["time"] for r in second.rows) > max(r["time"] for r in first.rows)


@pytest.mark.gpu
def test_on_cuda_the_kernel_holds_no_device_memory_and_no_context(tiny_model, workspace):
    import shutil

    kernel = _start_kernel(
        f"""
        import subprocess, os
        def holders():
            out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30).stdout
            return [int(p) for p in out.split()]
        run = km.sft({str(tiny_model)!r}, {str(tiny_dataset())!r}, max_steps=20, device="cuda", **{OPTIONS!r})
        seen = []
        while not run.done:
            if run.rows:
                seen.append(holders())
            time.sleep(0.5)
        assert run.wait() == "finished", run.error
        torch = sys.modules.get("torch")
        print(json.dumps({{"pid": os.getpid(), "worker": run.worker_pid, "seen": seen, "after": holders(),
                          "cuda": bool(torch is not None and torch.cuda.is_initialized())}}), flush=True)
        """
    )
    if shutil.which("nvidia-smi") is None:
        kernel.kill()
        pytest.skip("nvidia-smi is not on this machine")
    out, _ = kernel.communicate(timeout=900)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["cuda"] is False
    assert all(report["pid"] not in pids for pids in [*report["seen"], report["after"]])
    assert any(report["worker"] in pids for pids in report["seen"]), "the worker trained on the GPU"
