"""TrainerCallbacks that connect a Hugging Face ``Trainer`` to a :class:`~kernel_magics.train.runtime.run.Run`.

``RunCallback`` turns every ``on_log`` into one metric row (loss, eval loss, learning rate, grad-norm,
tokens/s of non-padding tokens, device memory) that the run stores and publishes to its subscribers,
and turns a stop request into ``should_training_stop`` + ``should_save`` at the next step boundary,
so a stopped run always ends with a complete checkpoint. ``EarlyStopCallback`` stops when the eval
loss has not improved for ``patience`` evaluations.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

METRIC_KEYS = {
    "loss": "loss",
    "eval_loss": "eval_loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
    "mean_token_accuracy": "token_accuracy",
    "eval_mean_token_accuracy": "eval_token_accuracy",
}
# Preference tuning (TRL's DPO / ORPO / KTO / SimPO trainers): kept under TRL's names, eval ones too.
PREFERENCE_METRICS = (
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "rewards/accuracies",
    "logps/chosen",
    "logps/rejected",
    "log_odds_ratio",
    "log_odds_chosen",
    "nll_loss",
    "kl",
)
METRIC_KEYS.update({key: key for key in PREFERENCE_METRICS})
METRIC_KEYS.update({f"eval_{key}": f"eval_{key}" for key in PREFERENCE_METRICS})


def device_memory_gb() -> float:
    """Memory in use on the training device: CUDA allocated (GiB) or this process's resident memory."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return round(torch.cuda.memory_allocated() / 1024**3, 3)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return round(pages * os.sysconf("SC_PAGE_SIZE") / 1024**3, 3)
    except (OSError, ValueError, IndexError):
        return float("nan")


class RunCallback(TrainerCallback):
    """Publishes metric rows and checkpoint events; honours stop requests at step boundaries."""

    def __init__(
        self,
        on_row: Callable[[dict[str, Any]], None],
        emit: Callable[[str, Any], None],
        stop_event: threading.Event,
    ) -> None:
        self.on_row = on_row
        self.emit = emit
        self.stop_event = stop_event
        self._last_time = time.perf_counter()
        self._last_tokens = 0
        self._start = time.perf_counter()
        self._start_step = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._start = self._last_time = time.perf_counter()
        self._last_tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
        self._start_step = state.global_step
        self.emit("begin", {"global_step": state.global_step, "max_steps": state.max_steps})

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stop_event.is_set():
            control.should_training_stop = True
            control.should_save = True
        self.emit("progress", self.progress(state))
        if control.should_save:
            self.emit("checkpoint_start", state.global_step)

    def progress(self, state: Any) -> dict[str, Any]:
        elapsed = time.perf_counter() - self._start
        done = state.global_step - self._start_step
        left = max(state.max_steps - state.global_step, 0)
        eta = elapsed / done * left if done > 0 else None
        return {"step": state.global_step, "max_steps": state.max_steps, "elapsed_s": elapsed, "eta_s": eta}

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        if "train_runtime" in logs and "loss" not in logs:
            self.emit("summary", dict(logs))
            return
        now = time.perf_counter()
        row: dict[str, Any] = {"step": state.global_step, "epoch": round(float(state.epoch or 0.0), 4)}
        for key, name in METRIC_KEYS.items():
            if key in logs and logs[key] is not None:
                value = float(logs[key])
                row[name] = value if math.isfinite(value) else None
        if "loss" in logs:
            tokens = int(getattr(state, "num_input_tokens_seen", 0) or 0)
            dt = now - self._last_time
            row["tokens"] = tokens
            row["tokens_per_s"] = round((tokens - self._last_tokens) / dt, 1) if dt > 0 and tokens else None
            self._last_time, self._last_tokens = now, tokens
        row["memory_gb"] = device_memory_gb()
        row["elapsed_s"] = round(now - self._start, 3)
        row["time"] = time.time()
        self.on_row(row)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        self.emit("checkpoint", path)


class EarlyStopCallback(TrainerCallback):
    """Stop (with a checkpoint) when eval loss has not improved by ``min_delta`` for ``patience`` evals."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.best: float | None = None
        self.bad = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        if self.best is None or loss < self.best - self.min_delta:
            self.best, self.bad = loss, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            control.should_training_stop = True
            control.should_save = True


class LoggingWindowCallback(TrainerCallback):
    """Carries what the trainer averages between two logs across a stop and a resume.

    The loss logged every ``logging_steps`` is the mean since the previous log, and TRL averages its own
    metrics (token accuracy, entropy) the same way; a checkpoint written between two logs does not hold
    that partial sum, so the first log after a resume would average fewer steps. Each checkpoint gets it
    in ``kernel_magics_window.json`` and a resume puts it back, so the resumed run logs exactly what the
    uninterrupted run logs.
    """

    FILE = "kernel_magics_window.json"

    def __init__(self, trainer: Any, resume_from: str | os.PathLike[str] | None) -> None:
        self.trainer = trainer
        self.resume_from = resume_from

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.resume_from is None:
            return
        try:
            with open(os.path.join(self.resume_from, self.FILE), encoding="utf-8") as fh:
                saved = json.load(fh)
        except (OSError, ValueError):
            return  # a checkpoint from before this file existed: the first log averages fewer steps
        trainer = self.trainer
        trainer._tr_loss.fill_(saved["tr_loss"])
        trainer._total_loss_scalar = saved["total_loss_scalar"]
        trainer._globalstep_last_logged = saved["globalstep_last_logged"]
        metrics = getattr(trainer, "_metrics", None)
        if isinstance(metrics, dict) and "train" in metrics:
            for key, values in saved.get("metrics", {}).items():
                metrics["train"][key] = list(values)
        if "total_train_tokens" in saved and hasattr(trainer, "_total_train_tokens"):
            trainer._total_train_tokens = saved["total_train_tokens"]

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if not os.path.isdir(folder):
            return
        trainer = self.trainer
        window: dict[str, Any] = {
            "tr_loss": float(trainer._tr_loss.item()),
            "total_loss_scalar": float(trainer._total_loss_scalar),
            "globalstep_last_logged": int(trainer._globalstep_last_logged),
        }
        metrics = getattr(trainer, "_metrics", None)
        if isinstance(metrics, dict) and "train" in metrics:
            window["metrics"] = {k: [float(v) for v in vs] for k, vs in metrics["train"].items()}
        tokens = getattr(trainer, "_total_train_tokens", None)
        if tokens is not None:
            window["total_train_tokens"] = tokens.item() if hasattr(tokens, "item") else tokens
        tmp = os.path.join(folder, f".{self.FILE}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(window, fh)
        os.replace(tmp, os.path.join(folder, self.FILE))
