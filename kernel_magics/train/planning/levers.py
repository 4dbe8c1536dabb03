"""Speed levers a run can ask for on top of its :class:`~.plan.Plan`: ``torch.compile``, Liger kernels,
padding-free batches and the optimizer.

:func:`apply_levers` resolves each one for the device and model before anything loads, notes in the plan what it
chose and why, and refuses in one line what cannot work here (a quantized layer ``torch.compile`` cannot trace,
a CUDA-only kernel on the CPU, an optimizer whose name does not exist). The trainers read the result from the
plan (:func:`~.arguments.training_kwargs`: ``torch_compile``, ``use_liger_kernel``, ``optim``; SFT and DPO
``padding_free``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

from ...device import DeviceInfo
from ...errors import SwiftConfigError, SwiftDeviceError, did_you_mean
from .plan import Plan

LIGER_CHOICES = ("auto", "on", "off")
# optimizers checked without importing transformers (the caller's thread stays light); others are looked up
COMMON_OPTIMIZERS = frozenset(
    "adamw_torch adamw_torch_fused adamw_8bit adamw_bnb_8bit paged_adamw_8bit paged_adamw_32bit sgd adafactor".split()
)
COMPILE_NOTE = "compile: torch.compile of the model (compiling, first step slower)"


def model_type(model_path: Path) -> str:
    """The ``model_type`` of a model folder's ``config.json`` ("" when it has none)."""
    try:
        return str(json.loads((Path(model_path) / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError):
        return ""


def apply_levers(plan: Plan, args: Any, device: DeviceInfo, model_path: Path) -> Plan:
    """Resolve ``args``' speed levers into ``plan`` (in place, and returned) for ``device`` and the model."""
    plan.optim = checked_optim(plan.optim)
    plan.compile = bool(getattr(args, "compile", False))
    if plan.compile:
        problem = compile_problem(plan, device)
        if problem:
            raise SwiftConfigError(f"compile cannot work here: {problem}; drop --compile")
        plan.reasons.append(COMPILE_NOTE)
    plan.liger = use_liger(str(getattr(args, "use_liger_kernel", "auto")), device, model_type(model_path), plan)
    plan.padding_free = bool(getattr(args, "padding_free", False))
    if plan.padding_free:
        check_padding_free(args, device)
        plan.reasons.append("padding_free: rows concatenated without padding, FlashAttention-2 varlen")
    return plan


def compile_problem(plan: Plan, device: DeviceInfo) -> str | None:
    """Why ``torch.compile`` cannot train ``plan`` on ``device`` (None when it can)."""
    if plan.method == "qlora":
        return "torch.compile cannot trace bitsandbytes 4-bit layers (method qlora); use method lora"
    if device.type == "cpu" and not any(shutil.which(c) for c in ("g++", "clang++", "c++")):
        return "TorchInductor needs a C++ compiler (g++ or clang++) on the CPU"
    if device.type == "cuda" and importlib.util.find_spec("triton") is None:
        return "TorchInductor needs triton on CUDA (pip install triton)"
    return None


def use_liger(asked: str, device: DeviceInfo, kind: str, plan: Plan) -> bool:
    """Whether the run uses Liger's Triton kernels: "auto" turns them on for a supported model on CUDA when
    liger-kernel is installed; "on" where that cannot work is one line."""
    if asked not in LIGER_CHOICES:
        raise SwiftConfigError(
            f"use_liger_kernel must be one of {', '.join(LIGER_CHOICES)}, got '{asked}'"
            f"{did_you_mean(asked, LIGER_CHOICES)}"
        )
    if asked == "off":
        return False
    problem = liger_problem(device, kind)
    if asked == "on" and problem:
        raise SwiftDeviceError(f"use_liger_kernel on cannot work here: {problem}; use auto or off")
    if problem:
        if device.type == "cuda":
            plan.reasons.append(f"Liger kernels off: {problem}")
        return False
    plan.reasons.append(f"Liger kernels on ({kind} on CUDA{'' if asked == 'on' else ', auto'})")
    return True


def liger_problem(device: DeviceInfo, kind: str) -> str | None:
    """Why Liger's kernels cannot run a ``kind`` model on ``device`` (None when they can)."""
    if device.type != "cuda":
        return f"Liger kernels need CUDA (Triton GPU kernels); this run is on {device.type}"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install 'kernel_magics[liger]')"
    if kind not in liger_model_types():
        return f"Liger kernels do not patch model type '{kind or 'unknown'}'"
    return None


def liger_model_types() -> frozenset[str]:
    """The model types the installed liger-kernel patches (its own table)."""
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return frozenset(MODEL_TYPE_TO_APPLY_LIGER_FN)


def check_padding_free(args: Any, device: DeviceInfo) -> None:
    """One line when padding-free batches cannot work for this method or device."""
    if "padding_free" in getattr(args, "NOT_ON_LINE", ()):
        raise SwiftConfigError(f"padding_free is not a {type(args).__name__} option: SFT and DPO have it")
    if device.type != "cuda":
        raise SwiftDeviceError(
            f"padding_free needs CUDA with FlashAttention-2 (varlen); this run is on {device.type}: drop it "
            "(SFT's --packing packs rows without padding on any device)"
        )
    if importlib.util.find_spec("flash_attn") is None:
        raise SwiftDeviceError("padding_free needs flash-attn for FlashAttention-2 varlen (pip install flash-attn)")


def checked_optim(name: str) -> str:
    """``name`` if transformers has that optimizer and what it needs is installed; else one line (bitsandbytes'
    8-bit and paged AdamW run on the CPU too)."""
    if name not in COMMON_OPTIMIZERS:
        from transformers.training_args import OptimizerNames

        known = [o.value for o in OptimizerNames]
        if name not in known:
            raise SwiftConfigError(
                "optim must be a transformers optimizer (adamw_torch, adamw_torch_fused, adamw_8bit, "
                f"paged_adamw_8bit, ...), got '{name}'{did_you_mean(name, known)}"
            )
    if ("8bit" in name or name.startswith("paged_")) and importlib.util.find_spec("bitsandbytes") is None:
        raise SwiftDeviceError(f"optim {name} needs bitsandbytes (pip install bitsandbytes)")
    return name
