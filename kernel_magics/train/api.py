"""Python API of training: ``km.sft(...) -> Run``, ``km.dpo(...) -> Run``, ``km.grpo(...) -> Run``, ``km.runs()`` and
``km.attach(run_id)``.

``sft`` checks everything that can be checked cheaply in the caller's thread (arguments, model folder,
data rows, output folder, the plan for this device) so mistakes fail at once with one line; then the
run trains in a process of its own (:mod:`.runner`) and the call returns the :class:`Run` immediately.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import SwiftUsageError
from ..signatures import from_arguments
from .methods.dpo import PreferenceArguments
from .methods.grpo import GRPOArgs
from .methods.registry import method
from .methods.vlm import VisionArguments
from .runtime.distributed import kernel_stays_off_cuda
from .runtime.run import Run
from .runtime.start import launch

# Each public training function's keywords are generated from its method's argument dataclass (the single
# source of each knob: name, default, type, help); the function's own body only hands the filled dataclass
# to the launcher with the method's registry entry.


@kernel_stays_off_cuda
@from_arguments(VisionArguments)
def sft(arguments: VisionArguments, *, verbose: bool = True) -> Run:
    """Start supervised fine-tuning (LoRA, QLoRA or full) in the background and return its :class:`Run`.

    ``model``: "tiny", a local folder or a hub id (default: ``settings.default_model``). ``dataset``: a
    jsonl/json/csv/parquet path, a ``save_to_disk`` folder, a hub dataset id, a ``datasets.Dataset``, a
    pandas DataFrame or a list of dicts in messages, ShareGPT, alpaca, prompt/completion or text format.
    ``method="auto"`` picks by device and memory estimate and prints why. Bad input raises one-line
    :class:`~kernel_magics.errors.SwiftError` s before anything heavy loads.

    A vision-language ``model`` (Qwen2-VL, LLaVA-style, ...) takes image + text rows (see
    :mod:`kernel_magics.train.methods.vlm`): ``template`` ("auto", "vqa", "caption", "grounding", "messages") turns
    simple rows into chats, ``max_pixels`` caps each image's resolution (and so its tokens), and the vision
    tower stays frozen unless ``train_vision``.

    Several processes (``num_processes``, ``nnodes``, ``node_rank``, ``master_addr``, ``master_port``,
    ``strategy`` "ddp" | "fsdp" | "zero2" | "zero3" | "zero3-offload", ``deepspeed`` JSON): the run is trained
    by a ``torchrun`` process group and watched from here exactly like a one-process run (docs/distributed.md);
    ``batch_size`` is per process.
    """
    return launch(method("sft"), arguments, verbose=verbose)


@kernel_stays_off_cuda
@from_arguments(PreferenceArguments)
def dpo(arguments: PreferenceArguments, *, verbose: bool = True) -> Run:
    """Start preference tuning (DPO, ORPO, KTO or SimPO) in the background and return its :class:`Run`.

    ``loss``: "dpo" (``trl.DPOTrainer``), "orpo" (no reference model, no prior SFT needed), "kto" (unpaired
    ``prompt``/``completion``/``label`` rows) or "simpo" (``CPOTrainer`` with ``loss_type="simpo"``).
    ``adapter``: an SFT run (or its ``adapter_dir``) whose LoRA adapter training continues; the reference
    is then that adapter's frozen starting point on the same base weights (no second model copy), and
    ``model`` defaults to the adapter's base. ``beta`` defaults per loss (``dpo.DEFAULT_BETA``). ``dataset``:
    prompt/chosen/rejected rows (strings or message lists), conversational chosen/rejected, ms-swift
    ``messages`` + ``rejected_response``, or for kto prompt/completion/label rows. The other knobs are
    those of :func:`sft`. Bad input raises one-line :class:`~kernel_magics.errors.SwiftError` s before
    anything heavy loads; ``Run.metrics`` gets rewards/chosen, rewards/rejected, rewards/margins,
    rewards/accuracies (and log_odds_ratio for orpo, kl for kto) next to the loss.
    """
    return launch(method("dpo"), arguments, verbose=verbose)


@kernel_stays_off_cuda
@from_arguments(GRPOArgs)
def grpo(arguments: GRPOArgs, *, verbose: bool = True) -> Run:
    """Start online RL with GRPO (TRL's ``GRPOTrainer``) in the background and return its :class:`Run`.

    ``dataset``: prompt-only rows (``prompt`` as text or messages, or ``messages`` without the final
    assistant turn) plus any columns the rewards read. ``reward``: a function ``fn(completions, **columns)
    -> list[float]`` (``prompts`` and every extra column arrive as keyword arguments), a list of them, a
    built-in ("format", "exact", "numeric", "length") or "module:function"; ``reward_weights`` weighs a
    list. ``loss``: "dapo" (TRL's default), "grpo", "dr_grpo", "bnpo" or "gspo" (sequence-level importance
    sampling). ``batch_size`` counts completions per device step (a multiple of ``num_generations`` with
    ``grad_accum``); ``max_length`` is the longest prompt. ``adapter``: an SFT run (or its adapter folder)
    to continue. ``use_vllm``: rollouts with vLLM colocated in this process (default: on CUDA when vllm is
    installed). ``Run.metrics`` gets reward, reward_std, rewards/<fn>/mean|std, completions/mean_length,
    kl, entropy and clip ratios; ``run.samples`` the latest scored completions.
    """
    return launch(method("grpo"), arguments, verbose=verbose)


@kernel_stays_off_cuda
@from_arguments(PreferenceArguments, rename={"loss": "type"}, positional=("loss",))
def rlhf(arguments: PreferenceArguments, *, verbose: bool = True) -> Run:
    """ms-swift's spelling: ``rlhf("orpo", model=..., ...)`` is :func:`dpo` with ``loss="orpo"``."""
    return launch(method("dpo"), arguments, verbose=verbose)


def runs(workspace: str | None = None):  # noqa: ANN201 - pandas.DataFrame
    """The runs in the workspace (newest first): id, kind, status, model, method, steps, last loss, folder."""
    import pandas as pd

    from ..config import settings

    root = (Path(workspace).expanduser() if workspace else settings.workspace_path) / "runs"
    from .runtime.lease import waiting

    queue = {entry["run_id"]: entry for entry in waiting()}
    records = []
    for folder in (
        sorted(root.glob("*/config.json"), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    ):
        try:
            run = Run.load(folder.parent)
        except SwiftUsageError:
            continue
        frame = run.metrics
        losses = frame["loss"].dropna() if "loss" in frame else []
        records.append(
            {
                "run_id": run.name,
                "kind": run.config.kind,
                "status": _status_line(run, queue),
                "model": run.config.model,
                "method": run.config.plan.method,
                "step": run.progress.get("step", 0),
                "loss": float(losses.iloc[-1]) if len(losses) else None,
                "created": run.config.created,
                "output_dir": str(run.output_dir),
            }
        )
    columns = ["run_id", "kind", "status", "model", "method", "step", "loss", "created", "output_dir"]
    return pd.DataFrame(records, columns=columns)


def attach(run: Any) -> Run:
    """The :class:`Run` of a run id or folder, live: this kernel's own object when it has one; else, for a run
    still training in its process (started before a kernel restart, or from another notebook), a ``Run`` that
    watches it from here (dashboard, ``.wait()``, ``.stop()``, ``.metrics`` with its history)."""
    from ..jobs import live_jobs

    loaded = load_run(run)
    target = loaded.output_dir.resolve()
    for job in live_jobs("run"):
        if Path(job.output_dir).resolve() == target:
            return job
    if not loaded.done:
        loaded.follow()
    return loaded


def _status_line(run: Run, queue: dict[str, Any]) -> str:
    """A run's status, with its place when it waits for a device's lease (``queued (2nd for cuda-0)``)."""
    entry = queue.get(run.name)
    if entry is None:
        return run.status
    line = sorted((e for e in queue.values() if e.get("lease") == entry.get("lease")), key=lambda e: e["since"])
    place = [e["run_id"] for e in line].index(run.name) + 1
    return f"queued ({place} in line for {entry.get('lease')})"


def load_run(run: Any) -> Run:
    """A :class:`Run` from a Run, a run folder or a run id in the workspace."""
    if isinstance(run, Run):
        return run
    from ..config import settings

    text = str(run)
    for folder in (Path(text).expanduser(), settings.workspace_path / "runs" / text):
        if (folder / "config.json").is_file():
            return Run.load(folder)
    raise SwiftUsageError(f"no run '{text}': give a run folder or an id listed by %swift runs")


def export_script(run: Any, path: str | None = None, kind: str = "shell", launcher: str | None = None) -> Path:
    """``%swift export-script RUN``: write the script that reproduces a run (see :meth:`Run.to_script`);
    with ``launcher`` ("torchrun", "accelerate" or "slurm") a script that trains its configuration on a cluster."""
    if launcher:
        from .cluster_script import write_cluster_script

        target = write_cluster_script(load_run(run), launcher, path)
        how = "sbatch" if launcher == "slurm" else "NNODES=.. NODE_RANK=.. MASTER_ADDR=.. bash"
        print(f"wrote {target}; run it with: {how} {target}")
        return target
    target = load_run(run).to_script(path, kind)
    print(f"wrote {target}; run it with: {'bash' if kind == 'shell' else 'python'} {target}")
    return target


def watch(run: Run) -> None:
    """Terminal view: progress lines until the run ends; Ctrl-C stops it with a checkpoint."""
    from .methods.registry import metrics

    last = [0.0]

    def show(event: str, payload: Any) -> None:
        if event == "metrics" and payload.get("loss") is not None:
            p = run.progress
            eta = p.get("eta_s")
            eta_text = f" eta {int(eta) // 60:02d}:{int(eta) % 60:02d}" if eta is not None else ""
            tps = payload.get("tokens_per_s")
            extra = "".join(
                f" {label} {payload[key]:.3f}" for key, label in metrics(run.config) if payload.get(key) is not None
            )
            print(
                f"step {payload['step']}/{p.get('max_steps') or '?'} loss {payload['loss']:.4f}{extra} "
                f"lr {payload.get('learning_rate', 0):.2e} grad_norm {payload.get('grad_norm') or 0:.3f} "
                f"tok/s {tps or 0:.0f}{eta_text}",
                flush=True,
            )
        elif event == "metrics" and payload.get("eval_loss") is not None:
            print(f"step {payload['step']} eval_loss {payload['eval_loss']:.4f}", flush=True)
        elif event == "checkpoint":
            print(f"checkpoint {payload}", flush=True)
        last[0] = time.time()

    unsubscribe = run.subscribe(show)
    try:
        while not run.done:
            try:
                run.wait(0.5)
            except KeyboardInterrupt:
                run.stop()
        status = run.wait()
    finally:
        unsubscribe()
    if status == "failed":
        from ..errors import SwiftError

        raise SwiftError(f"run {run.name} failed: {run.error}")
    print(f"{status}: {run.name}; adapter in {run.adapter_dir}", flush=True)
