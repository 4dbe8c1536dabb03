"""Loading a model for training with LoRA, QLoRA (4-bit NF4) or full fine-tuning, on the planned device.

Shared by every trainer (SFT, preference tuning): the method-specific trainers only ask for
``load_for_training(path, plan, lora)`` and get a model ready for ``Trainer``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SwiftModelError
from .planning.plan import TORCH_DTYPE_NAMES, Plan


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyper-parameters (peft names)."""

    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target_modules: list[str] | str | None = None  # None -> "all-linear"

    def peft_config(self):  # noqa: ANN201 - peft.LoraConfig
        from peft import LoraConfig

        targets = self.target_modules or "all-linear"
        if isinstance(targets, list) and targets == ["all-linear"]:
            targets = "all-linear"
        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets, task_type="CAUSAL_LM"
        )


def torch_dtype(name: str):  # noqa: ANN201 - torch.dtype
    import torch

    return getattr(torch, TORCH_DTYPE_NAMES[name])


def load_tokenizer(path: Path, trust_remote_code: bool = False):  # noqa: ANN201
    """The model's tokenizer with a pad token (eos when the model has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise SwiftModelError(f"cannot load the tokenizer of {path}: {str(exc).splitlines()[0]}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(plan: Plan):  # noqa: ANN201 - transformers.BitsAndBytesConfig
    """4-bit NF4 with double quantization; compute (and storage) in the plan's dtype."""
    from transformers import BitsAndBytesConfig

    compute = torch_dtype(plan.dtype)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_storage=compute,
    )


def load_base_for_training(
    path: Path,
    plan: Plan,
    trust_remote_code: bool = False,
    auto_class: Any = None,
    skip_quantizing: list[str] | None = None,
) -> Any:
    """``path`` loaded for ``plan``: dtype, 4-bit NF4 for qlora (``skip_quantizing``: module patterns kept in
    full precision), on the planned device, no KV cache; one :class:`SwiftModelError` line when it fails."""
    from transformers.utils import logging as hf_logging

    if auto_class is None:
        from transformers import AutoModelForCausalLM as auto_class  # noqa: N813

    kwargs: dict[str, Any] = {"dtype": torch_dtype(plan.dtype), "trust_remote_code": trust_remote_code}
    if plan.padding_free:  # rows concatenated in one sequence: attention must respect their boundaries
        kwargs["attn_implementation"] = "flash_attention_2"
    if plan.method == "qlora":
        quant = quantization_config(plan)
        if skip_quantizing:
            quant.llm_int8_skip_modules = list(skip_quantizing)
        kwargs["quantization_config"] = quant
        local = int(os.environ.get("LOCAL_RANK", "0"))  # a rank of a process group: its own GPU
        kwargs["device_map"] = {"": plan.device if plan.device != "cuda" else f"cuda:{local}"}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the dashboard shows progress; no tqdm bars in the cell output
    try:
        model = auto_class.from_pretrained(str(path), **kwargs)
    except Exception as exc:  # noqa: BLE001 - many loader errors; the user needs one line
        raise SwiftModelError(f"cannot load model {path} for {plan.method}: {str(exc).splitlines()[0]}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.config.use_cache = False
    return model


def ready_for_adapters(model: Any, plan: Plan) -> Any:
    """Prepare a loaded base for trainable adapters: k-bit preparation for qlora, input gradients for
    gradient checkpointing."""
    if plan.method == "qlora":
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=plan.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if plan.gradient_checkpointing:
        model.enable_input_require_grads()
    return model


def load_for_training(path: Path, plan: Plan, lora: LoraSpec | None, trust_remote_code: bool = False) -> Any:
    """Load ``path`` for ``plan.method``: a peft model (lora / qlora) or the plain model (full)."""
    model = load_base_for_training(path, plan, trust_remote_code)
    if plan.method == "full":
        return model
    from peft import get_peft_model

    return get_peft_model(ready_for_adapters(model, plan), (lora or LoraSpec()).peft_config())
