"""Imported first in each benchmarked training process: after every training step it prints one line with
the batch's shape, its non-padding and labelled tokens and the seconds ``Trainer.training_step`` took (forward
and backward), so ``anchors.py`` can show that every tool trained on the same batches (a padded batch's length
sets most of a step's cost) and split a step's time into forward + backward and the rest of the loop (optimizer,
callbacks, logging, data). Timing and printing cost microseconds; nothing else changes."""

from __future__ import annotations

import time
from typing import Any

import transformers

PREFIX = "KM-STEP-SHAPE"
_training_step = transformers.Trainer.training_step


def training_step(self: Any, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    loss = _training_step(self, model, inputs, *args, **kwargs)
    seconds = time.perf_counter() - start
    ids, mask, labels = inputs.get("input_ids"), inputs.get("attention_mask"), inputs.get("labels")
    if ids is not None:
        tokens = int(mask.sum()) if mask is not None else ids.numel()
        labelled = int((labels != -100).sum()) if labels is not None else 0
        print(
            f"\n{PREFIX} {'x'.join(map(str, ids.shape))} tokens={tokens} labelled={labelled} seconds={seconds:.4f}",
            flush=True,
        )
    return loss


transformers.Trainer.training_step = training_step
