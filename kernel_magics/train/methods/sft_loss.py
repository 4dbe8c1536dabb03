"""The SFT training loss with the LM head applied only where a label exists.

A causal LM's loss needs a logit row only at positions whose next token is labelled. TRL 1.16's
``SFTTrainer`` scores its loss through a fused LM head that also computes the entropy and top-1 accuracy of
every token, and on devices without Triton (CPU, MPS) it projects *every* position through the head, labelled
or not. With a 49k-token vocabulary the head is most of a small model's step, and with assistant-only loss most
positions carry no label, so that is most of the work thrown away (docs/training_speed.md has the profile).

:class:`LabelledLogitsSFTTrainer` keeps TRL's trainer and replaces only the training loss: the backbone runs as
before, the hidden states at labelled positions go through the LM head, and the loss is their summed
cross-entropy divided by the same token count TRL divides by (``num_items_in_batch``). The sum runs over the
same terms as TRL's, so the loss and the gradients are the same up to float rounding. Entropy and token
accuracy are skipped unless asked for (``SFTArguments.token_metrics``); evaluation, and every setup this
path does not cover (see :func:`unsupported_reason`), keeps TRL's loss unchanged.
"""

from __future__ import annotations

import functools
import types
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import ModelOutput
from trl import SFTTrainer

# Labelled logits are materialised (fp32) in one piece: above this many bytes TRL's tiled head is used instead.
MAX_LABELLED_LOGITS_BYTES = 1 << 30
_LOGIT_SCALES = ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")


@dataclass
class LabelledLoss(ModelOutput):
    """What the labelled LM head returns: a declared output class, which ``torch.compile`` can trace."""

    loss: torch.Tensor | None = None
    num_labelled: torch.Tensor | None = None


def add_labelled_lm_head(model: Any) -> None:
    """Let ``model(..., labels=labels, labelled_lm_head=True)`` return the summed next-token cross-entropy over
    labelled positions (``loss``) and their count (``num_labelled``), projecting only those positions through the
    LM head. Without the flag the forward is unchanged. Patch the base model, before or after PEFT wraps it."""
    original_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self: Any, *args: Any, labelled_lm_head: bool = False, labels: Any = None, **kwargs: Any) -> Any:
        if not labelled_lm_head:
            if labels is not None:
                kwargs["labels"] = labels
            return original_forward(*args, **kwargs)
        kwargs["use_cache"] = False
        kwargs.pop("num_items_in_batch", None)
        hidden = self.base_model(*args, **kwargs).last_hidden_state[:, :-1]
        targets = labels[:, 1:].to(hidden.device)
        mask = targets != -100
        logits = self.get_output_embeddings()(hidden[mask])  # [labelled tokens, vocab]
        loss_sum = F.cross_entropy(logits.float(), targets[mask], reduction="sum")
        return LabelledLoss(loss=loss_sum, num_labelled=mask.sum())

    model.forward = types.MethodType(forward, model)


def unsupported_reason(trainer: Any) -> str | None:
    """Why ``trainer``'s loss must stay TRL's (None when the labelled-logits path computes the same loss)."""
    args = trainer.args
    config = trainer.model.config.get_text_config() if hasattr(trainer.model.config, "get_text_config") else None
    if getattr(args, "loss_type", "nll") != "nll" or trainer.label_smoother is not None:
        return f"loss_type {args.loss_type!r} / label smoothing"
    if trainer.compute_loss_func is not None:
        return "a custom compute_loss_func"
    if getattr(trainer, "aux_loss_enabled", False):
        return "a mixture-of-experts auxiliary loss"
    if config is not None and any(getattr(config, name, None) is not None for name in _LOGIT_SCALES):
        return "scaled or soft-capped logits"
    if trainer.model.get_output_embeddings() is None or not hasattr(trainer.model, "base_model"):
        return "no separate LM head"
    if trainer.accelerator.num_processes > 1:
        return "several processes"
    return None


class LabelledLogitsSFTTrainer(SFTTrainer):
    """``SFTTrainer`` whose training loss projects only labelled positions through the LM head.

    ``token_metrics=True`` keeps TRL's loss with its per-token entropy and accuracy metrics."""

    def __init__(self, *args: Any, token_metrics: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.token_metrics = token_metrics
        self.labelled_loss_off = "token metrics asked for" if token_metrics else unsupported_reason(self)
        if self.labelled_loss_off is None:
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            add_labelled_lm_head(base)

    def uses_labelled_loss(self, inputs: dict[str, Any]) -> bool:
        labels = inputs.get("labels")
        if self.labelled_loss_off is not None or not self.model.training or labels is None:
            return False
        if "shift_labels" in inputs:
            return False
        vocab = self.model.get_output_embeddings().weight.shape[0]
        return int((labels != -100).sum()) * vocab * 4 <= MAX_LABELLED_LOGITS_BYTES

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        if return_outputs or not self.uses_labelled_loss(inputs):
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        outputs = model(**inputs, labelled_lm_head=True)
        count = outputs.num_labelled if num_items_in_batch is None else num_items_in_batch
        loss = outputs.loss / torch.as_tensor(count, device=outputs.loss.device).clamp(min=1)
        self._count_tokens(inputs)
        return loss

    def _count_tokens(self, inputs: dict[str, Any]) -> None:
        """The ``num_tokens`` bookkeeping TRL's ``compute_loss`` does (what its logs report)."""
        if "attention_mask" in inputs:
            tokens = inputs["attention_mask"].sum()
        else:
            tokens = torch.tensor(inputs["input_ids"].size(1), device=inputs["input_ids"].device)
        self._total_train_tokens += self.accelerator.gather_for_metrics(tokens).sum().item() // self._tp_size
        self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
