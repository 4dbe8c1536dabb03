"""Python API of training: ``km.sft(...) -> Run``, ``km.dpo(...) -> Run``, ``km.grpo(...) -> Run`` and ``km.runs()``.

``sft`` checks everything that can be checked cheaply in the caller's thread (arguments, model folder,
data rows, output folder, the plan for this device) so mistakes fail at once with one line; then the
run trains in a background thread and the call returns the :class:`Run` immediately.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..errors import SwiftError, SwiftUsageError
from .distributed import kernel_stays_off_cuda
from .dpo import PreferenceArguments as _DPO
from .grpo import GRPOArgs as _GRPO
from .run import Run
from .vlm import VisionArguments as _SFT

# The keywords of sft() and dpo() are spelled out for completion and help; their defaults are the argument
# dataclasses' (the single source of each knob), and their names those dataclasses' fields.


def _arguments(cls: Any, given: dict[str, Any]) -> Any:
    """The argument dataclass ``cls`` filled from a public function's keyword arguments (its ``locals()``)."""
    from dataclasses import fields

    values = {f.name: given[f.name] for f in fields(cls) if f.name in given}
    if values.get("output_dir") is not None:
        values["output_dir"] = str(values["output_dir"])
    return cls(**values)


@kernel_stays_off_cuda
def sft(
    model: str | None = _SFT.model,
    dataset: Any = _SFT.dataset,
    method: str = _SFT.method,
    dtype: str = _SFT.dtype,
    lora_r: int = _SFT.lora_r,
    lora_alpha: int = _SFT.lora_alpha,
    lora_dropout: float = _SFT.lora_dropout,
    target_modules: list[str] | None = _SFT.target_modules,
    lr: float | None = _SFT.lr,
    epochs: float = _SFT.epochs,
    max_steps: int | None = _SFT.max_steps,
    batch_size: int = _SFT.batch_size,
    grad_accum: int = _SFT.grad_accum,
    max_length: int = _SFT.max_length,
    packing: bool = _SFT.packing,
    seed: int = _SFT.seed,
    eval_split: float = _SFT.eval_split,
    eval_steps: float | None = _SFT.eval_steps,
    logging_steps: int = _SFT.logging_steps,
    save_steps: int = _SFT.save_steps,
    save_total_limit: int | None = _SFT.save_total_limit,
    warmup_ratio: float = _SFT.warmup_ratio,
    lr_scheduler: str = _SFT.lr_scheduler,
    weight_decay: float = _SFT.weight_decay,
    max_grad_norm: float = _SFT.max_grad_norm,
    gradient_checkpointing: bool | None = _SFT.gradient_checkpointing,
    assistant_only_loss: bool = _SFT.assistant_only_loss,
    token_metrics: bool = _SFT.token_metrics,
    on_bad_rows: str = _SFT.on_bad_rows,
    early_stopping_patience: int | None = _SFT.early_stopping_patience,
    optim: str | None = _SFT.optim,
    device: str | None = _SFT.device,
    trust_remote_code: bool | None = _SFT.trust_remote_code,
    output_dir: str | os.PathLike[str] | None = _SFT.output_dir,
    num_processes: int = _SFT.num_processes,
    nnodes: int = _SFT.nnodes,
    node_rank: int = _SFT.node_rank,
    master_addr: str | None = _SFT.master_addr,
    master_port: int | None = _SFT.master_port,
    strategy: str = _SFT.strategy,
    deepspeed: str | None = _SFT.deepspeed,
    train_vision: bool = _SFT.train_vision,
    max_pixels: int | None = _SFT.max_pixels,
    template: str = _SFT.template,
    verbose: bool = True,
) -> Run:
    """Start supervised fine-tuning (LoRA, QLoRA or full) in the background and return its :class:`Run`.

    ``model``: "tiny", a local folder or a hub id (default: ``settings.default_model``). ``dataset``: a
    jsonl/json/csv/parquet path, a ``save_to_disk`` folder, a hub dataset id, a ``datasets.Dataset``, a
    pandas DataFrame or a list of dicts in messages, ShareGPT, alpaca, prompt/completion or text format.
    ``method="auto"`` picks by device and memory estimate and prints why. Bad input raises one-line
    :class:`~kernel_magics.errors.SwiftError` s before anything heavy loads.

    A vision-language ``model`` (Qwen2-VL, LLaVA-style, ...) takes image + text rows (see
    :mod:`kernel_magics.train.vlm`): ``template`` ("auto", "vqa", "caption", "grounding", "messages") turns
    simple rows into chats, ``max_pixels`` caps each image's resolution (and so its tokens), and the vision
    tower stays frozen unless ``train_vision``.

    Several processes (``num_processes``, ``nnodes``, ``node_rank``, ``master_addr``, ``master_port``,
    ``strategy`` "ddp" | "fsdp" | "zero2" | "zero3" | "zero3-offload", ``deepspeed`` JSON): the run is trained
    by a ``torchrun`` process group and watched from here exactly like a one-process run (docs/distributed.md);
    ``batch_size`` is per process.
    """
    from ..config import settings
    from ..device import select_device
    from ..hub import is_vision_model, resolve_model
    from .launching import check_start, plan_run, rows_in_memory, write_run
    from .sft import SFTArguments, check_data
    from .vlm import text_model_data_error

    args = _arguments(SFTArguments, locals())
    start = check_start(args)
    model_name = str(model if model is not None else settings.default_model)
    info = select_device(device)
    model_path = resolve_model(model_name)
    if is_vision_model(model_path):
        from dataclasses import asdict

        from .vlm import VisionArguments, launch

        vision = dict(train_vision=train_vision, max_pixels=max_pixels, template=template)
        return launch(VisionArguments(**asdict(args), **vision), verbose=verbose)
    try:
        data = check_data(args)
    except SwiftError as exc:
        raise text_model_data_error(model_name, dataset) or exc from None
    plan, estimates = plan_run(args, model_path, info)
    run = write_run(
        start,
        command="sft",
        kind="sft",
        trainer="kernel_magics.train.sft:build_trainer",
        args=args,
        model_name=model_name,
        model_path=model_path,
        plan=plan,
        estimates=estimates,
        device=info,
        data={"source": data.source, "format": data.format, "rows": len(data), "skipped": len(data.skipped)},
        rows=rows_in_memory(dataset),
        lines=[plan.describe(), f"data: {data.summary()}"],
        verbose=verbose,
    )
    return run.start(prepared=data)


