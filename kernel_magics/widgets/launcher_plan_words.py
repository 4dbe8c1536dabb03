"""The launcher's plan line in English or Chinese: the plan's head and each of its reasons.

The reasons are English sentences written where the plan is made (``kernel_magics.train.planning.plan`` and
``.levers``); :data:`REASONS_ZH` reads each kind back with a pattern and says it in README.zh-CN's
vocabulary. A reason no pattern knows stays English, so a new reason still shows. Light module: no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Say = Callable[[re.Match[str]], str]


def _need(match: re.Match[str], template: str) -> str:
    return template.format(match["need"]) if match["need"] else ""


REASONS_ZH: list[tuple[re.Pattern[str], Say]] = [
    (re.compile(r"auto on the CPU: LoRA in (?P<dtype>\w+)"), lambda m: f"CPU 上自动选择 LoRA（{m['dtype']}）"),
    (
        re.compile(r"auto on Apple MPS: LoRA \(4-bit is not available on MPS\)"),
        lambda m: "Apple MPS 上自动选择 LoRA（MPS 不支持 4 位量化）",
    ),
    (
        re.compile(
            r"auto: (?P<free>[\d.]+) GiB free on (?P<name>.+?)"
            r"(?:, LoRA needs ~(?P<need>[\d.]+) GiB)? -> LoRA (?P<dtype>\w+)"
        ),
        lambda m: f"自动：{m['name']} 上可用 {m['free']} GiB{_need(m, '，LoRA 约需 {} GiB')} → LoRA {m['dtype']}",
    ),
    (
        re.compile(
            r"auto: only (?P<free>[\d.]+) GiB free on (?P<name>.+?)"
            r"(?: \(LoRA would need ~(?P<need>[\d.]+) GiB\))? -> QLoRA 4-bit"
        ),
        lambda m: f"自动：{m['name']} 上只有 {m['free']} GiB 可用{_need(m, '（LoRA 约需 {} GiB）')} → QLoRA 4 位",
    ),
    (
        re.compile(r"auto: (?P<free>[\d.]+) GiB free and 4-bit is not available -> LoRA"),
        lambda m: f"自动：可用 {m['free']} GiB，且无法使用 4 位量化 → LoRA",
    ),
    (
        re.compile(r"the CPU trains in (?P<dtype>\w+) and is slow for real models \(fine for small ones\)"),
        lambda m: f"CPU 用 {m['dtype']} 训练，真实大小的模型会很慢（小模型没问题）",
    ),
    (
        re.compile(r"MPS: batch 1 with grad_accum (?P<n>\d+) keeps the effective batch size"),
        lambda m: f"MPS：批大小 1、梯度累积 {m['n']}，有效批大小不变",
    ),
    (
        re.compile(r"this CPU has no AMX / AVX512-BF16: bf16 is emulated here, slower than fp32"),
        lambda m: "这台 CPU 没有 AMX / AVX512-BF16：bf16 在这里靠模拟，比 fp32 慢",
    ),
    (
        re.compile(r"fp32: this CPU has no AMX / AVX512-BF16, so bf16 would be emulated and slower"),
        lambda m: "fp32：这台 CPU 没有 AMX / AVX512-BF16，bf16 要靠模拟，更慢",
    ),
    (
        re.compile(
            r"fp32: full fine-tuning keeps fp32 weights on the CPU \(bf16 rounds small updates away; "
            r"this CPU has (?P<feature>.+), which LoRA uses\)"
        ),
        lambda m: (
            f"fp32：CPU 上全量微调保留 fp32 权重（bf16 会把小的更新舍入掉；这台 CPU 有 {m['feature']}，LoRA 会用上）"
        ),
    ),
    (
        re.compile(
            r"bf16: this CPU has (?P<feature>.+) \(base weights bf16, LoRA weights fp32; dtype fp32 forces fp32\)"
        ),
        lambda m: f"bf16：这台 CPU 有 {m['feature']}（基座权重 bf16，LoRA 权重 fp32；精度设为 fp32 则用 fp32）",
    ),
    (
        re.compile(r"compile: torch\.compile of the model \(compiling, first step slower\)"),
        lambda m: "compile：对模型做 torch.compile（先要编译，第一步更慢）",
    ),
    (
        re.compile(r"padding_free: rows concatenated without padding, FlashAttention-2 varlen"),
        lambda m: "padding_free：多行无填充地拼接，使用 FlashAttention-2 变长注意力",
    ),
    (re.compile(r"Liger kernels off: (?P<problem>.+)"), lambda m: f"Liger 内核关闭：{m['problem']}"),
    (
        re.compile(r"Liger kernels on \((?P<kind>\w+) on CUDA(?P<auto>, auto)?\)"),
        lambda m: f"Liger 内核开启（{m['kind']}，CUDA{'，自动' if m['auto'] else ''}）",
    ),
]


def plan_reason(reason: str, language: str) -> str:
    """One reason of a plan in ``language`` (English, or a Chinese reason it does not know, as it is)."""
    if language != "zh":
        return reason
    for pattern, say in REASONS_ZH:
        match = pattern.fullmatch(reason)
        if match:
            return say(match)
    return reason


def plan_head(plan: Any, language: str) -> str:
    """The method, dtype, device and batch layout of a plan (``kernel_magics.train.planning.plan.Plan``), in words."""
    if language == "zh":
        return (
            f"<b class='km-plan-method'>{plan.method}</b>，{plan.dtype}，设备 {plan.device}，"
            f"批大小 {plan.batch_size} × 梯度累积 {plan.grad_accum}"
        )
    return (
        f"<b class='km-plan-method'>{plan.method}</b> in {plan.dtype} on {plan.device}, "
        f"batch {plan.batch_size} x {plan.grad_accum}"
    )


def plan_free(free_gb: float, device: str, language: str) -> str:
    """How much memory ``device`` has free."""
    return f"{device} 上可用 {free_gb:.1f} GiB" if language == "zh" else f"{free_gb:.1f} GiB free on {device}"
