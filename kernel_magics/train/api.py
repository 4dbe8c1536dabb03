"""Python API of training: ``km.sft(...) -> Run``, ``km.dpo(...) -> Run`` and ``km.runs()``.

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
from .run import Run


def _arguments(cls: Any, given: dict[str, Any]) -> Any:
    """The argument dataclass ``cls`` filled from a public function's keyword arguments (its ``locals()``)."""
    from dataclasses import fields

    values = {f.name: given[f.name] for f in fields(cls) if f.name in given}
    if values.get("output_dir") is not None:
        values["output_dir"] = str(values["output_dir"])
    return cls(**values)


def sft(
    model: str | None = None,
    dataset: Any = None,
    method: str = "auto",
    lora_r: int = 64,
    lora_alpha: int = 128,
    lora_dropout: float = 0.05,
    target_modules: list[str] | None = None,
    lr: float | None = None,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 4,
    grad_accum: int = 1,
    max_length: int = 1024,
    packing: bool = False,
    seed: int = 42,
    eval_split: float = 0.0,
    eval_steps: float | None = None,
    logging_steps: int = 5,
    save_steps: int = 100,
    save_total_limit: int | None = 2,
    warmup_ratio: float = 0.03,
    lr_scheduler: str = "cosine",
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    gradient_checkpointing: bool | None = None,
    assistant_only_loss: bool = True,
    token_metrics: bool = False,
    on_bad_rows: str = "error",
    early_stopping_patience: int | None = None,
    optim: str | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    train_vision: bool = False,
    max_pixels: int | None = None,
    template: str = "auto",
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
    """
    from ..config import settings
    from ..device import select_device
    from ..hub import resolve_model
    from .launching import check_start, plan_run, rows_in_memory, write_run
    from .sft import SFTArguments, check_data
    from .vlm import is_vision_model, text_model_data_error

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


def dpo(
    model: str | None = None,
    dataset: Any = None,
    loss: str = "dpo",
    adapter: Any = None,
    beta: float | None = None,
    lr: float | None = None,
    simpo_gamma: float = 0.5,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    method: str = "auto",
    lora_r: int = 64,
    lora_alpha: int = 128,
    lora_dropout: float = 0.05,
    target_modules: list[str] | None = None,
    epochs: float = 1.0,
    max_steps: int | None = None,
    batch_size: int = 4,
    grad_accum: int = 1,
    max_length: int = 1024,
    seed: int = 42,
    eval_split: float = 0.0,
    eval_steps: float | None = None,
    logging_steps: int = 5,
    save_steps: int = 100,
    save_total_limit: int | None = 2,
    warmup_ratio: float = 0.03,
    lr_scheduler: str = "cosine",
    weight_decay: float = 0.0,
    max_grad_norm: float = 1.0,
    gradient_checkpointing: bool | None = None,
    on_bad_rows: str = "error",
    early_stopping_patience: int | None = None,
    optim: str | None = None,
    device: str | None = None,
    trust_remote_code: bool | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> Run:
    """Start preference tuning (DPO, ORPO, KTO or SimPO) in the background and return its :class:`Run`.

    ``loss``: "dpo" (``trl.DPOTrainer``), "orpo" (no reference model, no prior SFT needed), "kto" (unpaired
    ``prompt``/``completion``/``label`` rows) or "simpo" (``CPOTrainer`` with ``loss_type="simpo"``).
    ``adapter``: an SFT run (or its ``adapter_dir``) whose LoRA adapter training continues; the reference
    is then that adapter's frozen starting point on the same base weights (no second model copy), and
    ``model`` defaults to the adapter's base. ``beta`` defaults to 0.1 (2.0 for simpo). ``dataset``:
    prompt/chosen/rejected rows (strings or message lists), conversational chosen/rejected, ms-swift
    ``messages`` + ``rejected_response``, or for kto prompt/completion/label rows. The other knobs are
    those of :func:`sft`. Bad input raises one-line :class:`~kernel_magics.errors.SwiftError` s before
    anything heavy loads; ``Run.metrics`` gets rewards/chosen, rewards/rejected, rewards/margins,
    rewards/accuracies (and log_odds_ratio for orpo, kl for kto) next to the loss.
    """
    from .dpo import PreferenceArguments, launch

    args = _arguments(PreferenceArguments, locals())  # adapter: a Run or a folder; launch() resolves it
    return launch(args, verbose=verbose)


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


def watch(run: Run) -> None:
    """Terminal view: progress lines until the run ends; Ctrl-C stops it with a checkpoint."""
    last = [0.0]

    def show(event: str, payload: Any) -> None:
        if event == "metrics" and payload.get("loss") is not None:
            p = run.progress
            eta = p.get("eta_s")
            eta_text = f" eta {int(eta) // 60:02d}:{int(eta) % 60:02d}" if eta is not None else ""
            tps = payload.get("tokens_per_s")
            preference = "".join(
                f" {label} {payload[key]:.3f}"
                for key, label in (("rewards/margins", "margin"), ("rewards/accuracies", "acc"), ("kl", "kl"))
                if payload.get(key) is not None
            )
            print(
                f"step {payload['step']}/{p.get('max_steps') or '?'} loss {payload['loss']:.4f}{preference} "
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