@kernel_stays_off_cuda
def dpo(
    model: str | None = _DPO.model,
    dataset: Any = _DPO.dataset,
    loss: str = _DPO.loss,
    adapter: Any = _DPO.adapter,
    beta: float | None = _DPO.beta,
    lr: float | None = _DPO.lr,
    simpo_gamma: float = _DPO.simpo_gamma,
    desirable_weight: float = _DPO.desirable_weight,
    undesirable_weight: float = _DPO.undesirable_weight,
    method: str = _DPO.method,
    dtype: str = _DPO.dtype,
    lora_r: int = _DPO.lora_r,
    lora_alpha: int = _DPO.lora_alpha,
    lora_dropout: float = _DPO.lora_dropout,
    target_modules: list[str] | None = _DPO.target_modules,
    epochs: float = _DPO.epochs,
    max_steps: int | None = _DPO.max_steps,
    batch_size: int = _DPO.batch_size,
    grad_accum: int = _DPO.grad_accum,
    max_length: int = _DPO.max_length,
    seed: int = _DPO.seed,
    eval_split: float = _DPO.eval_split,
    eval_steps: float | None = _DPO.eval_steps,
    logging_steps: int = _DPO.logging_steps,
    save_steps: int = _DPO.save_steps,
    save_total_limit: int | None = _DPO.save_total_limit,
    warmup_ratio: float = _DPO.warmup_ratio,
    lr_scheduler: str = _DPO.lr_scheduler,
    weight_decay: float = _DPO.weight_decay,
    max_grad_norm: float = _DPO.max_grad_norm,
    gradient_checkpointing: bool | None = _DPO.gradient_checkpointing,
    on_bad_rows: str = _DPO.on_bad_rows,
    early_stopping_patience: int | None = _DPO.early_stopping_patience,
    optim: str | None = _DPO.optim,
    device: str | None = _DPO.device,
    trust_remote_code: bool | None = _DPO.trust_remote_code,
    output_dir: str | os.PathLike[str] | None = _DPO.output_dir,
    num_processes: int = _DPO.num_processes,
    nnodes: int = _DPO.nnodes,
    node_rank: int = _DPO.node_rank,
    master_addr: str | None = _DPO.master_addr,
    master_port: int | None = _DPO.master_port,
    strategy: str = _DPO.strategy,
    deepspeed: str | None = _DPO.deepspeed,
    verbose: bool = True,
) -> Run:
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
    from .dpo import PreferenceArguments, launch

    args = _arguments(PreferenceArguments, locals())  # adapter: a Run or a folder; launch() resolves it
    return launch(args, verbose=verbose)


