"""Imported first in each benchmarked training process: after every training step it prints one line with
the batch's shape, its non-padding and labelled tokens and the seconds ``Trainer.training_step`` took (forward
and backward), so ``anchors.py`` can show that every tool trained on the same batches (a padded batch's length
sets most of a step's cost) and split a step's time into forward + backward and the rest of the loop (optimizer,
callbacks, logging, data). ``cpu=`` is the CPU seconds the process spent in ``training_step`` (all its
threads) and ``proc=`` the process's CPU seconds so far: on a machine shared with other work, CPU seconds stay
near what the step costs while wall seconds follow the load. Each line also says in which dtype the step computed: ``compute=W/O``, the weight
dtype of the model's first frozen linear layer and the dtype of that layer's output in the step's forward (under
autocast bf16 weights stay fp32 while the output is bf16); ``compiled`` when the trainer compiles the model (no
probe is hooked in then). Timing and printing cost microseconds; nothing else changes."""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import transformers

PREFIX = "KM-STEP-SHAPE"
SHAPES_FILE = "KM_STEP_SHAPES_FILE"  # where set, each line is also appended there with its wall time
_training_step = transformers.Trainer.training_step


def _short(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def _compute_probe(trainer: Any, model: Any) -> dict[str, str]:
    """A dict that the model's first frozen linear layer fills with ``weights/output`` dtypes on each forward."""
    if not hasattr(trainer, "_km_compute"):
        trainer._km_compute = {"dtypes": "compiled" if trainer.args.torch_compile else "?"}
        frozen = (m for m in model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad)
        layer = None if trainer.args.torch_compile else next(frozen, None)
        if layer is not None:
            probe = trainer._km_compute
            layer.register_forward_hook(
                lambda mod, _in, out: probe.update(dtypes=f"{_short(mod.weight.dtype)}/{_short(out.dtype)}")
            )
    return trainer._km_compute


def training_step(self: Any, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    probe = _compute_probe(self, model)
    start, start_cpu = time.perf_counter(), time.process_time()
    loss = _training_step(self, model, inputs, *args, **kwargs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    ids, mask, labels = inputs.get("input_ids"), inputs.get("attention_mask"), inputs.get("labels")
    if ids is not None:
        tokens = int(mask.sum()) if mask is not None else ids.numel()
        labelled = int((labels != -100).sum()) if labels is not None else 0
        line = (
            f"{PREFIX} {'x'.join(map(str, ids.shape))} tokens={tokens} labelled={labelled} seconds={seconds:.4f}"
            f" compute={probe['dtypes']} cpu={cpu:.4f} proc={time.process_time():.4f}"
        )
        print(f"\n{line}", flush=True)
        if os.environ.get(SHAPES_FILE):  # a process whose output nobody reads (km.sft's worker)
            with open(os.environ[SHAPES_FILE], "a") as sink:
                sink.write(f"{line} km_time={time.time()}\n")
    return loss


transformers.Trainer.training_step = training_step
