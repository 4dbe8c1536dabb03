"""``method="auto"``: choose LoRA, QLoRA or full fine-tuning, the dtype and the batch layout for this device.

The plan is made from the device (:func:`kernel_magics.device.select_device`) and the memory estimate
(:func:`kernel_magics.train.planning.estimate.estimate`), and always says why, so the user sees it before
training starts:

* CUDA with >= 24 GiB free and the LoRA estimate fitting -> LoRA in bf16
* CUDA otherwise -> QLoRA (4-bit NF4, double quantization, bf16 compute, paged 8-bit AdamW); fused AdamW for the
  other methods on CUDA
* Apple MPS -> LoRA with batch 1 and gradient accumulation (same effective batch)
* CPU -> LoRA in bf16 where the CPU computes it natively (AMX / AVX512-BF16), fp32 elsewhere (slow for real
  models; fine for small ones)
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any

from ...device import DeviceInfo
from ...errors import SwiftConfigError, SwiftDeviceError, did_you_mean

METHODS = ("auto", "lora", "qlora", "full")
TORCH_DTYPE_NAMES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}  # a plan's dtype -> torch's name
DTYPES = ("auto", *TORCH_DTYPE_NAMES)
LORA_BF16_MIN_FREE_GB = 24.0


@dataclass
class Plan:
    """What training will do on this device, and why."""

    method: str  # lora | qlora | full
    dtype: str  # bf16 | fp16 | fp32 (weights and compute)
    device: str
    batch_size: int
    grad_accum: int
    gradient_checkpointing: bool
    optim: str
    reasons: list[str] = field(default_factory=list)
    estimate_gb: float | None = None
    compile: bool = False  # torch.compile of the model (see .levers)
    liger: bool = False  # Liger's Triton kernels
    padding_free: bool = False  # rows concatenated, FlashAttention-2 varlen

    def describe(self) -> str:
        """One paragraph: the plan and why."""
        head = (
            f"plan: {self.method} in {self.dtype} on {self.device}, batch {self.batch_size} x grad_accum "
            f"{self.grad_accum}, gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}, "
            f"optimizer {self.optim}"
        )
        if self.estimate_gb is not None:
            head += f", estimated peak {self.estimate_gb:.2f} GiB"
        return head + (" — " + "; ".join(self.reasons) if self.reasons else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def four_bit_problem(device: DeviceInfo) -> str | None:
    """Why 4-bit QLoRA cannot run here (None when it can)."""
    if device.type == "mps":
        return "bitsandbytes 4-bit does not run on Apple MPS"
    if not bitsandbytes_available():
        return "bitsandbytes is not installed (pip install bitsandbytes)"
    return None


def make_plan(
    method: str,
    device: DeviceInfo,
    *,
    batch_size: int,
    grad_accum: int,
    gradient_checkpointing: bool | None,
    estimates: dict[str, float] | None = None,
    optim: str | None = None,
    dtype: str = "auto",
) -> Plan:
    """Resolve ``method`` ("auto" included) into a :class:`Plan` for ``device``.

    ``estimates`` maps method -> estimated GiB (from :func:`estimate`); used by ``auto`` on CUDA.
    ``dtype``: the weights' and compute dtype, or "auto" (see :func:`choose_dtype`).
    """
    if method not in METHODS:
        raise SwiftConfigError(
            f"method must be one of {', '.join(METHODS)}, got '{method}'{did_you_mean(method, METHODS)}"
        )
    estimates = estimates or {}
    dtype_notes: list[str] = []
    dtype = choose_dtype(dtype, device, dtype_notes, method)
    reasons: list[str] = []
    chosen = method
    if method == "auto":
        chosen, why = _auto(device, estimates, dtype)
        reasons.append(why)
    if chosen == "qlora":
        problem = four_bit_problem(device)
        if problem:
            fallback, _ = _auto(device, estimates, dtype, allow_qlora=False)
            raise SwiftDeviceError(
                f"method 'qlora' cannot run here: {problem}; use method='{fallback}' (what auto picks)"
            )
    reasons += dtype_notes
    if device.type == "cpu" and method == "auto":
        reasons.append(f"the CPU trains in {dtype} and is slow for real models (fine for small ones)")
    if device.type == "mps" and method == "auto" and batch_size > 1:
        grad_accum *= batch_size
        reasons.append(f"MPS: batch 1 with grad_accum {grad_accum} keeps the effective batch size")
        batch_size = 1
    if gradient_checkpointing is None:
        gradient_checkpointing = device.type == "cuda" or chosen == "qlora" and device.type != "cpu"
    if optim is None:
        optim = (
            "paged_adamw_8bit" if chosen == "qlora" else "adamw_torch_fused" if device.type == "cuda" else "adamw_torch"
        )
    return Plan(
        method=chosen,
        dtype=dtype,
        device=device.torch_device,
        batch_size=batch_size,
        grad_accum=grad_accum,
        gradient_checkpointing=bool(gradient_checkpointing),
        optim=optim,
        reasons=reasons,
        estimate_gb=estimates.get(chosen),
    )


def choose_dtype(asked: str, device: DeviceInfo, reasons: list[str], method: str = "auto") -> str:
    """The dtype to train in: ``asked``, checked against ``device``, or for "auto" what the hardware computes
    natively: bf16 on GPUs that have it, fp16 on older GPUs, bf16 or fp32 on MPS, and on the CPU bf16 where its
    flags show AMX-BF16 or AVX512-BF16 (1.5-2x faster than fp32 there; emulated and slower elsewhere), except for
    full fine-tuning (``method``), whose weights stay fp32 on the CPU. Notes why in ``reasons``."""
    if asked not in DTYPES:
        raise SwiftConfigError(f"dtype must be one of {', '.join(DTYPES)}, got '{asked}'{did_you_mean(asked, DTYPES)}")
    if asked == "auto":
        if device.type == "cuda":
            return "bf16" if device.bf16 else "fp16"
        if device.type == "mps":
            return "bf16" if device.bf16 else "fp32"
        return _cpu_auto_dtype(method, reasons)
    if asked == "fp16" and device.type == "cpu":
        raise SwiftConfigError("dtype fp16 cannot train on the CPU (no fp16 mixed precision there); use bf16 or fp32")
    if asked == "bf16" and device.type == "cuda" and not device.bf16:
        raise SwiftConfigError(f"{device.name} has no bf16; use dtype fp16 (what auto picks) or fp32")
    if asked == "bf16" and device.type == "cpu":
        from ...device import cpu_native_bf16

        if cpu_native_bf16() is None:
            reasons.append("this CPU has no AMX / AVX512-BF16: bf16 is emulated here, slower than fp32")
    return asked


def _cpu_auto_dtype(method: str, reasons: list[str]) -> str:
    """What "auto" trains in on the CPU, with the reason added to ``reasons``."""
    from ...device import cpu_native_bf16

    feature = cpu_native_bf16()
    if feature is None:
        reasons.append("fp32: this CPU has no AMX / AVX512-BF16, so bf16 would be emulated and slower")
        return "fp32"
    if method == "full":
        reasons.append(
            f"fp32: full fine-tuning keeps fp32 weights on the CPU (bf16 rounds small updates away; "
            f"this CPU has {feature}, which LoRA uses)"
        )
        return "fp32"
    reasons.append(f"bf16: this CPU has {feature} (base weights bf16, LoRA weights fp32; dtype fp32 forces fp32)")
    return "bf16"


def _auto(device: DeviceInfo, estimates: dict[str, float], dtype: str, allow_qlora: bool = True) -> tuple[str, str]:
    """The method "auto" picks, and why (``dtype``: the plan's, named in the reason)."""
    if device.type == "cpu":
        return "lora", f"auto on the CPU: LoRA in {dtype}"
    if device.type == "mps":
        return "lora", "auto on Apple MPS: LoRA (4-bit is not available on MPS)"
    free = device.memory_free_gb
    lora_gb = estimates.get("lora")
    fits = lora_gb is None or lora_gb <= free * 0.9
    if free >= LORA_BF16_MIN_FREE_GB and fits:
        est = f", LoRA needs ~{lora_gb:.1f} GiB" if lora_gb is not None else ""
        return "lora", f"auto: {free:.1f} GiB free on {device.name}{est} -> LoRA {dtype}"
    if allow_qlora and four_bit_problem(device) is None:
        est = f" (LoRA would need ~{lora_gb:.1f} GiB)" if lora_gb is not None else ""
        return "qlora", f"auto: only {free:.1f} GiB free on {device.name}{est} -> QLoRA 4-bit"
    return "lora", f"auto: {free:.1f} GiB free and 4-bit is not available -> LoRA"