@kernel_stays_off_cuda
def grpo(
    model: str | None = _GRPO.model,
    dataset: Any = _GRPO.dataset,
    reward: Any = _GRPO.reward,
    reward_weights: list[float] | None = _GRPO.reward_weights,
    reward_timeout: float = _GRPO.reward_timeout,
    num_generations: int = _GRPO.num_generations,
    max_completion_length: int = _GRPO.max_completion_length,
    beta: float = _GRPO.beta,
    temperature: float = _GRPO.temperature,
    top_p: float = _GRPO.top_p,
    loss: str = _GRPO.loss,
    epsilon: float | None = _GRPO.epsilon,
    epsilon_high: float | None = _GRPO.epsilon_high,
    scale_rewards: str | None = _GRPO.scale_rewards,
    num_iterations: int = _GRPO.num_iterations,
    mask_truncated_completions: bool = _GRPO.mask_truncated_completions,
    adapter: Any = _GRPO.adapter,
    format_pattern: str = _GRPO.format_pattern,
    length_target: int | None = _GRPO.length_target,
    use_vllm: bool | None = _GRPO.use_vllm,
    vllm_gpu_memory_utilization: float = _GRPO.vllm_gpu_memory_utilization,
    lr: float | None = _GRPO.lr,
    method: str = _GRPO.method,
    dtype: str = _GRPO.dtype,
    lora_r: int = _GRPO.lora_r,
    lora_alpha: int = _GRPO.lora_alpha,
    lora_dropout: float = _GRPO.lora_dropout,
    target_modules: list[str] | None = _GRPO.target_modules,
    epochs: float = _GRPO.epochs,
    max_steps: int | None = _GRPO.max_steps,
    batch_size: int = _GRPO.batch_size,
    grad_accum: int = _GRPO.grad_accum,
    max_length: int = _GRPO.max_length,
    seed: int = _GRPO.seed,
    logging_steps: int = _GRPO.logging_steps,
    save_steps: int = _GRPO.save_steps,
    save_total_limit: int | None = _GRPO.save_total_limit,
    warmup_ratio: float = _GRPO.warmup_ratio,
    lr_scheduler: str = _GRPO.lr_scheduler,
    weight_decay: float = _GRPO.weight_decay,
    max_grad_norm: float = _GRPO.max_grad_norm,
    gradient_checkpointing: bool | None = _GRPO.gradient_checkpointing,
    on_bad_rows: str = _GRPO.on_bad_rows,
    optim: str | None = _GRPO.optim,
    device: str | None = _GRPO.device,
    trust_remote_code: bool | None = _GRPO.trust_remote_code,
    output_dir: str | os.PathLike[str] | None = _GRPO.output_dir,
    num_processes: int = _GRPO.num_processes,
    nnodes: int = _GRPO.nnodes,
    node_rank: int = _GRPO.node_rank,
    master_addr: str | None = _GRPO.master_addr,
    master_port: int | None = _GRPO.master_port,
    strategy: str = _GRPO.strategy,
    deepspeed: str | None = _GRPO.deepspeed,
    verbose: bool = True,
) -> Run:
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
    from .grpo import launch

    return launch(_arguments(_GRPO, locals()), verbose=verbose)


def rlhf(type: str = "dpo", **kwargs: Any) -> Run:  # noqa: A002 - ms-swift's name for the loss
    """ms-swift's spelling: ``rlhf(type="orpo", ...)`` is :func:`dpo` with ``loss="orpo"``."""
    return dpo(loss=type, **kwargs)


def runs(workspace: str | None = None):  # noqa: ANN201 - pandas.DataFrame
    """The runs in the workspace (newest first): id, kind, status, model, method, steps, last loss, folder."""
    import pandas as pd

    from ..config import settings

    root = (Path(workspace).expanduser() if workspace else settings.workspace_path) / "runs"
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
                "kind": run.config.get("kind"),
                "status": run.status,
                "model": run.config.get("model"),
                "method": run.config.get("plan", {}).get("method"),
                "step": run.progress.get("step", 0),
                "loss": float(losses.iloc[-1]) if len(losses) else None,
                "created": run.config.get("created"),
                "output_dir": str(run.output_dir),
            }
        )
    columns = ["run_id", "kind", "status", "model", "method", "step", "loss", "created", "output_dir"]
    return pd.DataFrame(records, columns=columns)


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
    from .methods import metrics

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
